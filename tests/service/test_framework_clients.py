"""Real agent-framework clients through the gateway: langchain-openai's structured output,
pydantic-ai agents, and the openai SDK's tool-call round trip, streaming included.

The gateway (``test_server.plain_service``, uvicorn in a thread) runs in front of the
simulated provider, which answers tool calls with arguments that satisfy each tool's schema.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import openai
import pytest
from helpers import KEY, WEATHER
from pydantic import BaseModel

USER = [{"role": "user", "content": "What is the weather in Paris?"}]


class City(BaseModel):
    """A city and how many live there."""

    name: str
    population: int
    kind: Literal["town", "city", "metropolis"]


# -- langchain-openai --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
@pytest.mark.parametrize("model", ["oa", "an"])
def test_langchain_structured_output_gives_a_valid_instance(gateway, sim, model, method):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=model, base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    city = chat.with_structured_output(City, method=method).invoke("Describe Paris.")
    assert isinstance(city, City) and city.kind in ("town", "city", "metropolis")
    body = sim.last_request()["body"]
    if method == "function_calling":
        # The schema went as a tool the model was made to call, in each provider's form.
        tools = body["tools"]
        if model == "an":
            assert tools[0]["name"] == "City" and body["tool_choice"]["name"] == "City"
        else:
            assert tools[0]["function"]["name"] == "City"
            assert body["tool_choice"] == {"type": "function", "function": {"name": "City"}}


def test_langchain_bound_tools_round_trip(gateway, sim):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="an", base_url=f"{gateway.url}/v1", api_key=KEY)
    bound = chat.bind_tools([WEATHER])
    messages: list[Any] = [HumanMessage("What is the weather in Paris?")]
    asked = bound.invoke(messages)
    (call,) = asked.tool_calls
    assert call["name"] == "get_weather" and call["args"]["unit"] in ("celsius", "fahrenheit")
    messages += [asked, ToolMessage("21 degrees", tool_call_id=call["id"])]
    final = bound.invoke(messages)
    assert "21 degrees" in final.content and not final.tool_calls


# -- pydantic-ai -------------------------------------------------------------------------------


def _agent(gateway: Any, model: str, **kw: Any) -> Any:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=f"{gateway.url}/v1", api_key=KEY)
    return Agent(OpenAIChatModel(model, provider=provider), **kw)


@pytest.mark.parametrize("model", ["oa", "an", "lo"])
def test_pydantic_ai_agent_returns_a_valid_instance(gateway, sim, model):
    result = _agent(gateway, model, output_type=City).run_sync("Describe Paris.")
    assert isinstance(result.output, City)
    assert sim.last_request()["body"]["tools"]  # the output went as a tool call


def test_pydantic_ai_agent_calls_its_tool_then_answers(gateway, sim):
    agent = _agent(gateway, "an", output_type=City)
    asked: list[str] = []

    @agent.tool_plain
    def population(city: str) -> int:
        """How many people live in ``city``."""
        asked.append(city)
        return 2_100_000

    result = agent.run_sync("How many people live in Paris?")
    assert isinstance(result.output, City)
    assert len(asked) == 1  # the tool ran once, its result went back, then the answer came
    tool_results = [
        block
        for message in sim.last_request()["body"]["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert tool_results and "2100000" in json.dumps(tool_results)


# -- the openai SDK ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["oa", "an", "lo"])
def test_openai_sdk_tool_call_round_trip(client, sim, model):
    first = client.chat.completions.create(model=model, messages=USER, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["unit"] in ("celsius", "fahrenheit")

    messages = [
        *USER,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "21 degrees"},
    ]
    final = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    assert final.choices[0].finish_reason == "stop"
    assert "21 degrees" in (final.choices[0].message.content or "")
    assert not final.choices[0].message.tool_calls


def _streamed(client: openai.OpenAI, **request: Any) -> tuple[str, dict[int, dict[str, str]], str]:
    """(text, tool calls by index accumulated from delta.tool_calls, finish reason)."""
    text, calls, finish = "", {}, ""
    for chunk in client.chat.completions.create(stream=True, **request):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for piece in delta.tool_calls or ():
            call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += piece.id or ""
            if piece.function is not None:
                call["name"] += piece.function.name or ""
                call["arguments"] += piece.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    return text, calls, finish


@pytest.mark.parametrize("model", ["oa", "an"])
def test_openai_sdk_streamed_tool_call_round_trip(client, sim, model):
    text, calls, finish = _streamed(client, model=model, messages=USER, tools=[WEATHER])
    assert finish == "tool_calls" and text == ""
    call = calls[0]
    assert call["name"] == "get_weather" and call["id"]
    assert json.loads(call["arguments"])["unit"] in ("celsius", "fahrenheit")

    sent_call = {"id": call["id"], "type": "function",
                 "function": {"name": call["name"], "arguments": call["arguments"]}}  # fmt: skip
    messages = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [sent_call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "21 degrees"},
    ]
    text, calls, finish = _streamed(client, model=model, messages=messages, tools=[WEATHER])
    assert finish == "stop" and not calls and "21 degrees" in text


def test_tool_choice_and_parallel_tool_calls_reach_the_model(client, sim):
    tools = [WEATHER, {"type": "function", "function": {"name": "get_time"}}]
    first = client.chat.completions.create(
        model="oa", messages=USER, tools=tools, parallel_tool_calls=False,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )  # fmt: skip
    assert [c.function.name for c in first.choices[0].message.tool_calls or ()] == ["get_time"]
    body = sim.last_request()["body"]
    assert body["parallel_tool_calls"] is False
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    none = client.chat.completions.create(
        model="oa", messages=USER, tools=tools, tool_choice="none"
    )
    assert none.choices[0].message.content and not none.choices[0].message.tool_calls


def test_a_model_without_tool_calling_gets_a_400_naming_tools(gateway, client, sim):
    old = gateway.orc.catalogue.resolve("lo").replace(
        name="old-server", model_id="sim-fast?structured=false"
    )
    gateway.orc.add_model(old)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="old-server", messages=USER, tools=[WEATHER])
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "tools" and "tool calling is not supported" in error["message"]


def test_the_run_log_records_the_gateways_tool_calls(gateway, client, sim):
    first = client.chat.completions.create(model="oa", messages=USER, tools=[WEATHER])
    (call,) = first.choices[0].message.tool_calls or []
    record = gateway.orc.runs.records(last=1)[0]
    assert record.step == "service"
    assert json.loads(record.tool_calls or "")[0]["id"] == call.id
