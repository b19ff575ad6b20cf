"""Reasoning controls on every wire: chat's ``reasoning_effort``, the Responses API's
``reasoning.effort`` and Anthropic's ``thinking`` reach a reasoning model in its provider's
form, and a model that does not reason refuses them by name."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from helpers import KEY, USER


def sent(sim: Any) -> dict[str, Any]:
    body: dict[str, Any] = sim.last_request()["body"]
    return body


def test_chat_reasoning_effort_reaches_a_reasoning_model(client, gateway, sim):
    thinker = gateway.model("sim-fast", base="oa", reasoning=True)
    r = client.chat.completions.create(model=thinker, messages=USER, reasoning_effort="high")
    assert r.choices[0].message.content and sent(sim)["reasoning_effort"] == "high"
    # Thinking tokens where OpenAI puts them, part of completion_tokens.
    details = r.usage.completion_tokens_details
    assert details is not None and 0 < details.reasoning_tokens <= r.usage.completion_tokens
    plain = client.chat.completions.create(model="oa", messages=USER)
    assert plain.usage.completion_tokens_details is None  # no thinking: nothing claimed


def test_a_model_that_does_not_reason_refuses_it_by_name(client, sim):
    with pytest.raises(openai.BadRequestError, match="reasoning") as refused:
        client.chat.completions.create(model="oa", messages=USER, reasoning_effort="high")
    assert sim.request_count() == 0
    assert isinstance(refused.value.body, dict)


def test_responses_reasoning_effort_and_summary(client, gateway, sim):
    thinker = gateway.model("sim-fast", base="oa", reasoning=True)
    r = client.responses.create(
        model=thinker, input="hello there", reasoning={"effort": "low", "summary": "auto"}
    )
    assert sent(sim)["reasoning_effort"] == "low"
    assert r.output_text and r.usage is not None
    assert r.usage.output_tokens_details.reasoning_tokens == 8  # the sim thinks 8 words
    plain = client.responses.create(model=thinker, input="hello there", reasoning={"effort": "low"})
    assert [i.type for i in plain.output] == ["message"]  # no summary asked, none given


def test_messages_thinking_reaches_an_anthropic_reasoning_model(gateway, sim):
    thinker = gateway.model("sim-fast", base="an", reasoning=True)
    client = anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0)
    m = client.messages.create(
        model=thinker, max_tokens=2048, messages=USER,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )  # fmt: skip
    assert sent(sim)["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert [b.type for b in m.content] == ["thinking", "text"]
    assert m.content[0].thinking  # type: ignore[union-attr]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="an", max_tokens=2048, messages=USER,
            thinking={"type": "enabled", "budget_tokens": 1024},
        )  # fmt: skip
