"""A batch's plan: its items and calls, what the run log already has, and the worst case.

Everything here happens before the first request:

* **Items.** ``prompt`` and ``system`` (safe templates, see ``core.templates``)
  are rendered for every item; an item's key is its ``key`` column or a hash
  of its rendered prompt.
* **Resume.** Every answer is recorded under one ``group_id``, a fingerprint
  of the batch's template and parameters, with ``step`` naming the item (its
  key and a hash of what it asks: an item edited under the same key is asked
  again) and the model's settings; a judge's step names the question and the
  answers it judged. Running the same batch again reads the run log first
  and does not send an (item, model) that already has an ok answer. By
  default the calls that never finished (not sent, cancelled) are sent;
  ``rerun="failed"`` also retries the failed ones, ``rerun="all"`` sends
  everything again.
* **Budget first.** With ``budget``, the worst case (each request's input
  tokens plus ``max_tokens`` at the model's prices, judges included) is
  computed before anything is sent, counting only what would be sent (not
  what the log answered or judged already); over budget is a
  BudgetExceededError and no request leaves.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.completion import CompletionRequest, Prompt, as_messages
from ..core.errors import BudgetExceededError, ConfigError, TemplateError, VerdictError
from ..core.models import Catalogue, ModelConfig
from ..core.templates import Template
from ..orchestration.judges import judge_messages, labels, read_verdict
from .limits import Limits
from .progress import BatchProgress, BatchStats
from .rows import Row, row_from_record

if TYPE_CHECKING:
    from ..storage.runlog import RunRecord
    from ..storage.sinks import RecordSink
    from .spec import BatchSpec

__all__ = ["Call", "Item", "Plan"]

_GRADE_RUBRIC = (
    "Grade the single candidate on a scale of 1 to 10 (MT-Bench style): 1-2 wrong, harmful "
    "or off-topic; 3-4 mostly wrong; 5-6 partly right or missing important parts; 7-8 right "
    'with minor flaws; 9-10 right, complete and clear. Put the grade in "scores" for A'
)


def digest(*parts: Any, size: int = 12) -> str:
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:size]


@dataclass(frozen=True, slots=True)
class Item:
    index: int
    key: str  # the ``key`` column's value, else a hash of what the item asks
    prompt: str
    system: str | None
    reference: str | None
    asks: str = ""  # a hash of the rendered prompt and system prompt

    @property
    def ident(self) -> str:
        """The item in its calls' steps: its key and what it asks, so that resume never
        returns an answer to an item that has since been edited under the same key."""
        return self.key if self.key == self.asks else f"{self.key}|{self.asks}"


@dataclass(slots=True)
class Call:
    """One (item, model) answer to get, or that the log already has."""

    item: Item
    model: str
    step: str
    row: Row | None = None  # the outcome
    epoch: int = 0  # which repeat (``epochs=N``: 0 .. N-1)


def model_signature(config: ModelConfig, temperature: float | None, max_tokens: int | None) -> str:
    return digest(
        config.provider, config.model_id, config.base_url,
        max_tokens or config.max_tokens,
        temperature if temperature is not None else config.temperature,
        size=8,
    )  # fmt: skip


def plan_items(
    raw: list[dict[str, Any]],
    prompt: str,
    system: str | None,
    key: str | None,
    reference_column: str | None,
) -> list[Item]:
    columns = {name for values in raw for name in values}
    _check_braces(prompt, "The batch prompt", columns)
    if system:
        _check_braces(system, "The batch system prompt", columns)
    template = Template(prompt)
    system_template = Template(system) if system else None
    items: list[Item] = []
    seen: dict[str, int] = {}
    for i, values in enumerate(raw):
        text = _render(template, values, f"the batch prompt (item {i})")
        sys_text = (
            _render(system_template, values, f"the batch system prompt (item {i})")
            if system_template is not None
            else None
        )
        if not text.strip():
            raise ConfigError(f"Batch item {i} renders an empty prompt.")
        if key is not None:
            if key not in values:
                raise ConfigError(f"No column {key!r} for the item key (item {i}).")
            item_key = str(values[key])
            if item_key in seen:
                raise ConfigError(f"Item key {item_key!r} (column {key!r}) is not unique.")
            seen[item_key] = 1
        asks = digest(text, sys_text)
        if key is None:
            seen[asks] = seen.get(asks, 0) + 1
            item_key = asks if seen[asks] == 1 else f"{asks}#{seen[asks]}"
        reference = None
        if reference_column is not None:
            if reference_column not in values:
                raise ConfigError(f"No column {reference_column!r} for reference answers.")
            value = values[reference_column]
            reference = None if value is None or value == "" else str(value)
        items.append(Item(i, item_key, text, sys_text, reference, asks))
    return items


# ``{name`` with no closing brace.
_UNCLOSED = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)(?![A-Za-z0-9_}])")


def _check_braces(text: str, what: str, columns: set[str]) -> None:
    """Refuse ``{column`` without its ``}``: a typo that would be sent as written. Only
    the items' column names count: ``{a, b}`` or ``{name: 1}`` in a prompt are text."""
    found = next((m for m in _UNCLOSED.finditer(text) if m.group(1) in columns), None)
    if found:
        raise ConfigError(
            f"{what} has {found.group(0)!r} with no closing brace.",
            hint=f"Write {{{found.group(1)}}} for the column, or {{{{ for a literal brace.",
        )


def _check_limit_names(limits: Limits, names: list[str]) -> None:
    unknown = [name for name in limits.limits if name not in names]
    if unknown:
        raise ConfigError(
            f"limits= names {', '.join(map(repr, unknown))}, which is not a model or judge "
            "of this batch.",
            hint=f"Use one of: {', '.join(names)}.",
        )


def _missing(value: Any) -> bool:
    """None or NaN: a cell with no value (pandas' empty cells), never to be sent as "nan"."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _render(template: Template, values: dict[str, Any], where: str) -> str:
    """``template`` filled from an item; a missing variable's hint names the columns
    (in a batch the missing thing is a column, not a keyword argument). An empty cell
    (None, NaN) is refused rather than sent as the text "nan"."""
    empty = [name for name in template.variables if name in values and _missing(values[name])]
    if empty:
        raise ConfigError(
            f"{where[0].upper()}{where[1:]} needs column {empty[0]!r}, which is empty there "
            "(None or NaN).",
            hint=f"Fill it, or drop those items first (df.dropna(subset=[{empty[0]!r}])).",
        )
    try:
        return template.render(values, where=where)
    except TemplateError as exc:
        error = TemplateError(exc.variable, where)
        columns = ", ".join(map(str, values)) or "none"
        error.hint = (
            f"Add a column {exc.variable!r} to the items, or use one they have ({columns}); "
            "write {{ and }} for literal braces."
        )
        error.args = (f"{error.message} {error.hint}",)
        raise error from None


def request_for(
    prompt: Prompt, system: str | None, max_tokens: int, temperature: float | None
) -> CompletionRequest:
    return CompletionRequest(
        as_messages(prompt, system), max_tokens=max_tokens, temperature=temperature
    )


def _worst_case(config: ModelConfig, request: CompletionRequest, max_tokens: int) -> float | None:
    from ..core.pricing import estimate_cost

    return estimate_cost(config, request, max_tokens)


class Plan:
    """A batch's items and calls, resumed from the log and checked against the budget."""

    def __init__(
        self,
        spec: BatchSpec,
        catalogue: Catalogue,
        raw: list[dict[str, Any]],
        items: list[Item] | None = None,
        limits: Limits | None = None,
    ) -> None:
        """``items``: already planned (a shard of a batch running on Ray), else planned from
        ``raw``; ``limits``: the gates to use (default: fresh ones from ``spec.limits``)."""
        s = self.s = spec
        self.raw = raw
        self.configs = {m: catalogue.resolve(m) for m in s.models}
        self.judge_configs = {j: catalogue.resolve(j) for j in s.judges}
        self.limits = limits if limits is not None else Limits.of(s.limits)
        self.limits.configure({**self.judge_configs, **self.configs})
        if limits is None and not isinstance(s.limits, Limits):  # limits= given as a dict
            _check_limit_names(self.limits, [*s.models, *s.judges])
        self.items = (
            items
            if items is not None
            else plan_items(raw, s.prompt, s.system, s.key, s.reference_column)
        )
        # Sampling options and a seed change what is asked: they join the fingerprint
        # (only when given, so a batch without them resumes from older logs).
        sampling = {**s.sampling(), **({"seed": s.seed} if s.seed is not None else {})}
        self.group_id = "batch-" + digest(
            s.prompt, s.system, s.temperature, s.max_tokens,
            list(s.fallbacks) if s.fallbacks is not None else None,
            *([sampling] if sampling else []), size=16,
        )  # fmt: skip
        self.signatures = {
            m: model_signature(c, s.temperature, s.max_tokens) for m, c in self.configs.items()
        }
        self.calls = [
            Call(item, m, self.answer_step(item, m, epoch), epoch=epoch)
            for item in self.items
            for epoch in range(s.epochs)
            for m in s.models
        ]
        self.stats = BatchStats()
        self.judgements: list[dict[str, Any]] = []
        self.grades: list[dict[str, Any]] = []
        self.judge_cost = 0.0
        self.progress: BatchProgress | None = None
        self.log: dict[tuple[str, str], list[RunRecord]] = {}

    def answer_step(self, item: Item, model: str, epoch: int) -> str:
        """The step of ``model``'s answer to ``item`` (repeat ``epoch``) in the run log."""
        repeat = f"|epoch {epoch}" if epoch else ""  # the first keeps its old step
        return f"{item.ident}{repeat}|{self.signatures[model]}"

    # -- the log

    def read_log(self, runs: RecordSink) -> None:
        by_step: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
        for record in runs.records(group_id=self.group_id):
            if record.step is not None:
                by_step[(record.step, record.requested_model)].append(record)
        self.log = by_step

    def logged(self, step: str, model: str) -> tuple[str, RunRecord] | None:
        """("ok" | "failed" | "unfinished", the record that says so), or None if never sent."""
        records = self.log.get((step, model))
        if not records:
            return None
        ok = [r for r in records if r.status == "ok"]
        if ok:
            return "ok", ok[-1]
        last = records[-1]
        return ("unfinished" if last.status == "cancelled" else "failed"), last

    def resume(self) -> list[Call]:
        """Fill the rows the log already has; return the calls still to send."""
        todo = []
        for call in self.calls:
            found = None if self.s.rerun == "all" else self.logged(call.step, call.model)
            stats = self.stats.model(call.model)
            stats.total += 1
            if found is not None:
                state, record = found
                if state == "ok" or (state == "failed" and self.s.rerun is None):
                    call.row = row_from_record(record)
                    stats.resumed += 1
                    stats.failed += state == "failed"
                    continue
            todo.append(call)
        return todo

    # -- judging

    def pair_steps(
        self, item: Item, judge: str, a: str, b: str, text_a: str, text_b: str
    ) -> tuple[str, str]:
        """The steps of ``judge``'s two calls on ``a`` and ``b`` (first order, swapped):
        they change with the judge's settings, the criteria, the question and the answers."""
        base = digest(self._judge_signature(judge), self.criteria(item), item.prompt,
                      text_a, text_b, size=10)  # fmt: skip
        return f"judge|{item.key}|{a}|{b}|{base}|first", f"judge|{item.key}|{a}|{b}|{base}|swapped"

    def grade_step(self, item: Item, judge: str, model: str, answer: str) -> str:
        """The step of ``judge``'s grade of ``model``'s ``answer`` (as ``pair_steps``)."""
        base = digest(self._judge_signature(judge), self.criteria(item), item.prompt, answer,
                      size=10)  # fmt: skip
        return f"grade|{item.key}|{model}|{base}"

    def _judge_signature(self, judge: str) -> str:
        return model_signature(self.judge_configs[judge], 0, None)

    def criteria(self, item: Item) -> str | None:
        """What judges are told to judge ``item`` on: the rubric, its reference, the criteria."""
        parts = [_GRADE_RUBRIC] if self.s.judge_mode == "grade" else []
        if item.reference:
            parts.append(
                "A reference answer, written by the person who set the question, is: "
                + json.dumps(item.reference, ensure_ascii=False)
                + " Judge correctness against it"
            )
        if self.s.criteria:
            parts.append(self.s.criteria)
        return ". ".join(p.rstrip(".") for p in parts) or None

    def worst_case(self, todo: Sequence[Call]) -> dict[str, float | None]:
        """USD per model (judges as ``"judge <name>"``) of the worst case; None: unpriced."""
        s = self.s
        out: dict[str, float | None] = {}

        def add(name: str, value: float | None) -> None:
            if name in out and out[name] is None:
                return
            out[name] = None if value is None else (out.get(name) or 0.0) + value

        for call in todo:
            config = self.configs[call.model]
            max_tokens = s.max_tokens or config.max_tokens
            request = request_for(call.item.prompt, call.item.system, max_tokens, s.temperature)
            add(call.model, _worst_case(config, request, max_tokens))
        if s.judges:
            for judge in self.judge_configs:
                for item, shape in self._judge_calls_to_send(judge, todo):
                    add(f"judge {judge}", self._judge_worst_case(judge, item, shape))
        return out

    def _judge_calls_to_send(
        self, judge: str, todo: Sequence[Call]
    ) -> Iterator[tuple[Item, tuple[str, ...]]]:
        """(item, the models shown) of every call ``judge`` would make: one per order of a
        pair (pairwise) or per answer (grade) that will have answers, unless the log holds
        its verdict (answers resumed, so its step is known)."""
        sending = {(c.item.index, c.epoch, c.model) for c in todo}
        answers = {
            (c.item.index, c.epoch, c.model): c.row["answer"] or ""
            for c in self.calls
            if c.row is not None
            and c.row["status"] == "ok"
            and (c.item.index, c.epoch, c.model) not in sending
        }
        models = self.s.models
        for item, epoch in itertools.product(self.items, range(self.s.epochs)):
            at = (item.index, epoch)
            judged = [m for m in models if (*at, m) in sending or (*at, m) in answers]
            if self.s.judge_mode == "pairwise":
                for a, b in itertools.combinations(judged, 2):
                    known = (*at, a) in answers and (*at, b) in answers
                    text_a, text_b = answers.get((*at, a), ""), answers.get((*at, b), "")
                    for step in self.pair_steps(item, judge, a, b, text_a, text_b):
                        if not (known and self.has_verdict(judge, step, 2)):
                            yield item, (a, b)
            else:
                for m in judged:
                    known = (*at, m) in answers
                    step = self.grade_step(item, judge, m, answers.get((*at, m), ""))
                    if not (known and self.has_verdict(judge, step, 1, need_scores=True)):
                        yield item, (m,)

    def _judge_worst_case(self, judge: str, item: Item, shape: tuple[str, ...]) -> float | None:
        """One judge call on the answers of the models in ``shape`` at their longest."""
        config = self.judge_configs[judge]
        # The candidates' own tokens are added below, as their max_tokens.
        blank = ["" for _ in shape]
        messages = judge_messages(item.prompt, blank, criteria=self.criteria(item), nonce="0")
        candidate_tokens = sum(self.s.max_tokens or self.configs[m].max_tokens for m in shape)
        request = request_for(messages, None, config.max_tokens, 0)
        cost = _worst_case(config, request, config.max_tokens)
        if cost is not None and config.cost_per_1k_input is not None:
            cost += candidate_tokens * config.cost_per_1k_input / 1000
        return cost

    def logged_reply(self, judge: str, step: str) -> str | None:
        """The reply of ``judge``'s ok call at ``step`` in the log, else None."""
        found = self.logged(step, judge)
        if found is None or found[0] != "ok":
            return None
        return found[1].response or ""

    def has_verdict(
        self, judge: str, step: str, candidates: int, need_scores: bool = False
    ) -> bool:
        """Whether the log holds a usable verdict for ``step`` (or its repair), so the
        judging there is resumed, not sent (never with ``rerun="all"``)."""
        if self.s.rerun == "all":
            return False
        for logged_step in (step, f"{step} (repair)"):
            text = self.logged_reply(judge, logged_step)
            if text is None:
                continue
            try:
                read_verdict(text, labels(candidates), judge=judge, need_scores=need_scores)
            except VerdictError:
                continue
            return True
        return False

    def check_budget(self, todo: Sequence[Call]) -> None:
        if self.s.budget is None:
            return
        costs = self.worst_case(todo)
        unpriced = [name for name, cost in costs.items() if cost is None]
        if unpriced and not self.s.allow_unpriced:
            raise BudgetExceededError(
                f"Model(s) {', '.join(unpriced)} have no price, so the batch's budget cannot "
                "bound what they cost.",
                hint="Pass allow_unpriced=True to send them anyway, or set their prices.",
            )
        total = sum(c for c in costs.values() if c is not None)
        self.stats.worst_case_cost = total
        if total > self.s.budget:
            parts = ", ".join(f"{n} ${c:.4f}" for n, c in costs.items() if c is not None)
            raise BudgetExceededError(
                f"This batch could cost up to ${total:.4f} ({parts}), over its budget of "
                f"${self.s.budget:.4f}. Nothing was sent.",
                estimate=total,
                hint="Lower max_tokens, use fewer items or models, or raise the budget.",
            )
