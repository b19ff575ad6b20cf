"""The simulated provider scripts tool calls in both wire formats, streamed or not, over real
HTTP with the real SDKs: deterministic calls whose arguments satisfy the tool's schema."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from mmo_magic.sim.wire import instance_of

USER: Any = [{"role": "user", "content": "Weather in Oslo?"}]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 2},
    },
    "required": ["city", "unit"],
}
OA_TOOLS: Any = [
    {"type": "function", "function": {"name": "weather", "parameters": SCHEMA}},
    {"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}},
]
AN_TOOLS: Any = [{"name": "weather", "input_schema": SCHEMA}, {"name": "clock"}]


def test_openai_calls_the_first_tool_with_schema_valid_arguments(oa):
    r = oa.chat.completions.create(model="sim-fast", messages=USER, tools=OA_TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "weather"
    assert json.loads(call.function.arguments) == instance_of(SCHEMA, "sim-fast")
    assert json.loads(call.function.arguments)["days"] == 2
    again = oa.chat.completions.create(model="sim-fast", messages=USER, tools=OA_TOOLS)
    assert (again.choices[0].message.tool_calls or [])[0].id == call.id  # deterministic


def test_openai_streams_the_call_as_tool_call_deltas(oa):
    chunks = list(
        oa.chat.completions.create(model="sim-fast", messages=USER, tools=OA_TOOLS, stream=True)
    )
    pieces = [p for c in chunks if c.choices for p in c.choices[0].delta.tool_calls or ()]
    assert len(pieces) > 2  # the arguments arrive a word at a time
    assert pieces[0].id and pieces[0].function and pieces[0].function.name == "weather"
    arguments = "".join(p.function.arguments or "" for p in pieces if p.function)
    assert json.loads(arguments) == instance_of(SCHEMA, "sim-fast")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_openai_tool_choice_picks_the_tool_or_none(oa):
    named = {"type": "function", "function": {"name": "clock"}}
    r = oa.chat.completions.create(model="sim-fast", messages=USER, tools=OA_TOOLS,
                                   tool_choice=named)  # fmt: skip
    assert (r.choices[0].message.tool_calls or [])[0].function.name == "clock"
    r = oa.chat.completions.create(model="sim-fast", messages=USER, tools=OA_TOOLS,
                                   tool_choice="none")  # fmt: skip
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content


def test_after_a_tool_result_auto_answers_in_text_and_required_moves_on(oa):
    first = oa.chat.completions.create(model="sim-fast", messages=USER, tools=OA_TOOLS)
    call = (first.choices[0].message.tool_calls or [])[0]
    messages = [
        *USER,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "cold and windy"},
    ]
    text = oa.chat.completions.create(model="sim-fast", messages=messages, tools=OA_TOOLS)
    assert text.choices[0].message.content == "Tool result: cold and windy"
    required = oa.chat.completions.create(
        model="sim-fast", messages=messages, tools=OA_TOOLS, tool_choice="required"
    )
    assert (required.choices[0].message.tool_calls or [])[0].function.name == "clock"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_calls_a_tool_under_auto_and_any(an, stream):
    for choice in ({"type": "auto"}, {"type": "any"}):
        if not stream:
            message = an.messages.create(model="sim-fast", max_tokens=200, messages=USER,
                                         tools=AN_TOOLS, tool_choice=choice)  # fmt: skip
        else:
            with an.messages.stream(model="sim-fast", max_tokens=200, messages=USER,
                                    tools=AN_TOOLS, tool_choice=choice) as events:  # fmt: skip
                message = events.get_final_message()
        assert message.stop_reason == "tool_use"
        (block,) = message.content
        assert block.type == "tool_use" and block.name == "weather"
        assert block.input == instance_of(SCHEMA, "sim-fast")


def test_anthropic_answers_tool_results_in_text(an):
    first = an.messages.create(model="sim-fast", max_tokens=200, messages=USER, tools=AN_TOOLS)
    block = first.content[0]
    assert block.type == "tool_use"
    messages = [
        *USER,
        {"role": "assistant", "content": [block.model_dump()]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": block.id, "content": "cold"},
        ]},
    ]  # fmt: skip
    final = an.messages.create(model="sim-fast", max_tokens=200, messages=messages, tools=AN_TOOLS)
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text" and final.content[0].text == "Tool result: cold"


def test_a_server_without_tools_refuses_them(oa, an):
    with pytest.raises(openai.BadRequestError, match="tools"):
        oa.chat.completions.create(model="sim-fast?structured=false", messages=USER, tools=OA_TOOLS)
    with pytest.raises(anthropic.BadRequestError, match="tools"):
        an.messages.create(model="sim-fast?structured=false", max_tokens=10, messages=USER,
                           tools=AN_TOOLS)  # fmt: skip


def test_malformed_tools_are_a_400(oa):
    with pytest.raises(openai.BadRequestError, match="tools"):
        oa.chat.completions.create(model="sim-fast", messages=USER, extra_body={"tools": [1]})
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        oa.chat.completions.create(
            model="sim-fast", messages=USER, tools=OA_TOOLS,
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )  # fmt: skip


@pytest.mark.parametrize("parameters", [{}, {"type": "string"}, None])
def test_arguments_are_an_object_whatever_the_schema(oa, parameters):
    function: dict[str, Any] = {"name": "f"}
    if parameters is not None:
        function["parameters"] = parameters
    r = oa.chat.completions.create(
        model="sim-fast", messages=USER, tools=[{"type": "function", "function": function}]
    )
    (call,) = r.choices[0].message.tool_calls or []
    assert isinstance(json.loads(call.function.arguments), dict)
