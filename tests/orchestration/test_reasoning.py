"""Reasoning controls (issue 25, part 2): reasoning_effort and thinking_budget mapped on both
wires (request bodies read back at the simulated provider through the real SDKs), Anthropic's
thinking rules enforced before sending, refusals by name, reasoning tokens in usage, cost,
run log and DataFrame, thinking text kept apart, and first_activity_ms beside ttft_ms."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import PRICE_IN, PRICE_OUT, sim_models

import mmo_magic as mmo
from mmo_magic.core.catalogue import builtin_models
from mmo_magic.core.errors import InvalidRequestError
from mmo_magic.core.pricing import count_tokens
from mmo_magic.core.reasoning import effort_for


@pytest.fixture
def thinker(sim, keys):  # type: ignore[no-untyped-def]
    """The test models as reasoning models (think_ms: silence before the answer)."""
    models = [m.replace(reasoning=True) for m in sim_models(sim)]
    with mmo.Orchestrator(models, default_model="oa", runlog=":memory:", cache=False) as o:
        yield o


def body(sim: Any) -> dict[str, Any]:
    assert sim.request_count() >= 1
    last = sim.last_request()
    assert last is not None
    found: dict[str, Any] = last["body"]
    return found


# -- the wire -------------------------------------------------------------------------------------


@pytest.mark.parametrize("effort", ["minimal", "low", "medium", "high"])
def test_reasoning_effort_goes_to_openai_as_is(thinker, sim, effort):
    assert thinker.complete("hi", model="oa", reasoning_effort=effort).ok
    assert body(sim)["reasoning_effort"] == effort


@pytest.mark.parametrize(("budget", "effort"), [(500, "minimal"), (2048, "low"),
                                                (10_000, "medium"), (50_000, "high")])  # fmt: skip
def test_a_thinking_budget_goes_to_openai_as_the_effort_it_reaches(thinker, sim, budget, effort):
    assert effort_for(budget) == effort
    assert thinker.complete("hi", model="oa", thinking_budget=budget).ok
    assert body(sim)["reasoning_effort"] == effort


def test_a_thinking_budget_goes_to_anthropic_as_thinking(thinker, sim):
    assert thinker.complete("hi", model="an", thinking_budget=2048, max_tokens=4096).ok
    sent = body(sim)
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["max_tokens"] == 4096 and "temperature" not in sent


def test_an_effort_goes_to_anthropic_as_its_budget(thinker, sim):
    assert thinker.complete("hi", model="an", reasoning_effort="medium", max_tokens=10_000).ok
    assert body(sim)["thinking"] == {"type": "enabled", "budget_tokens": 8192}


def test_without_them_nothing_is_added(thinker, sim):
    thinker.complete("hi", model="oa")
    assert "reasoning_effort" not in body(sim)
    thinker.complete("hi", model="an")
    assert "thinking" not in body(sim)


# -- refused before sending -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"thinking_budget": 500, "max_tokens": 4096}, "at least 1024"),
        ({"thinking_budget": 2048}, r"max_tokens \(1024\) must be larger than the thinking"),
        ({"thinking_budget": 2048, "max_tokens": 4096, "temperature": 0.2}, "temperature 0.2"),
        ({"thinking_budget": 2048, "max_tokens": 4096, "top_p": 0.5}, "top_p must be at least"),
        ({"thinking_budget": 2048, "max_tokens": 4096,
          "response_format": {"type": "object", "properties": {}}}, "forced tool"),
    ],
)  # fmt: skip
def test_anthropics_thinking_rules_are_enforced_before_sending(thinker, sim, options, match):
    with pytest.raises(InvalidRequestError, match=match):
        thinker.complete("hi", model="an", **options)
    assert sim.request_count() == 0


def test_a_model_without_reasoning_refuses_by_name(orc, sim):
    with pytest.raises(
        InvalidRequestError, match="reasoning_effort is not supported by model 'oa'"
    ):
        orc.complete("hi", model="oa", reasoning_effort="low")
    with pytest.raises(InvalidRequestError, match="thinking_budget is not supported by model 'an'"):
        orc.complete("hi", model="an", thinking_budget=2048, max_tokens=4096)
    assert sim.request_count() == 0


def test_bad_values_and_both_at_once_are_refused(thinker, sim):
    with pytest.raises(InvalidRequestError, match="reasoning_effort must be one of"):
        thinker.complete("hi", model="oa", reasoning_effort="extreme")
    with pytest.raises(InvalidRequestError, match="thinking_budget must be a whole number"):
        thinker.complete("hi", model="oa", thinking_budget=-5)
    with pytest.raises(InvalidRequestError, match="not both"):
        thinker.complete("hi", model="oa", reasoning_effort="low", thinking_budget=2048)
    with pytest.raises(InvalidRequestError, match="Did you mean 'thinking_budget'"):
        thinker.complete("hi", model="an", thinking={"type": "enabled"})  # type: ignore[call-arg]
    assert sim.request_count() == 0


def test_the_catalogue_marks_reasoning_models():
    catalogue = {m.name: m for m in builtin_models()}
    assert catalogue["o4-mini"].reasoning and catalogue["claude-sonnet-4-5"].reasoning
    assert not catalogue["gpt-4o-mini"].reasoning and not catalogue["smollm2"].reasoning


def test_the_sim_enforces_the_rules_like_the_real_apis(oa, an):
    import anthropic
    import openai

    hi = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.BadRequestError, match="greater than or equal to 1024"):
        an.messages.create(
            model="sim-fast", max_tokens=4096, messages=hi,
            thinking={"type": "enabled", "budget_tokens": 500},
        )  # fmt: skip
    with pytest.raises(anthropic.BadRequestError, match="temperature"):
        an.messages.create(
            model="sim-fast", max_tokens=4096, messages=hi,
            thinking={"type": "enabled", "budget_tokens": 2048}, extra_body={"temperature": 0.3},
        )  # fmt: skip
    with pytest.raises(openai.BadRequestError, match="reasoning_effort"):
        oa.chat.completions.create(
            model="sim-fast", messages=hi, extra_body={"reasoning_effort": "extreme"}
        )


# -- usage, cost, thinking text, timing -----------------------------------------------------------


def test_openai_reasoning_tokens_are_counted_and_billed_as_output(thinker, sim):
    r = thinker.complete("two words", model="oa", reasoning_effort="low")
    assert r.ok and r.reasoning_tokens == 8  # the sim thinks 8 words
    assert r.output_tokens == 12 + 8  # completion_tokens include them, as OpenAI's do
    assert r.cost == pytest.approx((2 * PRICE_IN + 20 * PRICE_OUT) / 1000)
    assert r.reasoning is None  # Chat Completions returns no thinking text
    assert "8 thinking" in r.footer()


def test_anthropic_thinking_is_kept_apart_from_the_answer(thinker, sim):
    r = thinker.complete("two words", model="an", thinking_budget=2048, max_tokens=4096)
    assert r.ok and r.reasoning
    assert len(r.reasoning.split()) == 8 and r.reasoning not in r.content
    assert len(r.content.split()) == 12
    assert r.output_tokens == 20  # thinking billed as output
    assert r.reasoning_tokens == count_tokens(r.reasoning)
    assert r.cost == pytest.approx((2 * PRICE_IN + 20 * PRICE_OUT) / 1000)


def test_the_run_log_and_dataframe_have_them(thinker, sim):
    thinker.complete("hi", model="oa", reasoning_effort="high")
    thinker.complete("hi", model="an", thinking_budget=2048, max_tokens=4096)
    thinker.complete("hi", model="oa")
    df = thinker.runs.to_dataframe()
    assert str(df["reasoning_tokens"].dtype) == "Int64"
    assert str(df["first_activity_ms"].dtype) == "Float64"
    assert df["reasoning_tokens"].iloc[0] == 8 and df["reasoning_tokens"].iloc[1] > 0
    assert df["reasoning_tokens"].isna().iloc[2]
    assert df["reasoning"].isna().iloc[0] and len(df["reasoning"].iloc[1].split()) == 8
    assert df["first_activity_ms"].notna().all()


@pytest.mark.parametrize("model", ["oa", "an"])
def test_first_activity_comes_before_the_first_visible_token(sim, keys, model):
    models = [m.replace(model_id="sim-fast?think_ms=300", reasoning=True) for m in sim_models(sim)]
    options: dict[str, Any] = (
        {"reasoning_effort": "low"} if model == "oa"
        else {"thinking_budget": 2048, "max_tokens": 4096}
    )  # fmt: skip
    with mmo.Orchestrator(models, runlog=":memory:", cache=False) as orc:
        orc.complete("warm up", model=model)  # the SDK's first-use set-up is not the model's
        r = orc.complete("hi", model=model, **options)
    assert r.ok and r.first_activity_ms is not None and r.ttft_ms is not None
    assert r.first_activity_ms < 150 <= 300 <= r.ttft_ms


def test_a_reasoning_model_may_think_past_the_first_token_deadline(sim, keys):
    base = sim_models(sim)[0].replace(model_id="sim-fast?think_ms=400", ttft_timeout_s=0.15)
    thinking = base.replace(name="thinking", reasoning=True)
    plain = base.replace(name="plain", model_id="sim-fast?ttft_ms=400")
    with mmo.Orchestrator([thinking, plain], runlog=":memory:", cache=False) as orc:
        assert orc.complete("hi", model="thinking", reasoning_effort="high").ok
        with pytest.raises(mmo.MMOError, match="no first token within ttft_timeout_s"):
            orc.complete("hi", model="plain")


def test_the_cache_tells_efforts_apart(sim, keys, tmp_path):
    models = [m.replace(reasoning=True) for m in sim_models(sim)]
    with mmo.Orchestrator(models, runlog=":memory:", cache=tmp_path / "c.sqlite3") as orc:
        low = orc.complete("hi", model="oa", reasoning_effort="low")
        again = orc.complete("hi", model="oa", reasoning_effort="low")
        high = orc.complete("hi", model="oa", reasoning_effort="high")
    assert not low.cached and again.cached and not high.cached
    assert sim.request_count() == 2


# -- signed thinking in a tool loop ---------------------------------------------------------------


def test_signed_thinking_goes_back_with_the_tool_calls_on_anthropic_only(thinker, sim):
    from helpers import WEATHER

    thinking = {"thinking_budget": 2048, "max_tokens": 4096}
    question = {"role": "user", "content": "Weather in Oslo?"}
    r = thinker.complete([question], model="an", tools=[WEATHER], **thinking)
    assert r.tool_calls and r.reasoning and r.thinking_blocks
    (text, signature), call = r.thinking_blocks[0], r.tool_calls[0]
    assert text == r.reasoning and signature
    follow_up = [question, r.message, call.result("4 °C, rain")]
    r2 = thinker.complete(follow_up, model="an", tools=[WEATHER], **thinking)
    assert r2.ok and "4 °C, rain" in r2.content  # the sim refuses a loop without the block
    sent = body(sim)["messages"][1]["content"]
    assert sent[0] == {"type": "thinking", "thinking": text, "signature": signature}
    assert sent[-1]["type"] == "tool_use"
    # Without thinking on, and on OpenAI's wire, the blocks stay home.
    thinker.complete(follow_up, model="an", tools=[WEATHER])
    assert [b["type"] for b in body(sim)["messages"][1]["content"]] == ["tool_use"]
    thinker.complete(follow_up, model="oa", tools=[WEATHER], reasoning_effort="low")
    assert "thinking" not in json.dumps(body(sim)["messages"])


def test_the_sim_refuses_a_thinking_tool_loop_without_its_block(an):
    import anthropic

    turn = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "rain"}]},
    ]  # fmt: skip
    with pytest.raises(anthropic.BadRequestError, match="must start with a thinking block"):
        an.messages.create(model="sim-fast", max_tokens=4096, messages=turn,
                           thinking={"type": "enabled", "budget_tokens": 2048})  # fmt: skip


def test_a_watcher_sees_the_thinking_phase_before_the_text(thinker, sim):
    """CallContext.on_thinking: the first sign of life (""), then each piece of thinking, all
    before the first answer text (what a race panel's "thinking" phase shows)."""
    from mmo_magic.orchestration.calls import CallContext

    seen: list[tuple[str, str]] = []
    context = CallContext(on_text=lambda t: seen.append(("text", t)),
                          on_thinking=lambda t: seen.append(("thinking", t)))  # fmt: skip
    options: Any = {"thinking_budget": 2048, "max_tokens": 4096}
    r = thinker._loop.run(thinker._engine.complete("hi", "an", options, context))
    kinds = [kind for kind, _ in seen]
    assert kinds[0] == "thinking" and seen[0][1] == ""
    first_text = kinds.index("text")
    assert set(kinds[:first_text]) == {"thinking"} and "thinking" not in kinds[first_text:]
    assert "".join(t for kind, t in seen if kind == "thinking") == r.reasoning
    assert "".join(t for kind, t in seen if kind == "text") == r.content
