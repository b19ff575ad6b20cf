"""The simulated provider honours structured output, over real HTTP with the real SDKs."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
from pydantic import BaseModel

from mmo_magic.sim.wire import instance_of

USER: Any = [{"role": "user", "content": "Describe a city"}]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "size": {"type": "integer", "minimum": 3},
        "ratio": {"type": "number"},
        "ok": {"type": "boolean"},
        "kind": {"enum": ["town", "city"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "where": {"$ref": "#/$defs/Place"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["name", "size"],
    "$defs": {"Place": {"type": "object", "properties": {"lat": {"type": "number"}}}},
}


class City(BaseModel):
    name: str
    population: int


def test_generator_covers_the_basic_types_deterministically():
    value = instance_of(SCHEMA)
    assert value == instance_of(SCHEMA)
    assert value["size"] == 3 and isinstance(value["ratio"], float) and value["ok"] is True
    assert value["kind"] == "town" and value["tags"] == ["simulated tags"]
    assert value["where"] == {"lat": 1.5} and value["note"] == "simulated note"


def json_schema(schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}


def test_openai_json_schema_non_streaming_and_streaming(oa):
    r = oa.chat.completions.create(
        model="sim-fast", messages=USER, response_format=json_schema(SCHEMA)
    )
    assert json.loads(r.choices[0].message.content or "") == instance_of(SCHEMA, "sim-fast")
    chunks = oa.chat.completions.create(
        model="sim-fast", messages=USER, response_format=json_schema(SCHEMA), stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text)["kind"] == "town"


def test_openai_sdk_parse_helper(oa):
    r = oa.beta.chat.completions.parse(model="sim-fast", messages=USER, response_format=City)
    assert r.choices[0].message.parsed == City(name="simulated name", population=1)


def test_json_object_gives_an_object(oa):
    r = oa.chat.completions.create(
        model="sim-fast", messages=USER, response_format={"type": "json_object"}
    )
    assert json.loads(r.choices[0].message.content or "") == {}


def test_anthropic_forced_tool_non_streaming_and_streaming(an):
    tool: Any = {"name": "city", "input_schema": SCHEMA}
    choice: Any = {"type": "tool", "name": "city"}
    message = an.messages.create(
        model="sim-fast", max_tokens=200, messages=USER, tools=[tool], tool_choice=choice
    )
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "city" and block.input["size"] == 3
    with an.messages.stream(
        model="sim-fast", max_tokens=200, messages=USER, tools=[tool], tool_choice=choice
    ) as stream:
        final = stream.get_final_message()
    (block,) = final.content
    assert block.type == "tool_use" and block.input == instance_of(SCHEMA, "sim-fast")


def test_anthropic_tool_choice_naming_no_tool_is_a_400(an):
    with pytest.raises(anthropic.BadRequestError):
        an.messages.create(
            model="sim-fast", max_tokens=50, messages=USER,
            tools=[{"name": "a", "input_schema": {"type": "object"}}],
            tool_choice={"type": "tool", "name": "b"},
        )  # fmt: skip


def test_structured_false_refuses_like_a_server_without_it(oa):
    with pytest.raises(openai.BadRequestError, match="response_format"):
        oa.chat.completions.create(
            model="sim-fast?structured=false", messages=USER, response_format=json_schema(SCHEMA)
        )
