"""The OpenAI client sends with the SDK's HTTP client and headers, past ``create`` (issue 29).

What ``create`` did must still hold: the SDK's auth and identifying headers, its
timeouts mapped to the same errors, and an answer read to its end.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import urllib.parse
from collections.abc import AsyncIterator

import pytest
from helpers import OPENAI_KEY_ENV, with_model_id

import mmo_magic as mmo
from mmo_magic.core.completion import CompletionRequest, Message, StreamEnd
from mmo_magic.providers import make_client


def test_the_request_carries_the_sdks_headers_and_the_wire_body(orc, sim):
    assert orc.complete("hello", model="oa").ok
    seen = sim.last_request()
    headers = seen["headers"]
    assert headers["authorization"] == "***"  # sent (the sim redacts what it records)
    assert "openai/python" in headers["user-agent"].lower()  # the SDK's own user agent
    assert headers["x-stainless-retry-count"] == "0"
    assert headers["content-type"] == "application/json"
    body = seen["body"]
    assert body["model"] == "sim-fast" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "hello"}]


def test_anthropic_requests_carry_the_sdks_headers_and_the_wire_body(orc, sim):
    assert orc.complete("hello", model="an").ok
    seen = sim.last_request()
    assert seen["path"] == "/v1/messages"
    headers = seen["headers"]
    assert "***" in (headers.get("x-api-key"), headers.get("authorization"))  # the key, sent
    assert headers["anthropic-version"]  # the API version the SDK speaks
    assert "anthropic/python" in headers["user-agent"].lower()
    body = seen["body"]
    assert body["model"] == "sim-fast" and body["stream"] is True and body["max_tokens"] > 0
    assert body["messages"] == [{"role": "user", "content": "hello"}]


async def test_a_timeout_is_the_sdks_timeout_error(sim, keys):
    """No answer within the SDK client's timeout: APITimeoutError, mapped as before."""
    config = mmo.ModelConfig(
        "openai", "sim-fast?latency_ms=5000", base_url=sim.openai_base_url,
        api_key_env=OPENAI_KEY_ENV, timeout_s=0.3,
    )  # fmt: skip
    client = make_client(config)
    request = CompletionRequest(messages=(Message("user", "hello"),))
    with pytest.raises(mmo.ProviderError) as caught:
        async for _ in client.stream(request):
            pass
    await client.aclose()
    assert caught.value.code == "timeout"
    assert type(caught.value.__cause__).__name__ == "APITimeoutError"


def test_a_status_error_is_the_sdks_status_error(orc):
    model = with_model_id(orc, "oa", "sim-fast?fail=429&retry_after=7")  # no retries
    with pytest.raises(mmo.ProviderError) as caught:
        orc.complete("hello", model=model)
    error = caught.value
    assert error.status == 429 and error.retry_after_s == 7
    assert type(error.__cause__).__name__ == "RateLimitError"


# -- an upstream that closes the connection right after a complete answer --------------------


def _chunk(obj: object) -> bytes:
    data = f"data: {json.dumps(obj)}\n\n".encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _answer_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The whole answer (text, finish reason, usage), then a closed socket: no [DONE], no
    final chunk. Nothing is missing from the answer; only the body's end is."""
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    writer.write(_chunk({"choices": [{"index": 0, "delta": {"content": "hi"}}]}))
    writer.write(_chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    writer.write(_chunk({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}))
    await writer.drain()
    writer.close()


@pytest.fixture
async def hang_up_server() -> AsyncIterator[str]:
    server = await asyncio.start_server(_answer_then_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/v1"


async def test_a_complete_answer_survives_the_connection_closing_after_it(hang_up_server, keys):
    """The tail after the usage chunk broke with httpx2's RemoteProtocolError, which the
    tail reader did not know (it caught httpx's only): a complete answer failed."""
    config = mmo.ModelConfig("openai", "m", base_url=hang_up_server, api_key_env=OPENAI_KEY_ENV)
    client = make_client(config)
    request = CompletionRequest(messages=(Message("user", "hello"),))
    items = [item async for item in client.stream(request)]
    await client.aclose()
    assert "hi" in items
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "stop"
    assert end.output_tokens == 1 and not end.estimated


# -- events that arrive together are handed on together ----------------------------------------


def _burst_server(events: list[object]) -> object:
    """A server writing the whole answer in one write: the client reads it as one piece."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        body = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
        await writer.drain()
        writer.close()

    return answer


def _delta(text: str) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


async def _items_from(events: list[object]) -> list[object]:
    server = await asyncio.start_server(_burst_server(events), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    items: list[object] = []
    async with server:
        client = make_client(mmo.ModelConfig("openai", "m", base_url=url,
                                             api_key_env=OPENAI_KEY_ENV))  # fmt: skip
        try:
            async for item in client.stream(CompletionRequest(messages=(Message("user", "hi"),))):
                items.append(item)
        finally:
            await client.aclose()
    return items


async def test_text_that_arrives_in_one_read_is_one_piece(keys):
    """A burst (a fast or cached answer, a buffering proxy): its text goes on as one
    piece, in order with what is not text; nothing is lost or reordered."""
    events = [
        _delta("one "), _delta("two "),
        {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]},
        _delta("three "), _delta("four"),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
    ]  # fmt: skip
    items = await _items_from(events)
    shown = [i if isinstance(i, str) else type(i).__name__ for i in items[1:-1]]
    assert shown == ["one two ", "Thinking", "three four"]
    assert isinstance(items[-1], StreamEnd) and items[-1].output_tokens == 4


async def test_text_before_an_error_in_the_same_read_is_kept(keys, orc):
    """The error raised for the burst's error event comes after the burst's text, so the
    failed attempt's record still shows what came."""
    events = [_delta("partial "), _delta("answer"), {"error": {"message": "overloaded"}}]
    with pytest.raises(mmo.StreamError, match="overloaded"):
        await _items_from(events)
    server = await asyncio.start_server(_burst_server(events), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    async with server:
        orc.add_model(mmo.ModelConfig("openai", "m", name="bursty", base_url=url,
                                      api_key_env=OPENAI_KEY_ENV))  # fmt: skip
        with pytest.raises(mmo.MMOError, match="overloaded"):
            await orc.acomplete("hi", model="bursty", fallbacks=[])
    last = orc.runs.to_dataframe().iloc[-1]
    assert last["model"] == "bursty" and last["status"] != "ok"
    assert last["response"] == "partial answer"


# -- event-stream lines: CRLF, LF or CR, and nowhere else -------------------------------------

# Raw UTF-8 (as servers writing JSON with ensure_ascii=False send it): U+2028, NEL and
# \x1c are line breaks to ``str.splitlines``, never inside an event-stream line.
ODD_TEXT = "one\u2028two\u0085three\x1cfour é 🙂"


async def _raw_utf8_events(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An answer whose text holds raw U+2028 and friends, in CRLF-ended lines, each HTTP
    chunk cut between a CR and its LF (and inside a multi-byte character)."""
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    events = [
        {"choices": [{"index": 0, "delta": {"content": ODD_TEXT}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
    ]
    stream = "".join(f"data: {json.dumps(e, ensure_ascii=False)}\r\n\r\n" for e in events)
    body = (stream + "data: [DONE]\r\n\r\n").encode()
    cuts = [i + 1 for i in range(len(body) - 1) if body[i : i + 1] == b"\r"]
    cuts.append(body.index("🙂".encode()) + 2)
    start = 0
    for end in [*sorted(cuts), len(body)]:
        piece = body[start:end]
        writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.001)  # each piece its own read
        start = end
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    writer.close()


async def test_an_answer_with_unicode_line_separators_in_raw_utf8_arrives_whole(keys):
    """httpx's ``aiter_lines`` splits where ``str.splitlines`` does, so a JSON data line
    holding a raw U+2028 came apart and the call failed as a malformed chunk."""
    server = await asyncio.start_server(_raw_utf8_events, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    async with server:
        config = mmo.ModelConfig("openai", "m", base_url=url, api_key_env=OPENAI_KEY_ENV)
        client = make_client(config)
        request = CompletionRequest(messages=(Message("user", "hello"),))
        items = [item async for item in client.stream(request)]
        await client.aclose()
    assert "".join(i for i in items if isinstance(i, str)) == ODD_TEXT
    end = items[-1]
    assert isinstance(end, StreamEnd) and end.finish_reason == "stop" and end.output_tokens == 4


# -- an SDK release without the internals DirectPost reads: its own create, same answers -------


@pytest.mark.parametrize("base", ["oa", "an"])
async def test_an_sdk_without_the_internals_sends_through_create(sim, keys, base, monkeypatch):
    from helpers import sim_models

    from mmo_magic.providers import direct

    # A release that renamed one private method: the client must notice and use create().
    monkeypatch.setattr(direct, "_SDK_PARTS", (*direct._SDK_PARTS, "_renamed_in_a_new_release"))
    config = next(m for m in sim_models(sim) if m.name == base)
    client = make_client(config)
    assert client._post.direct is False
    request = CompletionRequest(messages=(Message("user", "hello"),), max_tokens=5)
    items = [item async for item in client.stream(request)]
    assert isinstance(items[-1], StreamEnd) and items[-1].output_tokens == 5
    assert "".join(i for i in items if isinstance(i, str))
    seen = sim.last_request()
    assert seen["body"]["stream"] is True and seen["body"]["messages"][0]["content"] == "hello"
    failing = make_client(config.replace(model_id="sim-fast?fail=429&retry_after=7"))
    with pytest.raises(mmo.ProviderError) as caught:
        async for _ in failing.stream(request):
            pass
    assert caught.value.status == 429 and caught.value.retry_after_s == 7
    await client.aclose()
    await failing.aclose()


# -- the SDKs' aiohttp transport --------------------------------------------------------------


def _transport_of(client: object) -> str:
    return type(client._sdk._client._transport).__module__  # type: ignore[attr-defined]


@pytest.mark.parametrize("base", ["oa", "an"])
async def test_both_sdks_send_over_their_aiohttp_transport(sim, keys, base):
    from helpers import sim_models

    config = next(m for m in sim_models(sim) if m.name == base)
    client = make_client(config)
    assert "aiohttp" in _transport_of(client)
    request = CompletionRequest(messages=(Message("user", "hello"),), max_tokens=5)
    items = [item async for item in client.stream(request)]
    assert isinstance(items[-1], StreamEnd) and items[-1].output_tokens == 5
    # Straight to the transport's aiohttp session, past the httpx client's per-call steps.
    assert client._post._straight is not None
    await client.aclose()
    assert client._sdk._client._transport.client.closed  # type: ignore[attr-defined]


async def test_without_aiohttp_the_sdks_httpx_client_sends(sim, keys, monkeypatch):
    import openai

    def missing(**_: object) -> None:  # what the SDK's stand-in does without aiohttp
        raise RuntimeError("To use the aiohttp client you must have installed the package")

    monkeypatch.setattr(openai, "DefaultAioHttpClient", missing)
    config = mmo.ModelConfig("openai", "sim-fast", base_url=sim.openai_base_url,
                             api_key_env=OPENAI_KEY_ENV)  # fmt: skip
    client = make_client(config)
    assert "aiohttp" not in _transport_of(client)
    request = CompletionRequest(messages=(Message("user", "hello"),), max_tokens=5)
    items = [item async for item in client.stream(request)]
    assert isinstance(items[-1], StreamEnd) and items[-1].output_tokens == 5
    assert client._post._straight is None  # httpx's transport: through the client
    await client.aclose()


def test_clients_dropped_without_closing_are_closed_quietly(sim, tmp_path):
    """aiohttp logs an error for each session collected open; httpx said nothing. An
    orchestrator left to the garbage collector (a notebook cell run again), a client
    replaced by a new config and clients left on an adopted loop that ended: none of
    them may print a word."""
    script = textwrap.dedent(f"""
        import asyncio, gc, os
        import mmo_magic as mmo
        os.environ["K"] = "sim-key"
        def model(**kw):
            return mmo.ModelConfig("openai", "sim-fast", name="oa",
                                   base_url={sim.openai_base_url!r}, api_key_env="K", **kw)
        orc = mmo.Orchestrator([model()], runlog=":memory:", cache=False)
        async def adopted():
            mmo.use_running_loop()
            return (await orc.acomplete("on my loop")).ok
        assert asyncio.run(adopted())
        assert orc.complete("on a background loop again").ok
        orc.add_model(model(timeout_s=30))  # a new config: a new client, the old one dropped
        assert orc.complete("with the new client").ok
        orc2 = mmo.Orchestrator([model()], runlog=":memory:", cache=False)
        assert orc2.complete("and dropped").ok
        del orc2
        gc.collect()
        import time; time.sleep(0.2)  # the dropped sessions close on their loop
        print("done")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"
    assert out.stderr == ""


_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.mark.parametrize("base", ["oa", "an"])
async def test_a_proxy_named_in_the_environment_carries_the_calls(sim, keys, base, monkeypatch):
    """Behind a company proxy: ``HTTP_PROXY`` reaches the aiohttp transport as it reached httpx."""
    from helpers import forward_proxy, sim_models

    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    config = next(m for m in sim_models(sim) if m.name == base)
    request = CompletionRequest(messages=(Message("user", "hello"),), max_tokens=5)
    async with forward_proxy() as (proxy, seen):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        client = make_client(config)
        items = [item async for item in client.stream(request)]
        await client.aclose()
    assert isinstance(items[-1], StreamEnd) and items[-1].output_tokens == 5
    path = "/v1/messages" if base == "an" else "/v1/chat/completions"
    origin = urllib.parse.urlsplit(config.base_url).netloc
    assert seen == [f"http://{origin}{path}"]  # the proxy relayed the one request


async def test_no_proxy_sends_the_calls_straight_past_the_proxy(sim, keys, monkeypatch):
    """``NO_PROXY`` naming the provider's host (a local model behind a company proxy):
    the straight route to aiohttp takes the transport httpx picks for the URL, none."""
    from helpers import forward_proxy, sim_models

    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    config = next(m for m in sim_models(sim) if m.name == "oa")
    request = CompletionRequest(messages=(Message("user", "hello"),), max_tokens=5)
    async with forward_proxy() as (proxy, seen):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        client = make_client(config)
        items = [item async for item in client.stream(request)]
        await client.aclose()
    assert isinstance(items[-1], StreamEnd) and items[-1].output_tokens == 5
    assert seen == []  # the proxy relayed nothing
    assert client._post._straight is not None and not client._post._straight.proxy


async def _gzipped_rate_limit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A 429 whose JSON error body is gzip-encoded, as a CDN in front of a provider sends it."""
    import gzip

    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    error = {"error": {"message": "Slow down, please.", "type": "rate_limit_error"}}
    body = gzip.compress(json.dumps(error).encode())
    writer.write(b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
                 b"content-encoding: gzip\r\nretry-after: 3\r\ncontent-length: %d\r\n\r\n%s"
                 % (len(body), body))  # fmt: skip
    await writer.drain()
    writer.close()


async def test_a_compressed_error_body_is_read_into_the_sdks_status_error(keys):
    """aiohttp decodes the body; the SDK's error is made from it without decoding it twice."""
    server = await asyncio.start_server(_gzipped_rate_limit, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    async with server:
        client = make_client(mmo.ModelConfig("openai", "m", base_url=url,
                                             api_key_env=OPENAI_KEY_ENV))  # fmt: skip
        with pytest.raises(mmo.ProviderError) as caught:
            async for _ in client.stream(CompletionRequest(messages=(Message("user", "hi"),))):
                pass
        await client.aclose()
    assert caught.value.status == 429 and caught.value.retry_after_s == 3
    assert "Slow down, please." in str(caught.value)
    assert type(caught.value.__cause__).__name__ == "RateLimitError"


@pytest.mark.parametrize("base", ["oa", "an"])
async def test_a_reset_connection_is_named_as_one_not_as_a_timeout(sim, keys, base):
    """aiohttp's transport calls every connection error httpx's ConnectTimeout: the call's
    error must say what happened (a connection error, named by aiohttp's exception)."""
    from helpers import sim_models

    config = next(m for m in sim_models(sim) if m.name == base)
    client = make_client(config.replace(model_id="sim-fast?fault=reset"))
    request = CompletionRequest(messages=(Message("user", "hello"),), max_tokens=5)
    with pytest.raises(mmo.ProviderError) as caught:
        async for _ in client.stream(request):
            pass
    await client.aclose()
    assert caught.value.code == "connection_error"
    assert "could not connect" in str(caught.value) and "Timeout" not in str(caught.value)
