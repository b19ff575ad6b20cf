"""Pipelines: models chained step by step, each step's output feeding later templates.

A step's template names its inputs: the pipeline's variables (``topic=...``)
or earlier steps' outputs (by ``output_key``). Steps whose inputs do not
depend on each other run concurrently. Values are inserted verbatim (see
``mmo_magic.core.templates``), so braces in a model's output are harmless.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.completion import CompletionResponse
from ..core.errors import ConfigError, MMOError, TemplateError
from ..core.ids import new_id
from ..core.templates import Template
from .calls import CallContext, CallOptions, Completer

__all__ = ["Pipeline", "PipelineResult", "PipelineStep", "research_pipeline"]


@dataclass(frozen=True)
class PipelineStep:
    """One model call. ``prompt_template`` uses ``{variable}`` and ``{earlier_output_key}``."""

    name: str
    model: str
    prompt_template: str
    output_key: str = ""
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not self.output_key:
            object.__setattr__(self, "output_key", self.name)

    @property
    def inputs(self) -> list[str]:
        return Template(self.prompt_template).variables + (
            Template(self.system).variables if self.system else []
        )


@dataclass
class Pipeline:
    steps: list[PipelineStep]
    name: str = "pipeline"

    def __post_init__(self) -> None:
        keys = [s.output_key for s in self.steps]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ConfigError(
                f"Pipeline {self.name!r}: output_key {duplicates[0]!r} is used twice."
            )

    def waves(self, variables: Sequence[str]) -> list[list[PipelineStep]]:
        """Steps grouped so each group only needs variables and earlier groups' outputs.

        Raises TemplateError naming the variable and step when an input is
        neither a variable nor any step's output.
        """
        produced_by = {s.output_key: s for s in self.steps}
        for step in self.steps:
            for name in step.inputs:
                if name not in variables and name not in produced_by:
                    raise TemplateError(name, f"step {step.name!r}")
        done: set[str] = set(variables)
        remaining = list(self.steps)
        waves: list[list[PipelineStep]] = []
        while remaining:
            ready = [s for s in remaining if all(n in done for n in s.inputs)]
            if not ready:
                names = ", ".join(repr(s.name) for s in remaining)
                raise ConfigError(
                    f"Pipeline {self.name!r}: steps {names} depend on each other in a cycle."
                )
            waves.append(ready)
            done.update(s.output_key for s in ready)
            remaining = [s for s in remaining if s not in ready]
        return waves


@dataclass
class PipelineResult:
    """Outputs by ``output_key``; on failure, those produced before it and the failed step."""

    pipeline: str
    group_id: str
    outputs: dict[str, str] = field(default_factory=dict)
    responses: dict[str, CompletionResponse] = field(default_factory=dict)
    failed_step: str | None = None
    error: MMOError | None = None

    @property
    def ok(self) -> bool:
        return self.failed_step is None

    @property
    def output(self) -> str | None:
        """The last step's output (None if it did not run)."""
        last = next(reversed(self.responses), None)
        return self.outputs.get(last) if last else None

    @property
    def cost(self) -> float | None:
        costs = [r.cost for r in self.responses.values()]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(key)}</td><td>{html.escape(r.model)}</td>"
            f"<td><pre style='white-space:pre-wrap'>{html.escape(r.content)}</pre></td></tr>"
            for key, r in self.responses.items()
        )
        status = "ok" if self.ok else f"failed at step {self.failed_step!r}: {self.error}"
        return (
            f"<b>{html.escape(self.pipeline)}</b> — {html.escape(status)}"
            f"<table><tr><th>step</th><th>model</th><th>output</th></tr>{rows}</table>"
        )


async def run_pipeline(
    pipeline: Pipeline,
    variables: Mapping[str, Any],
    complete: Completer,
    on_step: Callable[[PipelineStep, CompletionResponse], None] | None = None,
) -> PipelineResult:
    """Run ``pipeline`` with ``complete`` making each step's call (kind "pipeline_step")."""
    result = PipelineResult(pipeline.name, group_id=new_id())
    values: dict[str, Any] = dict(variables)
    for wave in pipeline.waves(list(values)):

        async def run(step: PipelineStep) -> None:
            where = f"step {step.name!r}"
            prompt = Template(step.prompt_template).render(values, where=where)
            system = Template(step.system).render(values, where=where) if step.system else None
            options: CallOptions = {
                "system": system,
                "temperature": step.temperature,
                "max_tokens": step.max_tokens,
            }
            context = CallContext("pipeline_step", result.group_id, step=step.name)
            response = await complete(prompt, step.model, options, context)
            result.responses[step.output_key] = response
            result.outputs[step.output_key] = response.content
            if on_step is not None:
                on_step(step, response)

        outcomes = await asyncio.gather(*(run(s) for s in wave), return_exceptions=True)
        for step, outcome in zip(wave, outcomes, strict=True):
            if isinstance(outcome, MMOError) and result.failed_step is None:
                result.failed_step, result.error = step.name, outcome
            elif isinstance(outcome, BaseException) and not isinstance(outcome, MMOError):
                raise outcome
        if result.failed_step is not None:
            break
        values.update(result.outputs)
    return result


def research_pipeline(
    researcher: str = "sim-slow", analyst: str = "sim-fast", writer: str = "sim-echo"
) -> Pipeline:
    """The classic example: research a topic, analyse it, write it up — three models.

    Research and the list of open questions run concurrently; the analysis
    needs both, and the report needs the analysis.
    """
    return Pipeline(
        name="research",
        steps=[
            PipelineStep(
                "research",
                researcher,
                "List the key facts, figures and sources about {topic}.",
                system="You are a careful researcher. Cite sources; say when unsure.",
            ),
            PipelineStep(
                "questions",
                analyst,
                "What are the open questions and controversies about {topic}?",
                temperature=0.3,
            ),
            PipelineStep(
                "analysis",
                analyst,
                "Facts:\n{research}\n\nOpen questions:\n{questions}\n\n"
                "Analyse what this means for {topic}: trends, risks, and what is uncertain.",
            ),
            PipelineStep(
                "report",
                writer,
                "Write a one-page brief on {topic} for a general reader, based on:\n{analysis}",
                max_tokens=600,
            ),
        ],
    )
