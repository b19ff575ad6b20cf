"""The real openai and anthropic SDKs over HTTP against the simulated provider."""

from __future__ import annotations

import time

import pytest
from helpers import PRICE_IN, PRICE_OUT, with_model_id

import mmo_magic as mmo

PROMPT = "Tell me three facts about the Moon please"
PROVIDERS = ["oa", "an", "lo"]


def words(*texts: str) -> int:
    return sum(len(t.split()) for t in texts)


@pytest.mark.parametrize("name", PROVIDERS)
def test_echo_content_usage_and_cost_are_exact(orc, sim, name):
    model = with_model_id(orc, name, "sim-echo")
    r = orc.complete(PROMPT, model=model, system="Be brief and factual")
    assert r.ok and r.content == PROMPT
    assert r.model == model and r.provider == orc.catalogue.resolve(name).provider
    assert r.input_tokens == words(PROMPT, "Be brief and factual")
    assert r.output_tokens == words(PROMPT)
    expected_cost = (r.input_tokens * PRICE_IN + r.output_tokens * PRICE_OUT) / 1000
    assert r.cost == pytest.approx(expected_cost)
    assert r.finish_reason in ("stop", "end_turn")
    assert r.ttft_ms is not None and r.latency_ms is not None and r.ttft_ms <= r.latency_ms
    assert not r.tokens_estimated


@pytest.mark.parametrize("name", PROVIDERS)
def test_streaming_deltas_join_to_the_response(orc, name):
    # Paced as a model generates (5 ms a token): each token comes on its own, as it is made.
    model = with_model_id(orc, name, "sim-fast?tokens=9&tps=200")
    stream = orc.stream("Count to nine", model=model)
    deltas = list(stream)
    assert len(deltas) == 9
    assert stream.response is not None and "".join(deltas) == stream.response.content
    assert stream.response.output_tokens == 9


async def test_async_twins(orc):
    r = await orc.acomplete(PROMPT, model=with_model_id(orc, "an", "sim-echo"))
    assert r.content == PROMPT
    stream = orc.astream(PROMPT, model=with_model_id(orc, "oa", "sim-echo"))
    assert "".join([d async for d in stream]) == PROMPT
    assert stream.response is not None and stream.response.content == PROMPT


def test_unpriced_model_reports_cost_as_missing(orc, sim):
    orc.add_model(mmo.ModelConfig("sim", "sim-fast", name="free", base_url=sim.openai_base_url))
    r = orc.complete(PROMPT, model="free")
    assert r.output_tokens == 12 and r.cost is None
    assert orc.runs.to_dataframe()["cost"].isna().all()


def test_openai_asks_for_usage_in_the_stream(orc, sim):
    orc.complete(PROMPT, model="oa")
    body = sim.last_request("sim-fast")["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "max_completion_tokens" in body


def test_anthropic_moves_system_and_joins_blocks(orc, sim):
    model = with_model_id(orc, "an", "sim-echo?blocks=3")
    r = orc.complete(PROMPT, model=model, system="You are terse")
    body = sim.last_request("sim-echo?blocks=3")["body"]
    assert body["system"] == "You are terse"
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert r.content == PROMPT


def test_max_tokens_truncation_reports_length(orc):
    r = orc.complete(PROMPT, model=with_model_id(orc, "oa", "sim-fast?tokens=20"), max_tokens=5)
    assert r.output_tokens == 5 and r.finish_reason == "length"
    r = orc.complete(PROMPT, model=with_model_id(orc, "an", "sim-fast?tokens=20"), max_tokens=5)
    assert r.output_tokens == 5 and r.finish_reason == "max_tokens"


def test_local_server_without_usage_gets_estimated_counts(orc):
    r = orc.complete(PROMPT, model=with_model_id(orc, "lo", "sim-echo?usage=false"))
    assert r.content == PROMPT and r.tokens_estimated
    # BPE counts of plain English words: at least one token a word, plus chat framing.
    assert r.output_tokens is not None and r.output_tokens >= words(PROMPT)
    assert r.input_tokens is not None and r.input_tokens > words(PROMPT)
    assert orc.runs.to_dataframe()["tokens_estimated"].iloc[-1]


STATUS_CASES = [
    # (provider, fail option, status, retryable, code fragment)
    ("oa", "429&retry_after=7", 429, True, None),
    ("an", "429&retry_after_ms=1500", 429, True, None),
    ("oa", "500", 500, True, None),
    ("an", "503", 503, True, None),
    ("an", "529", 529, True, "overloaded"),
    ("oa", "401", 401, False, None),
    ("an", "401", 401, False, None),
    ("oa", "context_length", 400, False, "context_length_exceeded"),
    ("an", "context_length", 400, False, "invalid_request"),
    ("oa", "content_policy", 400, False, "content_policy"),
]


@pytest.mark.parametrize(("name", "fail", "status", "retryable", "code"), STATUS_CASES)
def test_http_errors_map_to_provider_error(orc, name, fail, status, retryable, code):
    model = with_model_id(orc, name, f"sim-fast?fail={fail}")
    with pytest.raises(mmo.ProviderError) as info:
        orc.complete(PROMPT, model=model)
    err = info.value
    assert (err.status, err.retryable, err.model) == (status, retryable, model)
    if code:
        assert code in (err.code or "")
    if "retry_after=7" in fail:
        assert err.retry_after_s == 7
    if "retry_after_ms" in fail:
        assert err.retry_after_s == 1.5
    if status == 401:
        assert "MMO_TEST_" in str(err)  # the hint names the variable to fix
    assert "\n" not in str(err)
    last = orc.runs.records()[-1]
    assert (last.status, last.model, last.error_type) == ("error", model, "ProviderError")


def test_content_policy_reason_reaches_the_user(orc):
    with pytest.raises(mmo.ProviderError, match=r"(?i)policy"):
        orc.complete(PROMPT, model=with_model_id(orc, "oa", "sim-fast?fail=content_policy"))


@pytest.mark.parametrize("name", ["oa", "an"])
@pytest.mark.parametrize("fault", ["cut", "malformed", "no_finish"])
def test_broken_streams_are_errors_not_truncated_answers(orc, name, fault):
    model = with_model_id(orc, name, f"sim-fast?fault={fault}&hold_s=2")
    with pytest.raises(mmo.StreamError):
        orc.complete(PROMPT, model=model)
    last = orc.runs.records()[-1]
    assert last.status == "error" and last.error_type == "StreamError"


@pytest.mark.parametrize("name", ["oa", "an"])
def test_reset_before_headers_is_a_retryable_provider_error(orc, name):
    with pytest.raises(mmo.ProviderError) as info:
        orc.complete(PROMPT, model=with_model_id(orc, name, "sim-fast?fault=reset"))
    assert info.value.retryable and info.value.status is None


@pytest.mark.parametrize("name", ["oa", "an"])
def test_finished_stream_without_done_is_finalised_with_usage(orc, sim, name):
    model = with_model_id(orc, name, "sim-echo?fault=no_done&hold_s=30")
    started = time.monotonic()
    r = orc.complete(PROMPT, model=model)
    assert r.ok and r.content == PROMPT and r.output_tokens == words(PROMPT)
    assert time.monotonic() - started < 15  # far less than the 30 s the server holds on
    _wait_for(lambda: any(d.model.startswith("sim-echo") for d in sim.disconnects))


@pytest.mark.parametrize(
    ("fault", "deadline"),
    [
        ("hang", {"ttft_timeout_s": 0.3}),
        ("stall", {"stall_timeout_s": 0.3}),
        ("hang", {"timeout_s": 0.5}),
    ],
)
def test_deadlines_end_silent_streams(orc, sim, fault, deadline):
    model = with_model_id(orc, "oa", f"sim-fast?fault={fault}&hold_s=20", **deadline)
    with pytest.raises(mmo.ProviderError) as info:
        orc.complete(PROMPT, model=model)
    assert info.value.code == "timeout" and info.value.retryable
    assert next(iter(deadline)) in str(info.value)
    assert orc.runs.records()[-1].status == "timeout"
    _wait_for(lambda: len(sim.disconnects) >= 1)


def test_stall_keeps_the_partial_text_in_the_record(orc):
    model = with_model_id(
        orc, "an", "sim-echo?fault=stall&stall_after=3&hold_s=20", stall_timeout_s=0.3
    )
    with pytest.raises(mmo.ProviderError):
        orc.complete(PROMPT, model=model)
    assert orc.runs.records()[-1].response == " ".join(PROMPT.split()[:3])


def test_breaking_out_of_a_stream_closes_the_http_stream(orc, sim):
    model = with_model_id(orc, "oa", "sim-fast?tokens=50&tps=20")
    stream = orc.stream(PROMPT, model=model)
    for i, _ in enumerate(stream):
        if i == 1:
            break
    _wait_for(lambda: len(sim.disconnects) == 1)
    assert sim.disconnects[0].phase == "streaming"
    _wait_for(lambda: orc.runs.records() and orc.runs.records()[-1].status == "cancelled")


def test_connection_refused_is_a_retryable_provider_error(orc):
    orc.add_model(mmo.ModelConfig("local", "x", name="nowhere", base_url="http://127.0.0.1:9/v1"))
    with pytest.raises(mmo.ProviderError, match="could not connect") as info:
        orc.complete(PROMPT, model="nowhere")
    assert info.value.retryable


def _wait_for(condition, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.mark.parametrize("name", ["oa", "an"])
def test_temperature_reaches_the_wire(orc, sim, name):
    orc.complete(PROMPT, model=with_model_id(orc, name, "sim-echo"), temperature=0.25)
    assert sim.last_request("sim-echo")["body"]["temperature"] == 0.25
    orc.complete(PROMPT, model=with_model_id(orc, name, "sim-fast"))
    assert "temperature" not in sim.last_request("sim-fast")["body"]  # provider default


def test_clients_are_reused_across_calls(orc, sim):
    orc.add_model(mmo.ModelConfig("sim", "sim-fast", name="shared-sim"))  # the in-process sim
    for name in ("oa", "an", "shared-sim"):
        orc.complete(PROMPT, model=name)
        first = orc._engine.clients[name]
        orc.complete(PROMPT + " again", model=name)
        assert orc._engine.clients[name] is first, name


@pytest.mark.parametrize("name", ["oa", "an", "lo"])
def test_calls_reuse_one_connection(orc, sim, name):
    """A finished answer's stream is read to its end, so the next call reuses the connection."""
    for _ in range(3):
        assert orc.complete(PROMPT, model=name, cache=False).ok
    assert sim.request_count() == 3
    assert sim.connections == 1
