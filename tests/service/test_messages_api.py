"""``POST /v1/messages`` with the real anthropic SDK (plain, streamed, tools) through the
gateway, mostly against an OpenAI-wire simulated model: an Anthropic client reaches any
configured model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from helpers import KEY, WEATHER, Service

TOOL = {
    "name": "get_weather",
    "description": WEATHER["function"]["description"],
    "input_schema": WEATHER["function"]["parameters"],
}
PNG = {"type": "base64", "media_type": "image/png", "data": "AA"}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
def client(gateway: Service) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0) as client:
        yield client


def sent(sim: Any) -> dict[str, Any]:
    body: dict[str, Any] = sim.last_request()["body"]
    return body


@pytest.mark.parametrize("model", ["oa", "an"])
def test_plain_message_with_system_and_stop_sequences(client, sim, model):
    m = client.messages.create(
        model=model, max_tokens=64, system="Answer briefly.", stop_sequences=["END"],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
    )  # fmt: skip
    assert m.type == "message" and m.role == "assistant" and m.stop_reason == "end_turn"
    assert m.content[0].type == "text" and m.content[0].text
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0
    assert m.model == model
    body = sent(sim)
    if model == "oa":
        assert body["messages"][0] == {"role": "system", "content": "Answer briefly."}
        assert body["stop"] in (["END"], "END")
        assert 64 in (body.get("max_tokens"), body.get("max_completion_tokens"))
    else:
        assert body["stop_sequences"] == ["END"] and body["max_tokens"] == 64


def test_max_tokens_reached_is_the_max_tokens_stop_reason(client):
    m = client.messages.create(model="oa", max_tokens=2, messages=ASK)
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 2


def test_streamed_events_are_the_sequence_the_sdk_expects(client):
    events = list(client.messages.create(model="oa", max_tokens=64, messages=ASK, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    delta = events[-2]
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens > 0
    with client.messages.stream(model="oa", max_tokens=64, messages=ASK) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text and final.stop_reason == "end_turn"


@pytest.mark.parametrize("model", ["oa", "an"])
@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_round_trip(client, sim, model, stream):
    def create(messages: list[dict[str, Any]]) -> Any:
        request = {"model": model, "max_tokens": 200, "tools": [TOOL], "messages": messages}
        if not stream:
            return client.messages.create(**request)
        with client.messages.stream(**request) as s:
            return s.get_final_message()

    first = create(ASK)
    assert first.stop_reason == "tool_use"
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.id
    assert use.input["unit"] in ("celsius", "fahrenheit")
    assert "get_weather" in json.dumps(sent(sim)["tools"])
    history = [
        *ASK,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": use.id, "content": "21 degrees"},
        ]},
    ]  # fmt: skip
    final = create(history)
    assert final.stop_reason == "end_turn"
    assert "21 degrees" in "".join(b.text for b in final.content if b.type == "text")


def test_tool_choice_maps_to_the_model(client, sim):
    time_tool = {"name": "get_time", "input_schema": {"type": "object"}}
    m = client.messages.create(
        model="oa", max_tokens=100, messages=ASK, tools=[TOOL, time_tool],
        tool_choice={"type": "tool", "name": "get_time", "disable_parallel_tool_use": True},
    )  # fmt: skip
    assert [b.name for b in m.content if b.type == "tool_use"] == ["get_time"]
    body = sent(sim)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert body["parallel_tool_calls"] is False
    client.messages.create(
        model="oa", max_tokens=100, messages=ASK, tools=[TOOL], tool_choice={"type": "any"}
    )
    assert sent(sim)["tool_choice"] == "required"


def test_auto_task_routes_like_chat(client, gateway):
    m = client.messages.create(
        model="auto:task", max_tokens=100,
        messages=[{"role": "user", "content": "Fix this Python function: def f(: pass"}],
    )  # fmt: skip
    assert m.model in {x.name for x in gateway.orc.models()}


def test_bearer_and_x_api_key_both_work_and_others_get_anthropic_401(gateway):
    body = {"model": "oa", "max_tokens": 20, "messages": ASK}
    url = f"{gateway.url}/v1/messages"
    assert httpx.post(url, json=body, headers={"x-api-key": KEY}).status_code == 200
    assert httpx.post(url, json=body, headers={"authorization": f"Bearer {KEY}"}).status_code == 200
    refused = httpx.post(url, json=body, headers={"x-api-key": "wrong"})
    assert refused.status_code == 401
    assert refused.json()["type"] == "error"
    assert refused.json()["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gateway.url, api_key="wrong", max_retries=0).messages.create(
            **body
        )


def test_errors_have_anthropics_shape(client, gateway):
    with pytest.raises(anthropic.NotFoundError) as found:
        client.messages.create(model="no-such-model", max_tokens=10, messages=ASK)
    assert found.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    # Chat keeps OpenAI's shape.
    chat = gateway.post("/v1/chat/completions", {"model": "no-such-model", "messages": ASK})
    assert chat.status_code == 404 and chat.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("messages", [{"role": "assistant", "content": [{"type": "image", "source": PNG}]}],
         "'image' block"),
        ("thinking", {"type": "enabled", "budget_tokens": 1024}, "thinking"),
        ("top_k", 5, "top_k"),
        ("frobnicate", 1, "frobnicate"),
        ("tools", [{"type": "web_search_20250305", "name": "web_search"}], "tool of type"),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_refused_by_name(client, sim, field, value, words):
    before = sim.request_count()
    with pytest.raises(anthropic.BadRequestError, match=words) as refused:
        # extra_body: sent as given, whether or not this SDK version knows the field.
        client.messages.create(model="oa", max_tokens=10, messages=ASK, extra_body={field: value})
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert sim.request_count() == before


def test_a_stream_that_breaks_ends_in_an_error_the_sdk_raises(gateway, client):
    name = gateway.model("sim-echo?fault=cut&cut_after=3")
    text = ""
    messages = [{"role": "user", "content": "one two three four"}]
    with pytest.raises(anthropic.APIStatusError, match="broke mid-stream"):  # noqa: SIM117
        with client.messages.stream(model=name, max_tokens=50, messages=messages) as stream:
            for piece in stream.text_stream:
                text += piece
    assert text == "one two three"


def png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("base", ["oa", "an"])
def test_an_image_reaches_an_openai_wire_model(client, gateway, sim, base):
    import base64

    seeing = gateway.model("sim-fast?reply=parts", base=base)
    source = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png()).decode()}
    m = client.messages.create(
        model=seeing, max_tokens=100,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": source},
            {"type": "text", "text": "What does this show?"},
        ]}],
    )  # fmt: skip
    assert "image" in m.content[0].text and "image/png" in m.content[0].text
    (user,) = [x for x in sent(sim)["messages"] if x["role"] == "user"]
    kinds = [part["type"] for part in user["content"]]
    assert kinds == (["image_url", "text"] if base == "oa" else ["image", "text"])
