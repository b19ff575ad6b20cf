"""Structured output and tool schemas checked with jsonschema (issue 27 #15): the answer is
validated against the whole of JSON Schema, and the schemas themselves before anything is sent."""

from __future__ import annotations

import pytest

import mmo_magic as mmo
from mmo_magic.core.structured import (
    StructuredOutputError,
    parse,
    response_format,
    tools,
)

SCORE = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"},
                 "maxItems": 2},
    },
    "required": ["score"],
    "additionalProperties": False,
}  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [('{"score": 11}', "maximum"), ('{"score": -1}', "minimum"),
     ('{"score": 1, "tags": ["A"]}', "match"), ('{"score": 1, "tags": ["a", "b", "c"]}', "long"),
     ('{"score": 1, "extra": 2}', "Additional"), ('{"score": "1"}', "integer")],
)  # fmt: skip
def test_an_answer_breaking_any_keyword_is_refused(answer, complaint):
    with pytest.raises(StructuredOutputError, match=complaint) as caught:
        parse(response_format(SCORE), answer, provider="sim", model="m")
    assert caught.value.raw == answer


def test_an_answer_that_fits_is_returned():
    assert parse(response_format(SCORE), '{"score": 10, "tags": ["ok"]}') == {
        "score": 10, "tags": ["ok"],
    }  # fmt: skip


@pytest.mark.parametrize(
    "schema",
    [{"type": "strng"}, {"type": "object", "properties": {"a": {"type": "nope"}}},
     {"type": "object", "required": "a"}, {"type": "integer", "maximum": "ten"}],
)  # fmt: skip
def test_an_invalid_response_schema_is_refused_before_sending(sim, keys, schema):
    from helpers import sim_models

    with pytest.raises(mmo.InvalidRequestError, match="not a valid JSON Schema"):
        response_format(schema)
    with (
        mmo.Orchestrator(sim_models(sim), runlog=":memory:", cache=False) as orc,
        pytest.raises(mmo.InvalidRequestError) as caught,
    ):
        orc.complete("x", model="oa", response_format=schema)
    assert caught.value.param == "response_format"
    assert sim.request_count() == 0


def test_an_invalid_tool_schema_is_refused_before_sending():
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}
    with pytest.raises(mmo.InvalidRequestError, match=r"tools\[0\] \(f\): parameters") as caught:
        tools([bad])
    assert caught.value.param == "tools"
