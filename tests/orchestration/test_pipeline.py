"""Safe templates and pipelines, run against the simulated provider."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from helpers import with_model_id

import mmo_magic as mmo
from mmo_magic.core.templates import Template
from mmo_magic.orchestration.pipeline import research_pipeline


def test_template_inserts_values_verbatim():
    t = Template('About {topic}: {{literal}} and {notes}. JSON stays: {"a": 1}')
    assert t.variables == ["topic", "notes"]
    out = t.render({"topic": "{x}", "notes": "{topic} } {"})
    assert out == 'About {x}: {literal} and {topic} } {. JSON stays: {"a": 1}'


def test_template_missing_variable_names_it_and_where():
    with pytest.raises(mmo.TemplateError) as info:
        Template("Hi {name}").render({}, where="step 'greet'")
    assert info.value.variable == "name" and "step 'greet'" in str(info.value)


def test_braces_in_an_output_reach_the_next_step_verbatim(orc, sim):
    tricky = 'Here is JSON { "k": [1, 2] } and a {topic} placeholder }{'
    producer = with_model_id(orc, "oa", f"sim-fast?reply={quote(tricky)}")
    consumer = with_model_id(orc, "an", "sim-echo")
    pipeline = mmo.Pipeline(
        [
            mmo.PipelineStep("draft", producer, "Draft something about {topic}"),
            mmo.PipelineStep("review", consumer, "Review this:\n{draft}\nTopic: {topic}"),
        ]
    )
    result = orc.run_pipeline(pipeline, topic="owls")
    assert result.ok and result.outputs["draft"] == tricky
    sent = sim.last_request("sim-echo")["body"]["messages"][-1]["content"]
    assert sent == f"Review this:\n{tricky}\nTopic: owls"


def test_research_pipeline_across_three_providers(orc, sim):
    models = [with_model_id(orc, name, "sim-slow?tokens=6") for name in ("oa", "an", "lo")]
    pipeline = research_pipeline(*models)
    seen: list[str] = []
    result = orc.run_pipeline(
        pipeline, topic="tidal power", on_step=lambda s, r: seen.append(s.name)
    )
    assert result.ok and result.failed_step is None
    assert set(result.outputs) == {"research", "questions", "analysis", "report"}
    assert seen[-2:] == ["analysis", "report"] and set(seen[:2]) == {"research", "questions"}
    assert {r.model for r in result.responses.values()} == set(models)
    records = {r.step: r for r in orc.runs.records(group_id=result.group_id)}
    assert set(records) == set(result.outputs)
    assert {r.kind for r in records.values()} == {"pipeline_step"}
    # Independent steps overlap in time; dependent ones wait.
    research, questions = records["research"], records["questions"]
    assert (
        research.started_at < questions.finished_at and questions.started_at < research.finished_at
    )
    assert records["analysis"].started_at >= max(research.finished_at, questions.finished_at)
    assert result.cost == pytest.approx(sum(r.cost for r in result.responses.values()))


def test_failed_step_keeps_earlier_outputs_and_names_the_step(orc, sim):
    ok = with_model_id(orc, "oa", "sim-fast")
    broken = with_model_id(orc, "an", "sim-fast?fail=500")
    pipeline = research_pipeline(researcher=ok, analyst=broken, writer=ok)
    result = orc.run_pipeline(pipeline, topic="bees")
    assert not result.ok and result.failed_step == "questions"
    assert isinstance(result.error, mmo.ProviderError)
    assert set(result.outputs) == {"research"}  # analysis and report never ran
    assert sim.request_count("sim-fast?fail=500") == 1
    statuses = {r.step: r.status for r in orc.runs.records(group_id=result.group_id)}
    assert statuses == {"research": "ok", "questions": "error"}


def test_missing_variable_fails_before_any_call(orc, sim):
    with pytest.raises(mmo.TemplateError, match=r"\{topic\}.*'research'"):
        orc.run_pipeline(research_pipeline("oa", "oa", "oa"))
    assert sim.request_count() == 0


def test_pipeline_structure_errors():
    step = mmo.PipelineStep("a", "m", "x {b}")
    with pytest.raises(mmo.ConfigError, match="twice"):
        mmo.Pipeline([step, mmo.PipelineStep("a", "m", "y")])
    cycle = mmo.Pipeline([step, mmo.PipelineStep("b", "m", "y {a}")])
    with pytest.raises(mmo.ConfigError, match="cycle"):
        cycle.waves([])
