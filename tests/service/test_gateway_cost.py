"""The gateway's own cost per request (issue 29): what was cut keeps every behaviour.

- SSE events made while earlier ones were being sent go out joined in one write
  (``streaming._coalesced``), unchanged and in order; a stream whose client leaves
  still stops what makes its events.
- Answers are shaped from the response's attributes (no ``dataclasses.asdict``), errors
  still scrubbed, the response itself untouched.
- Tokens per minute are a running sum of the window, not a sum over it per request.
- JSON bodies go out in one pass with orjson; what orjson cannot encode takes the old way.
- Streams and plain answers through the running gateway are what they were.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import chat, sse_data

from mmo_magic.core.attempts import Attempt
from mmo_magic.core.completion import CompletionResponse
from mmo_magic.service.auth import CLIENT_STATE
from mmo_magic.service.bodies import dumps, json_response
from mmo_magic.service.clients import Clients
from mmo_magic.service.errors import ClientLimitError
from mmo_magic.service.schemas import completion_out, details_out
from mmo_magic.service.streaming import _coalesced
from mmo_magic.storage.keys import ClientKey

# -- SSE events joined while the previous write is under way -------------------------------------


async def _collect(events: AsyncIterator[str]) -> list[str]:
    return [chunk async for chunk in _coalesced(events)]


def test_events_made_at_once_go_out_in_one_write_in_order() -> None:
    async def run() -> list[str]:
        later: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def events() -> AsyncIterator[str]:
            for i in range(5):  # made without waiting: one write
                yield f"data: {i}\n\n"
            asyncio.get_running_loop().call_soon(later.set_result, None)
            await later  # the upstream's next token is not there yet
            yield "data: 5\n\n"
            yield "data: [DONE]\n\n"

        return await _collect(events())

    chunks = asyncio.run(run())
    assert "".join(chunks) == "".join(f"data: {i}\n\n" for i in range(6)) + "data: [DONE]\n\n"
    assert chunks[0] == "".join(f"data: {i}\n\n" for i in range(5))  # one write, not five
    assert len(chunks) == 2


def test_events_that_come_one_by_one_go_out_one_by_one() -> None:
    async def run() -> list[str]:
        async def events() -> AsyncIterator[str]:
            for i in range(3):
                await asyncio.sleep(0.01)  # a token at a time: each sent as it comes
                yield f"data: {i}\n\n"

        return await _collect(events())

    assert asyncio.run(run()) == [f"data: {i}\n\n" for i in range(3)]


def test_an_error_the_events_raise_still_reaches_the_response() -> None:
    async def run() -> list[str]:
        async def events() -> AsyncIterator[str]:
            yield "data: 0\n\n"
            raise RuntimeError("broken wire")

        return await _collect(events())

    with pytest.raises(RuntimeError, match="broken wire"):
        asyncio.run(run())


def test_a_client_that_leaves_stops_what_makes_the_events() -> None:
    async def run() -> tuple[bool, list[str]]:
        closed = asyncio.Event()
        sent: list[str] = []

        async def events() -> AsyncIterator[str]:
            try:
                while True:  # an answer that would go on and on
                    await asyncio.sleep(0.005)
                    yield "data: more\n\n"
            finally:
                closed.set()  # what closes the call (streaming._guarded's texts.aclose())

        async def client() -> None:
            async for chunk in _coalesced(events()):
                sent.append(chunk)

        task = asyncio.ensure_future(client())
        while not sent:
            await asyncio.sleep(0.005)
        task.cancel()  # the response's task, cancelled when the client goes away
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.wait_for(closed.wait(), 5)
        return closed.is_set(), sent

    closed, sent = asyncio.run(run())
    assert closed and sent


# -- answers shaped from attributes --------------------------------------------------------------


def test_shaped_answers_scrub_errors_and_leave_the_response_alone() -> None:
    def scrub(text: str) -> str:
        return text.replace("http://10.1.2.3:9000", "[upstream]")

    attempt = Attempt(model="oa", provider="openai", status="error",
                      error="refused by http://10.1.2.3:9000/v1", latency_ms=1.5)  # fmt: skip
    r = CompletionResponse(
        content="hi", model="an", provider="anthropic", input_tokens=3, output_tokens=1,
        latency_ms=2.0, cost=0.001, status="ok", error="slow at http://10.1.2.3:9000",
        attempts=[attempt], run_id="r1", ttft_ms=1.0,
    )  # fmt: skip
    out = completion_out(r, scrub)
    assert out.error == "slow at [upstream]"
    assert out.attempts[0].error == "refused by [upstream]/v1"
    assert (out.content, out.model, out.cost, out.attempts[0].latency_ms) == (
        "hi",
        "an",
        0.001,
        1.5,
    )
    details = details_out(r, scrub)
    assert details.attempts[0].error == "refused by [upstream]/v1" and details.run_id == "r1"
    # The response the run log and the caller hold is not changed by shaping it.
    assert r.error == "slow at http://10.1.2.3:9000"
    assert attempt.error == "refused by http://10.1.2.3:9000/v1"


# -- tokens per minute: a running sum ------------------------------------------------------------


class _Request:
    """What ``Clients`` reads of a request: its scope's state (the gate's key)."""

    def __init__(self, key: ClientKey) -> None:
        self.scope: dict[str, Any] = {"state": {CLIENT_STATE: key}}


def test_tokens_per_minute_follow_the_sliding_window(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    key = ClientKey(name="k", tokens_per_minute=100)
    clients, request = Clients(store=None), _Request(key)

    def used(tokens: int) -> None:
        clients._count_tokens(key.name, tokens)  # what charging an answer counts

    clients.admit(request, ["oa"], known=lambda: ["oa"])  # type: ignore[arg-type]
    used(60)
    now[0] += 30
    used(50)  # 110 in the last minute: over
    with pytest.raises(ClientLimitError) as refused:
        clients.admit(request, ["oa"], known=lambda: ["oa"])  # type: ignore[arg-type]
    assert refused.value.code == "tokens_per_minute"
    now[0] += 31  # the 60 are over a minute old: 50 left
    clients.admit(request, ["oa"], known=lambda: ["oa"])  # type: ignore[arg-type]
    used(49)  # 99: still under
    clients.admit(request, ["oa"], known=lambda: ["oa"])  # type: ignore[arg-type]
    used(1)  # 100: at the limit
    with pytest.raises(ClientLimitError):
        clients.admit(request, ["oa"], known=lambda: ["oa"])  # type: ignore[arg-type]
    now[0] += 61  # everything expired
    clients.admit(request, ["oa"], known=lambda: ["oa"])  # type: ignore[arg-type]
    assert clients._token_sums["k"] == 0 and not clients._tokens["k"]


# -- JSON bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"text": "caf\u00e9 \U0001f600", "n": [1, 2.5, None, True]},
        {"lone": "a\ud800b"},  # orjson refuses a lone surrogate: json escapes it
        {"big": 2**70},  # over 64 bits: json writes it
        {1: "int key"},
    ],
)
def test_json_bodies_mean_what_json_dumps_meant(value: dict[Any, Any]) -> None:
    assert json.loads(dumps(value)) == json.loads(json.dumps(value))
    response = json_response(value)
    assert response.media_type == "application/json"
    assert json.loads(response.body) == json.loads(json.dumps(value))


def test_json_bodies_write_nan_as_null() -> None:
    assert json.loads(dumps({"cost": float("nan")})) == {"cost": None}


# -- through the gateway -------------------------------------------------------------------------


def test_a_stream_through_the_gateway_is_whole_and_in_order(gateway: Any) -> None:
    model = gateway.model("sim-fast?tokens=25")  # all at once: the events go out joined
    with gateway.http() as http, http.stream(
        "POST", "/v1/chat/completions",
        json=chat(model, stream=True, stream_options={"include_usage": True}),
    ) as response:  # fmt: skip
        assert response.status_code == 200
        lines = list(response.iter_lines())
    events = sse_data(lines)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len(text.split()) == 25
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 25
    assert len({c["id"] for c in chunks}) == 1


def test_a_plain_answer_through_the_gateway_has_every_field(gateway: Any) -> None:
    answer = gateway.post("/v1/chat/completions", chat(gateway.model("sim-fast?tokens=7")))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert len(body["choices"][0]["message"]["content"].split()) == 7
    assert body["usage"]["completion_tokens"] == 7
    assert body["mmo"]["provider"] == "openai" and body["mmo"]["attempts"]
