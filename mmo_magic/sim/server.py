"""A hand-written HTTP/1.1 server that plays an LLM provider (SIMULATED).

Hand-written on ``asyncio.start_server`` rather than built on a framework so
that faults can be scripted byte-exactly: a reset before any header, a request
never answered, a stream that stalls, or a chunked body cut mid-way.

The server runs its own event loop in a daemon thread, so it serves sync and
async clients alike, whatever loop (if any) the caller's thread runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import json
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from .behaviour import PRESETS, Behaviour, OptionError, reply_words, resolve, thinking_words
from .wire import (
    ANTHROPIC,
    OPENAI,
    BadRequest,
    Call,
    Frame,
    Reply,
    Wire,
    describe_media,
    embedding_body,
    embedding_request,
    instance_of,
)

__all__ = ["Disconnect", "SimServer"]

_REDACTED = ("authorization", "proxy-authorization", "x-api-key", "api-key")
_ROUTES: dict[str, Wire] = {"/v1/chat/completions": OPENAI, "/v1/messages": ANTHROPIC}


@dataclass(frozen=True)
class Disconnect:
    """The client went away before the server finished sending a response.

    phase is "waiting" if no response header had been sent yet, else "streaming".
    """

    model: str
    path: str
    at: float  # time.time()
    tokens_sent: int
    phase: Literal["waiting", "streaming"]


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool
    query: str = ""


class _ClientGone(Exception):
    """Unwinds a response whose client has disconnected (already recorded)."""


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """The next request on a connection, or None once the client has closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise
        return None
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        # No SDK sends chunked request bodies; refusing keeps the parser small.
        raise ValueError("chunked request bodies are not supported")
    length = int(headers.get("content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (version != "HTTP/1.0" or connection == "keep-alive")
    path, _, query = target.partition("?")
    return _Request(method, path, headers, body, keep_alive, query)


def _status_line(status: int) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = {529: "Overloaded"}.get(status, "Unknown")
    return f"HTTP/1.1 {status} {reason}\r\n".encode()


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass
class _Exchange:
    """One request/response, watching for the client to go away meanwhile."""

    server: SimServer
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    request: _Request
    request_id: str
    model: str = ""
    headers_sent: bool = False
    tokens_sent: int = 0
    keep_alive: bool = True
    _watch: asyncio.Task[bytes] | None = field(default=None, repr=False)
    _watching: bool = True

    def _gone(self) -> NoReturn:
        phase: Literal["waiting", "streaming"] = "streaming" if self.headers_sent else "waiting"
        disconnect = Disconnect(self.model, self.request.path, time.time(), self.tokens_sent, phase)
        self.server._record_disconnect(disconnect)
        raise _ClientGone

    def _check(self) -> None:
        watch = self._watch
        if watch is not None and watch.done():
            self._watch = None
            if watch.cancelled():
                pass
            elif watch.exception() is not None or not watch.result():
                self._gone()
            else:
                # The client sent bytes mid-response (pipelining). Unsupported:
                # stop watching and close the connection after this response.
                self.keep_alive = self._watching = False
        if self.writer.transport.is_closing():
            self._gone()

    async def pause(self, seconds: float) -> None:
        """Sleep, but give up at once (recording a Disconnect) if the client leaves."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            self._check()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            if self._watch is None and self._watching:
                # A read that returns b"" is how asyncio reports the peer's FIN.
                self._watch = asyncio.ensure_future(self.reader.read(1))
            if self._watch is None:
                await asyncio.sleep(remaining)
            else:
                await asyncio.wait({self._watch}, timeout=remaining)

    async def stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.wait({self._watch})  # unlike `await`, never raises its CancelledError
            self._check()  # it may have seen EOF before the cancel landed

    async def send(self, data: bytes, *, last: bool = False) -> None:
        if last:
            # Stop reading before the client can have the whole response, so a
            # next request on this connection is left for _read_request.
            await self.stop_watching()
        self._check()
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError:
            self._gone()

    def head(
        self, status: int, content_type: str, *, length: int | None, extra: dict[str, str]
    ) -> bytes:
        self.keep_alive = self.keep_alive and self.request.keep_alive
        headers = {
            "content-type": content_type,
            "x-simulated": "true",
            "x-request-id": self.request_id,
            "request-id": self.request_id,
            "connection": "keep-alive" if self.keep_alive else "close",
            **extra,
        }
        if length is None:
            headers["transfer-encoding"] = "chunked"
            headers["cache-control"] = "no-cache"
        else:
            headers["content-length"] = str(length)
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return _status_line(status) + lines.encode() + b"\r\n"

    async def send_json(
        self, status: int, body: bytes, extra: dict[str, str] | None = None
    ) -> None:
        head = self.head(status, "application/json", length=len(body), extra=extra or {})
        await self.send(head + body, last=True)

    async def hold(self, seconds: float) -> None:
        """Keep the connection open, silent, until the client leaves or time runs out."""
        await self.pause(seconds)
        self.keep_alive = False


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _with_malformed(frames: list[Frame], after: int, bad: bytes) -> list[Frame]:
    """Insert a bad event after `after` tokens (before the tail if there are fewer)."""
    after = min(after, sum(f.token for f in frames))
    seen = 0
    for i, frame in enumerate(frames):
        if seen == after:
            return [*frames[:i], Frame(bad), *frames[i:]]
        seen += frame.token
    return [*frames, Frame(bad)]


class SimServer:
    """A simulated OpenAI + Anthropic provider on a real local port (SIMULATED).

    >>> with SimServer() as sim:  # doctest: +SKIP
    ...     client = openai.OpenAI(base_url=sim.openai_base_url, api_key="x")
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._last: dict[str | None, dict[str, Any]] = {}
        self._disconnects: list[Disconnect] = []
        self._scripts: dict[str, Behaviour] = {}
        self._request_ids = 0
        self._accepted = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> SimServer:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._run, args=(loop,), name="mmo-sim", daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._open(), loop).result(timeout=10)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._loop = self._thread = self._server = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self._server else "stopped"
        return f"<SimServer SIMULATED provider {where}>"

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        # Watch tasks of aborted exchanges may still be pending; finish them too.
        rest = asyncio.all_tasks() - {asyncio.current_task()}
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    # -- addresses ---------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url  # the anthropic SDK appends /v1/messages itself

    # -- what the tests read (any thread) ----------------------------------

    @property
    def requests(self) -> Counter[str]:
        """Model name (as sent, options included) -> requests seen. A copy."""
        with self._lock:
            return Counter(self._requests)

    def request_count(self, model: str | None = None) -> int:
        with self._lock:
            return self._requests[model] if model is not None else self._requests.total()

    def last_request(self, model: str | None = None) -> dict[str, Any] | None:
        """{"path", "query", "body", "headers"} of the latest request (for `model`), keys
        redacted from the headers."""
        with self._lock:
            found = self._last.get(model)
            return dict(found) if found else None

    @property
    def connections(self) -> int:
        """TCP connections accepted (a client that reuses its connections opens few)."""
        with self._lock:
            return self._accepted

    @property
    def disconnects(self) -> list[Disconnect]:
        with self._lock:
            return list(self._disconnects)

    def script(self, model: str, behaviour: Behaviour) -> None:
        """Make the base name `model` behave like `behaviour` (query options still apply)."""
        if "?" in model:
            raise ValueError(f"script a base name, without options: {model!r}")
        with self._lock:
            self._scripts[model] = behaviour

    def reset(self, *, scripts: bool = False) -> None:
        """Forget counts, requests, connections and disconnects (so fail_times restarts).

        scripts=True also forgets what script() registered.
        """
        with self._lock:
            self._requests.clear()
            self._last.clear()
            self._disconnects.clear()
            self._accepted = 0
            if scripts:
                self._scripts.clear()

    def _record_disconnect(self, disconnect: Disconnect) -> None:
        with self._lock:
            self._disconnects.append(disconnect)

    # -- serving -----------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        with self._lock:
            self._accepted += 1
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return  # garbage or a half-sent request: drop the connection
                if request is None:
                    return
                with self._lock:
                    self._request_ids += 1
                    request_id = f"req_sim_{self._request_ids}"
                exchange = _Exchange(self, reader, writer, request, request_id)
                try:
                    await self._respond(exchange)
                except _ClientGone:
                    return
                if not exchange.keep_alive:
                    return
        except ConnectionError:
            pass
        except asyncio.CancelledError:
            # Only stop() cancels these. Ending normally matters: on 3.11 asyncio's
            # own done-callback calls task.exception(), which raises if cancelled.
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _respond(self, ex: _Exchange) -> None:
        request = ex.request
        wire = _ROUTES.get(request.path)
        if wire is not None and request.method == "POST":
            await self._generate(ex, wire)
        elif request.path == "/v1/embeddings" and request.method == "POST":
            await self._embed(ex)
        elif request.path == "/health" and request.method == "GET":
            await ex.send_json(200, b'{"status":"ok","simulated":true}')
        elif request.path == "/v1/models" and request.method == "GET":
            after = urllib.parse.parse_qs(request.query).get("after_id", [None])[0]
            await ex.send_json(200, self._models(after))
        elif request.path == "/sim/disconnects" and request.method == "GET":
            # For a provider in another process (python -m mmo_magic.sim), e.g. benchmarks.
            found = [dataclasses.asdict(d) for d in self.disconnects]
            await ex.send_json(200, json.dumps(found).encode())
        else:
            status = 405 if wire is not None else 404
            message = f"{request.method} {request.path}: no such endpoint (simulated)"
            body = {"error": {"type": "not_found_error", "message": message}}
            await ex.send_json(status, json.dumps(body).encode())

    def _models(self, after_id: str | None = None) -> bytes:
        """One page with every model; the page after the last (``after_id``) is empty."""
        with self._lock:
            names = sorted({*PRESETS, *self._scripts})
        if after_id is not None:
            names = [name for name in names if name > after_id]
        # Fields of both providers' list formats, so either SDK can read it.
        data = [
            {
                "id": name,
                "object": "model",
                "type": "model",
                "display_name": f"{name} (simulated)",
                "created": 0,
                "created_at": "1970-01-01T00:00:00Z",
                "owned_by": "mmo_magic-sim",
            }
            for name in names
        ]
        page: dict[str, object] = {"object": "list", "data": data, "has_more": False}
        page.update(first_id=names[0] if names else None, last_id=names[-1] if names else None)
        return json.dumps(page).encode()

    def _record(self, request: _Request, body: object, model: str | None) -> int:
        """Remember the request; return how many this model name has now had."""
        headers = {k: ("***" if k in _REDACTED else v) for k, v in request.headers.items()}
        seen = {"path": request.path, "query": request.query, "body": body, "headers": headers}
        with self._lock:
            self._last[None] = seen
            if model is None:
                return 0
            self._last[model] = seen
            self._requests[model] += 1
            return self._requests[model]

    async def _generate(self, ex: _Exchange, wire: Wire) -> None:
        try:
            body: object = json.loads(ex.request.body)
        except ValueError:
            body = None
        model = body.get("model") if isinstance(body, dict) else None
        ex.model = model if isinstance(model, str) else ""
        seen = self._record(ex.request, body, ex.model or None)
        try:
            call = wire.parse(body)
            with self._lock:
                scripts = dict(self._scripts)
            base, behaviour = resolve(call.model, scripts)
        except (BadRequest, OptionError) as exc:
            await ex.send_json(*wire.error("bad_request", None, f"{exc} (simulated)"))
            return

        if (call.schema is not None or call.tools_offered) and not behaviour.structured:
            what = "tools" if call.tools_offered else "response_format of type json_schema"
            detail = f"{what} is not supported by this server (simulated)"
            await ex.send_json(*wire.error("bad_request", call, detail))
            return
        misbehave = behaviour.fail_times is None or seen <= behaviour.fail_times
        fault = behaviour.fault if misbehave else None
        if fault == "reset":
            self._reset(ex.writer)
            ex.keep_alive = False
            return
        if fault == "hang":
            await ex.hold(behaviour.hold_s)
            return

        await ex.pause(behaviour.latency_ms / 1000)
        if behaviour.fail is not None and misbehave:
            key = self._api_key(ex.request.headers) if behaviour.echo_key else None
            status, payload = wire.error(str(behaviour.fail), call, key=key)
            extra = {}
            if behaviour.retry_after is not None:
                extra["retry-after"] = _seconds(behaviour.retry_after)
            if behaviour.retry_after_ms is not None:
                extra["retry-after-ms"] = _seconds(behaviour.retry_after_ms)
            await ex.send_json(status, payload, extra)
            return

        words = reply_words(behaviour, base, call.last_user, seen)
        if behaviour.reply == "parts":  # what it can tell about the images: count and sizes
            words = describe_media(call.media).split()
        if call.schema is not None and behaviour.reply in ("words", "echo"):
            # Structured output or a tool call's arguments: a JSON object satisfying the
            # schema, in word-sized pieces. Scripted replies (literal text, a judge's verdict
            # or its garbling) stay as scripted: they are how tests make a model break the
            # format (and answer in text although tools were offered).
            try:
                value = instance_of(call.schema, base)
                # A tool's arguments are an object, whatever its schema says.
                text = json.dumps(value if isinstance(value, dict) or not call.tool else {})
            except (TypeError, ValueError, RecursionError) as exc:
                detail = (
                    f"the JSON schema is not one this simulation understands: {exc} (simulated)"
                )
                await ex.send_json(*wire.error("bad_request", call, detail))
                return
            words = re.findall(r"\s*\S+", text)
        elif call.tool_result is not None and behaviour.reply in ("words", "echo"):
            # After tool calls, the answer quotes what the tools returned.
            words = re.findall(r"\s*\S+", f"Tool result: {call.tool_result}")
        if behaviour.reply_key:
            words = [*words, self._api_key(ex.request.headers)]
        if behaviour.usage_output is not None:
            call = dataclasses.replace(call, reported_output=_json_or_text(behaviour.usage_output))
        limit = call.max_tokens
        truncated = limit is not None and 0 <= limit < len(words)
        thinking = thinking_words(behaviour, base, call.last_user) if call.thinks else ()
        reply = Reply(words[:limit] if truncated else words, truncated, thinking,
                      behaviour.think_ms / 1000 if call.thinks else 0)  # fmt: skip
        if call.stream:
            await self._stream(ex, wire, call, behaviour, reply, fault)
        else:
            await self._complete(ex, wire, call, behaviour, reply, fault)

    async def _embed(self, ex: _Exchange) -> None:
        """OpenAI's ``/v1/embeddings``: a hashed bag-of-words vector per input (texts sharing
        words are close), unit length, ``dimensions`` long (64 unless asked)."""
        try:
            body: object = json.loads(ex.request.body)
        except ValueError:
            body = None
        model = body.get("model") if isinstance(body, dict) else None
        ex.model = model if isinstance(model, str) else ""
        seen = self._record(ex.request, body, ex.model or None)
        try:
            texts, dimensions, encoding = embedding_request(body)
            with self._lock:
                scripts = dict(self._scripts)
            _base, behaviour = resolve(ex.model, scripts)
        except (BadRequest, OptionError) as exc:
            await ex.send_json(*OPENAI.error("bad_request", None, f"{exc} (simulated)"))
            return
        await ex.pause(behaviour.latency_ms / 1000)
        misbehave = behaviour.fail_times is None or seen <= behaviour.fail_times
        if behaviour.fail is not None and misbehave:
            status, payload = OPENAI.error(str(behaviour.fail), None)
            after = behaviour.retry_after
            extra = {"retry-after": _seconds(after)} if after is not None else {}
            await ex.send_json(status, payload, extra)
            return
        await ex.send_json(200, embedding_body(ex.model, texts, dimensions, encoding))

    @staticmethod
    def _api_key(headers: dict[str, str]) -> str:
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        return headers.get("x-api-key") or bearer

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Linger 0 makes close() send a RST instead of a FIN: a real reset.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _complete(
        self, ex: _Exchange, wire: Wire, call: Call, b: Behaviour, reply: Reply, fault: str | None
    ) -> None:
        # A JSON answer arrives when the same stream would have finished.
        generating = (len(reply.words) - 1) / b.tps if b.tps > 0 and reply.words else 0
        await ex.pause(b.ttft_ms / 1000 + generating + reply.think_s)
        body = wire.body(call, reply, finish=fault != "no_finish", usage=b.usage, blocks=b.blocks)
        if fault == "malformed":
            body = body[: len(body) // 2]
        if fault not in ("stall", "cut"):
            await ex.send_json(200, body)
            return
        # Promise the whole body, deliver half of it.
        head = ex.head(200, "application/json", length=len(body), extra={})
        await ex.send(head + body[: len(body) // 2])
        ex.headers_sent = True
        if fault == "stall":
            await ex.hold(b.hold_s)
        ex.keep_alive = False

    async def _stream(
        self, ex: _Exchange, wire: Wire, call: Call, b: Behaviour, reply: Reply, fault: str | None
    ) -> None:
        frames = wire.frames(
            call,
            reply,
            finish=fault != "no_finish",
            done=fault != "no_done",
            usage=b.usage,
            blocks=b.blocks,
        )
        if fault == "malformed":
            frames = _with_malformed(frames, b.malformed_at, wire.malformed)
        stop_after = {"cut": b.cut_after, "stall": b.stall_after}.get(fault or "")

        head = ex.head(200, "text/event-stream; charset=utf-8", length=None, extra={})
        # Bytes due now are written together: one syscall rather than one per
        # event, which keeps the server's CPU out of client benchmarks that
        # share its process. Each event is still its own HTTP chunk.
        pending = [head]

        async def flush() -> None:
            await ex.send(b"".join(pending))
            pending.clear()
            ex.headers_sent = True

        loop = asyncio.get_running_loop()
        start = loop.time() + b.ttft_ms / 1000
        for frame in frames:
            if stop_after is not None and (ex.tokens_sent >= stop_after or frame.tail):
                await flush()
                if fault == "stall":
                    await ex.hold(b.hold_s)
                ex.keep_alive = False  # "cut": close without the terminating chunk
                return
            if frame.delay_s > 0:  # a model thinking in silence
                await flush()
                await ex.pause(frame.delay_s)
            if frame.token:
                # Pace from one start time so delays do not drift over a long reply.
                interval = ex.tokens_sent / b.tps if b.tps > 0 else 0
                due = start + interval - loop.time()
                if due > 0:
                    await flush()
                    await ex.pause(due)
            pending.append(_chunk(frame.data))
            ex.tokens_sent += frame.token
        if fault == "no_done":
            await flush()
            await ex.hold(b.hold_s)
            return
        pending.append(b"0\r\n\r\n")
        await ex.send(b"".join(pending), last=True)


def _json_or_text(raw: str) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return raw
