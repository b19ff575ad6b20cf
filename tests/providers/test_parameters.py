"""Sampling parameters (stop, seed, top_p, the penalties, logit_bias, user) from the Python API
to the wire: what each provider's request body carries, read back from the simulated
provider, and what a provider that lacks one refuses before sending anything."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from helpers import ANTHROPIC_LACKS, SAMPLING, sim_models

import mmo_magic as mmo
from mmo_magic.core.completion import CompletionRequest, Message
from mmo_magic.core.errors import InvalidRequestError
from mmo_magic.providers import register_function, unregister_function
from mmo_magic.providers.base import ModelClient
from mmo_magic.providers.embedded import EmbeddedClient, model_path

# What each provider's wire carries without them (the same as before they existed).
OPENAI_KEYS = {"model", "messages", "stream", "stream_options"}
ANTHROPIC_KEYS = {"model", "messages", "max_tokens", "stream"}


def sent(sim: Any) -> dict[str, Any]:
    """The body of the one request the simulated provider got."""
    assert sim.request_count() == 1, sim.requests
    last = sim.last_request()
    assert last is not None
    body: dict[str, Any] = last["body"]
    return body


# -- what reaches the wire ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "max_tokens_key"), [("oa", "max_completion_tokens"),
                                                       ("lo", "max_tokens")])  # fmt: skip
def test_openai_wire_carries_every_parameter_as_is(orc, sim, name, max_tokens_key):
    r = orc.complete("hi", model=name, **SAMPLING)
    assert r.ok
    body = sent(sim)
    assert {k: body[k] for k in SAMPLING} == SAMPLING
    assert set(body) == OPENAI_KEYS | {max_tokens_key} | set(SAMPLING)


def test_a_lone_stop_string_and_int_token_ids_take_the_wire_form(orc, sim):
    orc.complete("hi", model="oa", stop="\n", logit_bias={50256: -100})
    body = sent(sim)
    assert body["stop"] == ["\n"]
    assert body["logit_bias"] == {"50256": -100}


def test_anthropic_wire_carries_them_mapped(orc, sim):
    r = orc.complete("hi", model="an", stop=["\n\n", "END"], top_p=0.9, user="user-1234")
    assert r.ok
    body = sent(sim)
    assert body["stop_sequences"] == ["\n\n", "END"]
    assert body["top_p"] == 0.9
    assert body["metadata"] == {"user_id": "user-1234"}
    assert set(body) == ANTHROPIC_KEYS | {"stop_sequences", "top_p", "metadata"}


@pytest.mark.parametrize(("name", "max_tokens_key"), [("oa", "max_completion_tokens"),
                                                       ("lo", "max_tokens")])  # fmt: skip
def test_openai_wire_without_them_is_unchanged(orc, sim, name, max_tokens_key):
    orc.complete("hi", model=name, temperature=0.5)
    assert set(sent(sim)) == OPENAI_KEYS | {"temperature", max_tokens_key}


def test_anthropic_wire_without_them_is_unchanged(orc, sim):
    orc.complete("hi", model="an")
    assert set(sent(sim)) == ANTHROPIC_KEYS


@pytest.mark.parametrize("kind", ["stream", "race"])
def test_streams_and_fan_outs_send_them_too(orc, sim, kind):
    if kind == "stream":
        stream = orc.stream("hi", model="oa", seed=11, stop=["x"])
        assert "".join(stream)
    else:
        race = orc.race("hi", models=["oa"], seed=11, stop=["x"])
        assert race.winner is not None
    body = sent(sim)
    assert (body["seed"], body["stop"]) == (11, ["x"])


async def test_async_complete_sends_them(orc, sim):
    await orc.acomplete("hi", model="oa", seed=3, top_p=0.5)
    body = sent(sim)
    assert (body["seed"], body["top_p"]) == (3, 0.5)


def test_the_answer_depends_on_them_so_the_cache_is_skipped(sim, keys, tmp_path):
    with mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:",
                          cache=tmp_path / "cache.sqlite3") as orc:  # fmt: skip
        orc.complete("hi", model="oa")
        assert orc.complete("hi", model="oa").cached  # the cache works here
        r = orc.complete("hi", model="oa", stop=["\n"])
        assert not r.cached
        assert sim.request_count() == 2
        assert sim.last_request()["body"]["stop"] == ["\n"]


# -- what is refused -----------------------------------------------------------------------


@pytest.mark.parametrize("param", ANTHROPIC_LACKS)
def test_anthropic_refuses_what_messages_lacks_and_sends_nothing(orc, sim, param):
    with pytest.raises(InvalidRequestError) as caught:
        orc.complete("hi", model="an", **{param: SAMPLING[param]})
    message = str(caught.value)
    assert f"{param} is not supported by model 'an'" in message
    assert "anthropic" in message
    assert sim.request_count() == 0
    record = orc.runs.records()[-1]
    assert (record.model, record.status, record.error_type) == (
        "an",
        "error",
        "InvalidRequestError",
    )


def test_a_refused_option_stops_the_call_rather_than_failing_over(orc, sim):
    # A refusal is about the request, not the model: the next model is not tried instead.
    with pytest.raises(InvalidRequestError, match="seed"):
        orc.complete("hi", model="an", seed=1, fallbacks=["oa"])
    assert sim.request_count() == 0


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"sed": 7}, "Did you mean 'seed'"),
        ({"top_P": 0.5}, "Did you mean 'top_p'"),
        ({"frequency_penalti": 1}, "Did you mean 'frequency_penalty'"),
        ({"stop_sequences": ["x"]}, "Did you mean 'stop'"),
        ({"logit_bais": {}}, "Did you mean 'logit_bias'"),
        ({"top_p": 1.5}, "top_p must be a number from 0 to 1"),
        ({"top_p": float("nan")}, "top_p"),
        ({"top_p": True}, "top_p"),
        ({"frequency_penalty": -3}, "frequency_penalty must be a number from -2 to 2"),
        ({"presence_penalty": "1"}, "presence_penalty"),
        ({"seed": "7"}, "seed must be a whole number"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"seed": False}, "seed must be a whole number"),
        ({"stop": [1]}, "stop must be a string or a list of strings"),
        ({"stop": {"x"}}, "stop must be a string or a list of strings"),
        ({"stop": [""]}, "empty string"),
        ({"logit_bias": [1, 2]}, "logit_bias must map token ids"),
        ({"logit_bias": {"abc": 1}}, "logit_bias keys must be token ids"),
        ({"logit_bias": {-1: 1}}, "logit_bias keys must be token ids"),
        ({"logit_bias": {"5": 101}}, "from -100 to 100"),
        ({"user": 5}, "user must be a string"),
    ],
)
def test_bad_options_are_refused_before_anything_is_sent(orc, sim, options, words):
    with pytest.raises(InvalidRequestError) as caught:
        orc.complete("hi", model="oa", **options)
    assert words in str(caught.value)
    assert sim.request_count() == 0


def test_empty_stop_list_means_no_stop(orc, sim):
    orc.complete("hi", model="oa", stop=[])
    assert "stop" not in sent(sim)


def test_function_models_get_them_on_the_request(orc, sim):
    seen: list[CompletionRequest] = []

    def shout(request: CompletionRequest) -> str:
        seen.append(request)
        return request.prompt_text.upper()

    register_function("record-params", shout)
    try:
        orc.add_model(mmo.ModelConfig("function", "record-params", name="fn"))
        orc.complete("hi", model="fn", seed=5, stop="Z", logit_bias={3: 1})
    finally:
        unregister_function("record-params")
    assert (seen[0].seed, seen[0].stop, dict(seen[0].logit_bias or {})) == (5, ("Z",), {"3": 1})
    assert seen[0].sampling == {"seed": 5, "stop": ["Z"], "logit_bias": {"3": 1}}


# -- the embedded model (llama.cpp) ---------------------------------------------------------


def embedded_client() -> EmbeddedClient:
    """An EmbeddedClient without its model file: ``_params`` needs only the config."""
    client = EmbeddedClient.__new__(EmbeddedClient)
    ModelClient.__init__(client, mmo.ModelConfig("embedded", "SmolLM2-135M-Instruct",
                                                 name="smol", max_tokens=16))  # fmt: skip
    return client


def test_embedded_maps_them_to_llama_cpp_arguments():
    request = CompletionRequest(
        (Message("user", "hi"),), stop=("\n",), seed=7, top_p=0.9, frequency_penalty=0.5,
        presence_penalty=-0.5, logit_bias={"50256": -100, "3": 2},
    )  # fmt: skip
    params = embedded_client()._params(request)
    assert params == {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16,
        "temperature": 0.2,
        "stop": ["\n"],
        "seed": 7,
        "top_p": 0.9,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "logit_bias": {50256: -100.0, 3: 2.0},  # llama-cpp-python's keys are ints
    }
    # Without them: exactly what it sent before they existed.
    plain = embedded_client()._params(CompletionRequest((Message("user", "hi"),)))
    assert set(plain) == {"messages", "max_tokens", "temperature"}
    llama_cpp = pytest.importorskip("llama_cpp")
    # Every key is an argument of the installed create_chat_completion.
    inspect.signature(llama_cpp.Llama.create_chat_completion).bind(None, **params, stream=True)


def test_embedded_refuses_user():
    request = CompletionRequest((Message("user", "hi"),), user="u-1")
    with pytest.raises(InvalidRequestError, match="user is not supported by model 'smol'"):
        embedded_client()._params(request)


def _embedded_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return model_path() is not None


@pytest.mark.skipif(not _embedded_available(), reason="needs llama-cpp-python and SmolLM2")
def test_embedded_model_honours_stop_and_seed():
    config = mmo.ModelConfig("embedded", "SmolLM2-135M-Instruct", name="smol", max_tokens=24,
                             cost_per_1k_input=0.0, cost_per_1k_output=0.0)  # fmt: skip
    prompt = "Name three colours of the rainbow, separated by commas."
    with mmo.Orchestrator([config], default_model="smol", runlog=":memory:", cache=False) as orc:
        full = orc.complete(prompt, temperature=0).content
        words = full.split()
        assert len(words) >= 3, full
        cut_at = words[2]
        cut = orc.complete(prompt, temperature=0, stop=[cut_at])
        assert cut.ok and cut.finish_reason == "stop"
        assert cut.content == full[: full.index(cut_at)]
        # A seed makes sampling repeatable; different seeds draw different answers.
        seeded = [orc.complete(prompt, temperature=1.5, seed=s).content for s in (1, 2, 3, 1)]
        assert seeded[0] == seeded[3]
        assert len(set(seeded)) > 1, seeded
