"""OpenAI request parameters through the gateway: each one reaches the model (mapped to its
provider's names) or is refused with a 400 naming it, never accepted and dropped.

The real openai SDK in front of the service (uvicorn in a thread), the simulated provider
behind it, which records the body of every request it gets.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from helpers import ANTHROPIC_LACKS, KEY, SAMPLING, USER, Service


@pytest.fixture
def client(gateway: Service) -> openai.AsyncOpenAI:
    return gateway.sdk()


def upstream(sim: Any) -> dict[str, Any]:
    """The body of the one request the simulated provider got."""
    assert sim.request_count() == 1, sim.requests
    last = sim.last_request()
    assert last is not None
    body: dict[str, Any] = last["body"]
    return body


async def create(client: openai.AsyncOpenAI, stream: bool, **request: Any) -> str:
    """The answer's text, streamed or not."""
    if not stream:
        response = await client.chat.completions.create(messages=USER, **request)
        return response.choices[0].message.content or ""
    chunks = await client.chat.completions.create(messages=USER, stream=True, **request)
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


# -- what reaches the model ----------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("model", ["oa", "lo"])
async def test_openai_upstreams_get_every_parameter_as_sent(client, sim, model, stream):
    assert await create(client, stream, model=model, **SAMPLING)
    body = upstream(sim)
    assert {name: body.get(name) for name in SAMPLING} == SAMPLING


async def test_a_lone_stop_string_reaches_the_model(client, sim):
    await create(client, False, model="oa", stop="\n")
    assert upstream(sim)["stop"] == ["\n"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_anthropic_upstream_gets_them_under_its_own_names(client, sim, stream):
    sent = {"stop": ["\n\n", "END"], "top_p": 0.9, "user": "user-1234"}
    assert await create(client, stream, model="an", **sent)
    body = upstream(sim)
    assert body["stop_sequences"] == ["\n\n", "END"]
    assert body["top_p"] == 0.9
    assert body["metadata"] == {"user_id": "user-1234"}
    assert not {"stop", "user", *ANTHROPIC_LACKS} & set(body)


@pytest.mark.parametrize("model", ["oa", "an"])
async def test_without_them_the_upstream_request_is_unchanged(client, sim, model):
    await create(client, False, model=model)
    body = upstream(sim)
    if model == "oa":
        assert set(body) == {"model", "messages", "stream", "stream_options",
                             "max_completion_tokens"}  # fmt: skip
    else:
        assert set(body) == {"model", "messages", "max_tokens", "stream"}


async def test_response_format_text_is_the_default_and_accepted(client, sim):
    assert await create(client, False, model="oa", response_format={"type": "text"})
    assert "response_format" not in upstream(sim)


# -- what is refused -----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("param", ANTHROPIC_LACKS)
async def test_anthropic_models_refuse_what_they_lack(client, sim, param, stream):
    with pytest.raises(openai.BadRequestError) as caught:
        await create(client, stream, model="an", **{param: SAMPLING[param]})
    error = caught.value.body
    assert isinstance(error, dict)
    assert f"{param} is not supported by model 'an'" in error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert sim.request_count() == 0


# response_format (json_object, json_schema) passes through: see test_structured.py.
# tools, tool_choice and parallel_tool_calls pass through: see test_framework_clients.py.
UNSUPPORTED: list[tuple[str, dict[str, Any]]] = [
    ("functions", {"functions": [{"name": "f", "parameters": {}}]}),
    ("function_call", {"function_call": "auto"}),
    ("logprobs", {"logprobs": True}),
    ("top_logprobs", {"top_logprobs": 3}),
    ("modalities", {"modalities": ["text", "audio"]}),
]  # fmt: skip


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(("param", "fields"), UNSUPPORTED)
async def test_parameters_not_supported_yet_get_a_400_naming_them(
    client, sim, param, fields, stream
):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="oa", messages=USER, stream=stream, extra_body=fields
        )
    assert caught.value.status_code == 400
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == param
    assert error["code"] == "unsupported_parameter"
    assert f"{param}" in error["message"] and "not supported by this server yet" in error["message"]
    assert sim.request_count() == 0


@pytest.mark.parametrize(
    "fields",
    [{"n": 1}, {"tools": []}, {"logprobs": False}, {"modalities": ["text"]}, {"functions": None}],
)
async def test_their_off_values_are_accepted(client, sim, fields):
    assert await create(client, False, model="oa", extra_body=fields)
    assert sim.request_count() == 1


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_p": 1.5}, "top_p"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"presence_penalty": -2.5}, "presence_penalty"),
        ({"seed": "7"}, "seed"),
        ({"stop": [1]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"logit_bias": {"50256": "x"}}, "logit_bias"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"user": 5}, "user"),
        ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, "tools"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
        ),
        ({"messages": [{"role": "tool", "content": "18"}]}, "tool_call_id"),
    ],
)
def test_bad_values_get_a_400_naming_the_parameter(gateway, sim, fields, param):
    body = {"model": "oa", "messages": USER, **fields}
    with httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {KEY}"}) as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert param in f"{error['message']} {error['param']}"
    assert sim.request_count() == 0
