"""Upstreams that misbehave (issue 27): bad usage, a key echoed in the answer, credentials in
``base_url``, keys that are ordinary words. Real SDKs over HTTP against the simulated provider,
whose ``usage_output`` and ``reply_key`` options script the hostile answers."""

from __future__ import annotations

import json
import traceback
import warnings

import pytest
from helpers import ANTHROPIC_KEY_ENV, KEY, OPENAI_KEY_ENV, chat, plain_service

import mmo_magic as mmo
from mmo_magic.providers.base import UsageWarning

WIRES = ["openai", "anthropic"]


def model(sim, wire: str, model_id: str, name: str = "m", **fields) -> mmo.ModelConfig:  # type: ignore[no-untyped-def]
    base_url = sim.anthropic_base_url if wire == "anthropic" else sim.openai_base_url
    env = ANTHROPIC_KEY_ENV if wire == "anthropic" else OPENAI_KEY_ENV
    return mmo.ModelConfig(wire, model_id, name=name, base_url=base_url, api_key_env=env,
                           max_retries=0, **fields)  # fmt: skip


# -- defect 1: bad usage -------------------------------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("bad", ["x", "1.5", "-5", "100000000000000000000", "[1]"])
@pytest.mark.parametrize("priced", [False, True], ids=["unpriced", "priced"])
def test_bad_usage_is_unknown_counted_locally_and_the_log_stays_readable(
    sim, keys, tmp_path, wire, bad, priced
):
    prices = {"cost_per_1k_input": 0.002, "cost_per_1k_output": 0.006} if priced else {}
    config = model(sim, wire, f"sim-fast?usage_output={bad}", **prices)
    with mmo.Orchestrator([config], runlog=tmp_path / "runs.sqlite3", cache=False,
                          budget=10.0, allow_unpriced=True) as orc:  # fmt: skip
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            answer = orc.complete("hello there", model="m")
        spent = orc.budget.spent
        frame = orc.runs.to_dataframe()
        orc.runs.export(tmp_path / "runs.parquet")
        orc.runs.export(tmp_path / "runs.jsonl")
    assert answer.status == "ok"
    assert isinstance(answer.output_tokens, int) and 0 <= answer.output_tokens < 1000
    assert answer.tokens_estimated
    assert any(issubclass(w.category, UsageWarning) for w in caught)
    if priced:
        assert answer.cost is not None and 0 <= answer.cost < 0.01
        assert spent >= 0 and spent == pytest.approx(answer.cost)
    (row,) = frame.itertuples()
    assert row.output_tokens == answer.output_tokens and row.tokens_estimated


def test_a_negative_cost_never_lowers_the_budgets_spend():
    from mmo_magic.orchestration.budget import Budget

    budget = Budget(1.0)
    budget.settle(None, 0.25)
    budget.settle(None, -0.5)
    budget.settle(None, float("nan"))
    assert budget.spent == 0.25


def test_a_models_price_of_bad_usage_is_unknown():
    config = mmo.ModelConfig("openai", "m", cost_per_1k_input=1.0, cost_per_1k_output=1.0)
    assert config.cost(10, "x") is None  # type: ignore[arg-type]
    assert config.cost(-10, 5) is None
    assert config.cost(1000, 1000) == 2.0


# -- defect 16: the model's own key in its answer ------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
def test_a_key_echoed_in_the_answer_never_reaches_the_caller(sim, keys, wire):
    key = keys[ANTHROPIC_KEY_ENV if wire == "anthropic" else OPENAI_KEY_ENV]
    with mmo.Orchestrator([model(sim, wire, "sim-fast?reply_key=true")], runlog=":memory:",
                          cache=False) as orc:  # fmt: skip
        answer = orc.complete("hello", model="m")
        deltas = list(orc.stream("hello", model="m"))
    assert answer.status == "ok" and answer.content.endswith("***")
    assert key not in answer.content
    assert key not in "".join(deltas) and "".join(deltas).endswith("***")


def test_a_key_echoed_in_the_answer_never_reaches_a_gateway_client(sim_server):
    with plain_service(sim_server) as service:
        service.orc.add_model(service.orc.catalogue.resolve("oa").replace(
            name="leaky", model_id="sim-fast?reply_key=true"))  # fmt: skip
        with service.http(KEY) as http:
            plain = http.post("/v1/chat/completions", json=chat("leaky")).json()
            streamed = http.post("/v1/chat/completions", json=chat("leaky", stream=True)).text
    assert "sk-test-openai-plain" not in json.dumps(plain) + streamed
    assert plain["choices"][0]["message"]["content"].endswith("***")


def test_a_key_split_across_chunks_is_still_found():
    from mmo_magic.core.redaction import StreamRedactor

    guard = StreamRedactor(["sk-abc-123456"])
    pieces = ["the key is sk-", "abc-12", "3456 and sk-a", "b done"]
    shown = "".join(guard.feed(p) for p in pieces) + guard.flush()
    assert shown == "the key is *** and sk-ab done"


# -- defect 8: credentials inside base_url -------------------------------------------------------


def test_credentials_in_base_url_never_show(keys, tmp_path):
    url = "http://someone:PaSS-w0rd-9@127.0.0.1:1/v1?key=QUERYSECRET42"
    config = mmo.ModelConfig("openai", "gpt-x", name="m", base_url=url, api_key_env=OPENAI_KEY_ENV,
                             max_retries=0, timeout_s=5)  # fmt: skip
    with mmo.Orchestrator([config], runlog=tmp_path / "runs.sqlite3", cache=False) as orc:
        with pytest.raises(mmo.ProviderError) as caught:
            orc.complete("hello", model="m")
        shown = [str(caught.value), "".join(traceback.format_exception(caught.value)),
                 repr(orc.catalogue), repr(config)]  # fmt: skip
        shown += [str(orc.runs.to_dataframe().to_dict())]
        orc.runs.export(tmp_path / "runs.jsonl")
        shown.append((tmp_path / "runs.jsonl").read_text())
    assert "could not connect to http://***@127.0.0.1:1/v1?key=***" in shown[0]
    for text in shown:
        assert "PaSS-w0rd-9" not in text and "QUERYSECRET42" not in text


def test_a_query_string_key_in_base_url_is_sent_as_a_query(sim, keys):
    for wire in WIRES:
        config = model(sim, wire, "sim-fast").replace(
            base_url=(sim.anthropic_base_url if wire == "anthropic" else sim.openai_base_url)
            + "?key=QKEY-123x"
        )
        with mmo.Orchestrator([config], runlog=":memory:", cache=False) as orc:
            assert orc.complete("hello", model="m").status == "ok"
        seen = sim.last_request()
        assert seen["path"] in ("/v1/chat/completions", "/v1/messages"), seen["path"]
        assert seen["query"] == "key=QKEY-123x"


# -- defect 9: keys that are ordinary words ------------------------------------------------------


def test_a_key_that_is_an_ordinary_word_leaves_text_alone(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("LOCAL_KEY", "ollama")
    monkeypatch.setenv("STRONG_LOCAL_KEY", "k3y-Strong-91xq")
    configs = [
        mmo.ModelConfig("local", "sim-echo", name=name, base_url=sim.openai_base_url,
                        api_key_env=env, max_retries=0)
        for name, env in (("weak", "LOCAL_KEY"), ("strong", "STRONG_LOCAL_KEY"))
    ]  # fmt: skip
    with mmo.Orchestrator(configs, runlog=tmp_path / "runs.sqlite3", cache=False) as orc:
        orc.complete("I run ollama on my laptop", model="weak")
        orc.complete("the key k3y-Strong-91xq leaked", model="strong")
        prompts = [r.prompt for r in orc.runs.records()]
    assert prompts == ["I run ollama on my laptop", "the key *** leaked"]


def test_which_values_could_be_credentials():
    from mmo_magic.core.redaction import could_be_credential, redact_url

    assert not could_be_credential("ollama") and not could_be_credential("password")
    assert could_be_credential("k3y9x") and could_be_credential("a" * 20)
    assert redact_url("https://u:p@h/v1?key=abc&x=1") == "https://***@h/v1?key=***&x=***"
