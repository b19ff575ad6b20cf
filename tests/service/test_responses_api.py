"""``POST /v1/responses`` with real clients: the openai SDK's ``responses.create`` (plain,
streamed, tools, text.format), pydantic-ai's ``OpenAIResponsesModel`` and langchain-openai's
``use_responses_api=True``, through the gateway to the simulated providers of both wires."""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import openai
import pytest
from helpers import KEY, WEATHER
from pydantic import BaseModel

TOOL = {"type": "function", **WEATHER["function"]}  # the Responses API's flat form
ASK = "What is the weather in Paris?"


class City(BaseModel):
    """A city and how many live there."""

    name: str
    population: int
    kind: Literal["town", "city", "metropolis"]


def sent(sim: Any) -> dict[str, Any]:
    body: dict[str, Any] = sim.last_request()["body"]
    return body


@pytest.mark.parametrize("model", ["oa", "an"])
def test_plain_response_with_instructions_and_max_output_tokens(client, sim, model):
    r = client.responses.create(
        model=model, input="hello there", instructions="Answer briefly.", max_output_tokens=50
    )
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert r.output_text and r.output[0].type == "message"
    assert (
        r.usage is not None and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    )
    body = sent(sim)
    if model == "oa":
        assert body["messages"][0] == {"role": "system", "content": "Answer briefly."}
        assert 50 in (body.get("max_tokens"), body.get("max_completion_tokens"))
    else:
        assert body["system"] in ("Answer briefly.", [{"type": "text", "text": "Answer briefly."}])
        assert body["max_tokens"] == 50


def test_streamed_response_has_the_typed_events_in_order(client, sim):
    events = list(client.responses.create(model="oa", input="hello there", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
    ]  # fmt: skip
    assert kinds[-4:] == [
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed",
    ]  # fmt: skip
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) >= 1
    final = events[-1].response
    assert final.output_text == "".join(deltas) and final.status == "completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_the_sdk_stream_helper_accumulates_the_final_response(client):
    with client.responses.stream(model="an", input="hello there") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text and final.output_text == text


@pytest.mark.parametrize("model", ["oa", "an"])
@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_round_trip(client, sim, model, stream):
    def create(**request: Any) -> Any:
        if not stream:
            return client.responses.create(model=model, tools=[TOOL], **request)
        events = list(client.responses.create(model=model, tools=[TOOL], stream=True, **request))
        args = [e for e in events if e.type == "response.function_call_arguments.delta"]
        done = [e for e in events if e.type == "response.function_call_arguments.done"]
        assert [a.delta for a in args] == [d.arguments for d in done]
        return events[-1].response

    first = create(input=ASK)
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id
    assert json.loads(call.arguments)["unit"] in ("celsius", "fahrenheit")
    tools = sent(sim)["tools"]
    assert "get_weather" in json.dumps(tools)

    history = [
        {"role": "user", "content": ASK},
        {"type": "function_call", "call_id": call.call_id, "name": call.name,
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "21 degrees"},
    ]  # fmt: skip
    final = create(input=history)
    assert "21 degrees" in final.output_text
    assert not [item for item in final.output if item.type == "function_call"]


def test_tool_choice_reaches_the_model(client, sim):
    tools = [TOOL, {"type": "function", "name": "get_time", "parameters": {"type": "object"}}]
    r = client.responses.create(
        model="oa", input=ASK, tools=tools, tool_choice={"type": "function", "name": "get_time"}
    )
    assert [i.name for i in r.output if i.type == "function_call"] == ["get_time"]
    assert sent(sim)["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}


@pytest.mark.parametrize("model", ["oa", "an"])
def test_text_format_json_schema_gives_valid_json(client, sim, model):
    schema = City.model_json_schema()
    r = client.responses.create(
        model=model, input="Describe Paris.",
        text={"format": {"type": "json_schema", "name": "City", "schema": schema, "strict": False}},
    )  # fmt: skip
    City.model_validate_json(r.output_text)
    parsed = client.responses.parse(model=model, input="Describe Paris.", text_format=City)
    assert isinstance(parsed.output_parsed, City)


def test_auto_task_routes_like_chat(client, gateway):
    r = client.responses.create(model="auto:task", input="Fix this Python function: def f(: pass")
    assert r.model in {m.name for m in gateway.orc.models()}
    assert r.model_extra and "task" in (r.model_extra["mmo"]["route_reason"] or "")


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("previous_response_id", "resp_123", "previous_response_id"),
        ("store", True, "store"),
        ("reasoning", {"effort": "high", "budget": 5}, "budget"),
        ("frobnicate", 1, "frobnicate"),
        ("input", [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}],
         "input[0].content"),
        ("tools", [{"type": "web_search"}], "tools[0]"),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_refused_by_name(gateway, sim, field, value, param):
    before = sim.request_count()
    body = {"model": "oa", "input": "hello", field: value}
    response = gateway.post("/v1/responses", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert sim.request_count() == before  # nothing was sent


def test_off_values_of_refused_parameters_pass(gateway):
    body = {
        "model": "oa",
        "input": "hello",
        "store": False,
        "include": [],
        "truncation": "disabled",
    }
    assert gateway.post("/v1/responses", body).status_code == 200


def test_a_stream_that_breaks_ends_in_an_error_the_sdk_raises(gateway, client, sim):
    name = gateway.model("sim-echo?fault=cut&cut_after=3")
    text = ""
    with pytest.raises(openai.APIError, match="broke mid-stream"):
        for event in client.responses.create(model=name, input="one two three four", stream=True):
            text += getattr(event, "delta", "") if event.type.endswith("text.delta") else ""
    assert text == "one two three"  # what was sent stays sent


def test_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="hello")


def test_without_a_key_it_is_refused(gateway):
    response = httpx.post(f"{gateway.url}/v1/responses", json={"model": "oa", "input": "hi"})
    assert response.status_code == 401


# -- frameworks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["oa", "an"])
def test_pydantic_ai_responses_model(gateway, model):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=f"{gateway.url}/v1", api_key=KEY)
    agent = Agent(OpenAIResponsesModel(model, provider=provider), output_type=City)
    asked: list[str] = []

    @agent.tool_plain
    def population(city: str) -> int:
        """How many people live in ``city``."""
        asked.append(city)
        return 2_100_000

    result = agent.run_sync("How many people live in Paris?")
    assert isinstance(result.output, City) and len(asked) == 1
    text = Agent(OpenAIResponsesModel(model, provider=provider)).run_sync("hello there")
    assert isinstance(text.output, str) and text.output


@pytest.mark.parametrize("stream", [False, True])
def test_langchain_use_responses_api(gateway, stream):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        model="oa", base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0,
        use_responses_api=True, streaming=stream,
    )  # fmt: skip
    assert chat.invoke("hello there").text
    bound = chat.bind_tools([WEATHER])
    messages: list[Any] = [HumanMessage(ASK)]
    asked = bound.invoke(messages)
    (call,) = asked.tool_calls
    assert call["name"] == "get_weather"
    messages += [asked, ToolMessage("21 degrees", tool_call_id=call["id"])]
    assert "21 degrees" in bound.invoke(messages).text
    city = chat.with_structured_output(City, method="json_schema").invoke("Describe Paris.")
    assert isinstance(city, City)


def test_openai_agents_default_agent_with_a_tool_and_an_output_type(gateway):
    import asyncio

    from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool

    asked: list[str] = []

    @function_tool
    def population(city: str) -> int:
        """How many people live in ``city``."""
        asked.append(city)
        return 2_100_000

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
        model = OpenAIResponsesModel("oa", openai_client=client)  # the default model's class
        agent = Agent(name="cities", model=model, tools=[population], output_type=City)
        config = RunConfig(tracing_disabled=True)
        return await Runner.run(agent, "How many people live in Paris?", run_config=config)

    result = asyncio.run(run())
    assert isinstance(result.final_output, City) and len(asked) == 1


def test_an_image_in_the_input_reaches_the_model(client, gateway, sim):
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    seeing = gateway.model("sim-fast?reply=parts", base="an")
    r = client.responses.create(
        model=seeing,
        input=[{"role": "user", "content": [
            {"type": "input_text", "text": "What does this show?"},
            {"type": "input_image", "image_url": url, "detail": "auto"},
        ]}],
    )  # fmt: skip
    assert "image/png" in r.output_text
    (user,) = sent(sim)["messages"]
    assert [part["type"] for part in user["content"]] == ["text", "image"]


def test_chat_image_parts_reach_the_model(client, gateway, sim):
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    seeing = gateway.model("sim-fast?reply=parts", base="an")
    r = client.chat.completions.create(
        model=seeing,
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What does this show?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]}],
    )  # fmt: skip
    assert "image/png" in (r.choices[0].message.content or "")
    with pytest.raises(openai.BadRequestError, match="input_audio"):
        client.chat.completions.create(
            model="oa",
            messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
        )
