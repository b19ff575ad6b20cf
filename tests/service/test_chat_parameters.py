"""Chat Completions parameters against the openai SDK's own request types: every parameter
the SDK can send is honoured or refused by name, never dropped; ``n`` > 1 makes several
choices; unknown fields are refused; legacy ``/v1/completions`` is mapped to chat."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from helpers import USER
from openai.types.chat.completion_create_params import CompletionCreateParamsBase

from mmo_magic.service.schemas import UNSUPPORTED, ChatRequest

# A value asking for something this server cannot do, for each refused parameter.
ASKING: dict[str, Any] = {
    "functions": [{"name": "f", "parameters": {}}],
    "function_call": "auto",
    "logprobs": True,
    "top_logprobs": 3,
    "audio": {"voice": "alloy", "format": "wav"},
    "modalities": ["text", "audio"],
    "verbosity": "low",
    "service_tier": "flex",
    "store": True,
    "metadata": {"team": "a"},
    "prediction": {"type": "content", "content": "x"},
    "web_search_options": {},
    "moderation": {"type": "auto"},
    "prompt_cache_key": "k",
    "prompt_cache_retention": "24h",
    "prompt_cache_options": {},
    "safety_identifier": "u1",
}


def test_every_sdk_parameter_is_honoured_or_refused_by_name():
    """A parameter a new openai SDK adds fails this test until it is passed on or refused."""
    sdk = set(CompletionCreateParamsBase.__annotations__)
    handled = set(ChatRequest.model_fields) | set(UNSUPPORTED)
    assert sdk <= handled, f"neither passed on nor refused: {sorted(sdk - handled)}"
    assert set(ASKING) == set(UNSUPPORTED)  # each refusal is exercised below


@pytest.mark.parametrize("param", sorted(UNSUPPORTED))
def test_each_refused_parameter_gets_a_400_naming_it(client, sim, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="oa", messages=USER, extra_body={param: ASKING[param]})
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == param and error["code"] == "unsupported_parameter"
    assert sim.request_count() == 0


def test_an_unknown_field_is_refused_by_name(client, sim):
    with pytest.raises(openai.BadRequestError, match="frobnicate") as caught:
        client.chat.completions.create(model="oa", messages=USER, extra_body={"frobnicate": 1})
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "unknown_parameter"
    assert sim.request_count() == 0


@pytest.mark.parametrize("model", ["oa", "an"])
def test_n_makes_that_many_choices_each_its_own_call(client, sim, gateway, model):
    r = client.chat.completions.create(model=model, messages=USER, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.message.content for c in r.choices)
    assert sim.request_count() == 3
    assert r.usage is not None and r.usage.completion_tokens == sum(
        len((c.message.content or "").split()) for c in r.choices
    )


def test_n_with_stream_is_refused_by_name(client, sim):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="oa", messages=USER, n=2, stream=True)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "n"
    assert sim.request_count() == 0


# -- legacy /v1/completions ----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["oa", "an"])
def test_legacy_completions_plain_streamed_and_n(client, sim, model):
    r = client.completions.create(model=model, prompt="hello there", max_tokens=20, stop=["END"])
    assert r.object == "text_completion" and r.choices[0].text and r.usage is not None
    body = sim.last_request()["body"]
    assert "hello there" in str(body["messages"])
    chunks = list(
        client.completions.create(
            model=model, prompt="hello there", stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text and chunks[-1].usage is not None
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    two = client.completions.create(model=model, prompt=["hello there"], n=2)
    assert len(two.choices) == 2


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"suffix": "end"}, "suffix"), ({"echo": True}, "echo"), ({"best_of": 3}, "best_of"),
     ({"logprobs": 2}, "logprobs"), ({"prompt": ["a", "b"]}, "prompt"), ({"nope": 1}, "nope")],
)  # fmt: skip
def test_legacy_refusals_name_the_parameter(gateway, sim, fields, param):
    response = gateway.post("/v1/completions", {"model": "oa", "prompt": "hi", **fields})
    assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert sim.request_count() == 0
