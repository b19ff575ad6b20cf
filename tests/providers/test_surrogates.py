"""Lone surrogates in what a caller sends (issue 27 #7): ``"a\\ud800b"`` is a Python str but
no text. The SDKs raised UnicodeEncodeError and nothing was recorded; now the text is cleaned
as output is (U+FFFD), sent, and recorded."""

from __future__ import annotations

import pytest
from helpers import ANTHROPIC_KEY_ENV, OPENAI_KEY_ENV

import mmo_magic as mmo


@pytest.mark.parametrize("wire", ["openai", "anthropic", "local"])
@pytest.mark.parametrize(
    "call",
    [
        {"prompt": "a\ud800b"},
        {"prompt": "hello", "system": "\udc00"},
        {"prompt": [{"role": "user", "content": "x\udfffy"}]},
    ],
    ids=["prompt", "system", "message"],
)
def test_a_lone_surrogate_is_replaced_sent_and_recorded(sim, keys, tmp_path, wire, call):
    base_url = sim.anthropic_base_url if wire == "anthropic" else sim.openai_base_url
    env = {"openai": OPENAI_KEY_ENV, "anthropic": ANTHROPIC_KEY_ENV}.get(wire)
    config = mmo.ModelConfig(wire, "sim-echo", name="m", base_url=base_url, api_key_env=env,
                             max_retries=0)  # fmt: skip
    call = dict(call)  # parametrize shares the dict between cases
    prompt = call.pop("prompt")
    with mmo.Orchestrator([config], runlog=tmp_path / "runs.sqlite3", cache=False) as orc:
        answer = orc.complete(prompt, model="m", **call)
        (saved,) = orc.runs.records()
    assert answer.status == "ok" and saved.status == "ok"
    sent = str(sim.last_request()["body"])
    assert "\ufffd" in sent
    assert "\ufffd" in (saved.prompt + (saved.system or ""))
