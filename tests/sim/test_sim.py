"""The simulated provider, over real HTTP with the real SDKs and httpx. Nothing mocked."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from mmo_magic.sim import Behaviour, Disconnect, OptionError, SimServer

PROMPT = "Name three  colours of\tthe rainbow please"
SYSTEM = "You are terse."
USER: Any = [{"role": "user", "content": PROMPT}]  # Any: the SDKs want their TypedDicts


def words(*texts: str) -> int:
    return sum(len(t.split()) for t in texts)


def openai_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": USER, **extra}


def anthropic_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "messages": USER, **extra}


def sse_data(lines: list[str]) -> list[str]:
    return [line[len("data: ") :] for line in lines if line.startswith("data: ")]


def read_lines(
    sim: SimServer, path: str, body: dict[str, Any], timeout: float = 0.5
) -> tuple[list[str], Exception | None]:
    """Stream a response's lines until it ends or fails; return them and the failure."""
    lines: list[str] = []
    try:
        with (
            httpx.Client(timeout=timeout) as client,
            client.stream("POST", sim.base_url + path, json=body) as response,
        ):
            assert response.status_code == 200
            assert response.headers["x-simulated"] == "true"
            for line in response.iter_lines():
                lines.append(line)
    except httpx.HTTPError as exc:
        return lines, exc
    return lines, None


def wait_for_disconnect(sim: SimServer, seconds: float = 2.0) -> Disconnect:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sim.disconnects:
            return sim.disconnects[-1]
        time.sleep(0.01)
    raise AssertionError("no disconnect recorded")


# -- import hygiene and lifecycle ---------------------------------------------


def test_import_loads_no_sdk() -> None:
    code = (
        "import sys, mmo_magic.sim; "
        "print([m for m in ('openai', 'anthropic', 'httpx', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_urls_health_and_labels(sim: SimServer) -> None:
    assert sim.openai_base_url == sim.base_url + "/v1"
    assert sim.anthropic_base_url == sim.base_url
    assert sim.base_url.startswith("http://127.0.0.1:")
    assert "SIMULATED" in repr(sim)
    health = httpx.get(sim.base_url + "/health")
    assert health.json() == {"status": "ok", "simulated": True}
    assert health.headers["x-simulated"] == "true"
    missing = httpx.get(sim.base_url + "/nope")
    assert missing.status_code == 404
    assert missing.headers["x-simulated"] == "true"


def test_models_list_readable_by_both_sdks(
    oa: openai.OpenAI, an: anthropic.Anthropic, sim: SimServer
) -> None:
    sim.script("my-model", Behaviour())
    ids = {m.id for m in oa.models.list()}
    assert {"sim-fast", "sim-slow", "sim-echo", "sim-flaky", "sim-overloaded", "my-model"} <= ids
    assert "sim-fast" in {m.id for m in an.models.list()}


def test_keep_alive_serves_several_requests_on_one_socket(sim: SimServer) -> None:
    body = json.dumps(openai_body("sim-fast")).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection(("127.0.0.1", sim.port), timeout=2) as sock:
        stream = sock.makefile("rb")
        for _ in range(3):
            sock.sendall(request)
            assert stream.readline().startswith(b"HTTP/1.1 200")
            headers = {}
            while (line := stream.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            assert headers["connection"] == "keep-alive"
            reply = json.loads(stream.read(int(headers["content-length"])))
            assert reply["object"] == "chat.completion"
    assert sim.request_count("sim-fast") == 3


def test_stop_closes_a_held_connection_promptly() -> None:
    server = SimServer().start()
    failures: list[Exception] = []

    def call() -> None:
        try:
            httpx.post(server.openai_base_url + "/chat/completions",
                       json=openai_body("m?fault=hang&hold_s=30"), timeout=10)  # fmt: skip
        except httpx.HTTPError as exc:
            failures.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    while server.request_count() == 0:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    thread.join(timeout=5)
    assert time.monotonic() - started < 2
    assert failures and not thread.is_alive()


def test_main_prints_one_labelled_line_and_serves() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmo_magic.sim", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "SIMULATED" in line and "/v1" in line
        base_url = line.split(" on ", 1)[1].split()[0]
        assert httpx.get(base_url + "/health").json()["simulated"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=5)


# -- OpenAI wire format ------------------------------------------------------


async def test_openai_stream_deltas_concatenate_to_content(sim: SimServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=sim.openai_base_url, api_key="x", max_retries=0
    ) as client:
        whole = await client.chat.completions.create(model="sim-fast", messages=USER)
        stream = await client.chat.completions.create(
            model="sim-fast",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        deltas, finishes, usages = [], [], []
        async for chunk in stream:
            assert chunk.object == "chat.completion.chunk" and chunk.id.startswith("chatcmpl-sim-")
            if chunk.usage is not None:
                assert chunk.choices == []
                usages.append(chunk.usage)
            for choice in chunk.choices:
                deltas.append(choice.delta.content or "")
                finishes.append(choice.finish_reason)
    content = whole.choices[0].message.content
    assert content is not None
    assert "".join(deltas) == content
    assert len(content.split()) == 12
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert len(usages) == 1
    assert usages[0].prompt_tokens == words(PROMPT)
    assert usages[0].completion_tokens == 12
    assert usages[0].total_tokens == words(PROMPT) + 12


def test_openai_stream_has_usage_only_when_asked(oa: openai.OpenAI) -> None:
    chunks = list(oa.chat.completions.create(model="sim-fast", messages=USER, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"


def test_openai_json_counts_words_of_system_and_text_parts(oa: openai.OpenAI) -> None:
    messages: Any = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": [{"type": "text", "text": "first part"}]},
        {"role": "assistant", "content": "ok then"},
        {"role": "user", "content": PROMPT},
    ]
    reply = oa.chat.completions.create(model="sim-fast?tokens=7", messages=messages)
    assert reply.object == "chat.completion"
    assert reply.model == "sim-fast?tokens=7"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == words(SYSTEM, "first part", "ok then", PROMPT)
    assert (
        reply.usage.completion_tokens == 7 == len((reply.choices[0].message.content or "").split())
    )


def test_words_are_deterministic_and_independent_of_options(oa: openai.OpenAI) -> None:
    def say(model: str) -> str | None:
        return oa.chat.completions.create(model=model, messages=USER).choices[0].message.content

    assert say("sim-fast") == say("sim-fast") == say("sim-fast?latency_ms=1")
    assert say("sim-fast") != say("other-model")


def test_echo_and_literal_replies(oa: openai.OpenAI) -> None:
    echo = oa.chat.completions.create(model="sim-echo", messages=USER)
    assert echo.choices[0].message.content == " ".join(PROMPT.split())
    assert echo.usage is not None and echo.usage.completion_tokens == words(PROMPT)
    literal = oa.chat.completions.create(model="m?reply=hello+big+world", messages=USER)
    assert literal.choices[0].message.content == "hello big world"


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_openai_max_tokens_truncates_with_length(oa: openai.OpenAI, limit: str) -> None:
    extra: Any = {limit: 4}
    reply = oa.chat.completions.create(model="sim-fast", messages=USER, **extra)
    assert reply.choices[0].finish_reason == "length"
    assert len((reply.choices[0].message.content or "").split()) == 4
    stream = oa.chat.completions.create(model="sim-fast", messages=USER, stream=True, **extra)
    finishes = [c.choices[0].finish_reason for c in stream if c.choices]
    assert finishes[-1] == "length"


def test_usage_off_removes_all_usage(oa: openai.OpenAI) -> None:
    reply = oa.chat.completions.create(model="m?usage=false", messages=USER)
    assert reply.usage is None
    stream = oa.chat.completions.create(
        model="m?usage=0",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert all(c.usage is None for c in stream)


# -- Anthropic wire format ---------------------------------------------------


async def test_anthropic_raw_stream_events(sim: SimServer) -> None:
    system: Any = [{"type": "text", "text": SYSTEM}]
    async with anthropic.AsyncAnthropic(
        base_url=sim.anthropic_base_url, api_key="x", max_retries=0
    ) as client:
        stream = await client.messages.create(
            model="sim-fast?blocks=2",
            max_tokens=100,
            system=system,
            messages=USER,
            stream=True,
        )
        events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 2
    start = events[0]
    assert start.type == "message_start"
    assert start.message.id.startswith("msg_sim_")
    assert start.message.usage.input_tokens == words(SYSTEM, PROMPT)
    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert len(text.split()) == 12 and text == " ".join(text.split())
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 12


def test_anthropic_json_blocks_join_to_the_streamed_text(an: anthropic.Anthropic) -> None:
    message = an.messages.create(
        model="sim-fast?blocks=2&tokens=9",
        max_tokens=100,
        system=SYSTEM,
        messages=USER,
    )
    assert message.type == "message" and message.stop_reason == "end_turn"
    texts = [b.text for b in message.content if b.type == "text"]
    assert len(texts) == 2
    joined = "".join(texts)
    assert len(joined.split()) == 9 == message.usage.output_tokens
    assert message.usage.input_tokens == words(SYSTEM, PROMPT)
    with an.messages.stream(
        model="sim-fast?blocks=3&tokens=9",
        max_tokens=100,
        messages=USER,
    ) as stream:
        assert stream.get_final_text() == joined


def test_anthropic_echo_and_max_tokens(an: anthropic.Anthropic) -> None:
    echo = an.messages.create(model="sim-echo", max_tokens=100, messages=USER)
    assert echo.content[0].type == "text"
    assert echo.content[0].text == " ".join(PROMPT.split())
    assert echo.usage.output_tokens == words(PROMPT)
    short = an.messages.create(model="sim-echo", max_tokens=2, messages=USER)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 2


# -- scripted failures --------------------------------------------------------

OPENAI_FAILS = [
    ("429", openai.RateLimitError, 429, "rate_limit_exceeded"),
    ("500", openai.InternalServerError, 500, None),
    ("503", openai.InternalServerError, 503, None),
    ("529", openai.InternalServerError, 529, "overloaded"),
    ("401", openai.AuthenticationError, 401, "invalid_api_key"),
    ("400", openai.BadRequestError, 400, None),
    ("context_length", openai.BadRequestError, 400, "context_length_exceeded"),
    ("content_policy", openai.BadRequestError, 400, "content_policy_violation"),
]


@pytest.mark.parametrize(("fail", "error", "status", "code"), OPENAI_FAILS)
@pytest.mark.parametrize("stream", [False, True])
def test_openai_failures(
    oa: openai.OpenAI,
    fail: str,
    error: type[Exception],
    status: int,
    code: str | None,
    stream: bool,
) -> None:
    with pytest.raises(error) as info:
        oa.chat.completions.create(model=f"m?fail={fail}", messages=USER, stream=stream)
    exc = info.value
    assert isinstance(exc, openai.APIStatusError)
    assert exc.status_code == status
    assert exc.code == code
    assert "(simulated)" in exc.message
    assert exc.response.headers["x-simulated"] == "true"


ANTHROPIC_FAILS = [
    ("429", anthropic.RateLimitError, 429, "rate_limit_error"),
    ("500", anthropic.InternalServerError, 500, "api_error"),
    ("503", anthropic.InternalServerError, 503, "api_error"),
    ("529", anthropic.OverloadedError, 529, "overloaded_error"),
    ("401", anthropic.AuthenticationError, 401, "authentication_error"),
    ("400", anthropic.BadRequestError, 400, "invalid_request_error"),
    ("context_length", anthropic.BadRequestError, 400, "invalid_request_error"),
    ("content_policy", anthropic.BadRequestError, 400, "invalid_request_error"),
]


@pytest.mark.parametrize(("fail", "error", "status", "kind"), ANTHROPIC_FAILS)
def test_anthropic_failures(
    an: anthropic.Anthropic, fail: str, error: type[Exception], status: int, kind: str
) -> None:
    with pytest.raises(error) as info:
        an.messages.create(model=f"m?fail={fail}", max_tokens=10, messages=USER)
    exc = info.value
    assert isinstance(exc, anthropic.APIStatusError)
    assert exc.status_code == status
    assert isinstance(exc.body, dict)
    error_body = exc.body.get("error", exc.body)  # SDK versions differ in what they keep
    assert error_body["type"] == kind and "(simulated)" in error_body["message"]
    if fail == "context_length":
        assert error_body["message"].startswith("prompt is too long:")


def test_retry_after_headers(oa: openai.OpenAI, sim: SimServer) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        oa.chat.completions.create(
            model="m?fail=429&retry_after=1.5&retry_after_ms=250",
            messages=USER,
        )
    assert info.value.response.headers["retry-after"] == "1.5"
    assert info.value.response.headers["retry-after-ms"] == "250"
    sim.script("scripted", Behaviour(fail=429, retry_after=2))
    with pytest.raises(openai.RateLimitError) as info:
        oa.chat.completions.create(model="scripted", messages=USER)
    assert info.value.response.headers["retry-after"] == "2"


def test_echo_key_quotes_the_key_in_the_error(oa: openai.OpenAI, an: anthropic.Anthropic) -> None:
    with pytest.raises(openai.AuthenticationError, match="sk-secret-1"):
        oa.chat.completions.create(model="m?fail=401&echo_key=1", messages=USER)
    with pytest.raises(anthropic.AuthenticationError, match="sk-ant-secret-2"):
        an.messages.create(model="m?fail=401&echo_key=true", max_tokens=5, messages=USER)
    with pytest.raises(openai.AuthenticationError) as info:
        oa.chat.completions.create(model="m?fail=401", messages=USER)
    assert "sk-secret-1" not in str(info.value)


def test_fail_times_then_success(oa: openai.OpenAI, an: anthropic.Anthropic) -> None:
    with pytest.raises(openai.InternalServerError):
        oa.chat.completions.create(model="sim-flaky", messages=USER)
    assert oa.chat.completions.create(model="sim-flaky", messages=USER).choices
    for _ in range(2):
        with pytest.raises(anthropic.RateLimitError):
            an.messages.create(model="a?fail=429&fail_times=2", max_tokens=5, messages=USER)
    an.messages.create(model="a?fail=429&fail_times=2", max_tokens=5, messages=USER)


def test_fail_times_applies_to_faults(sim: SimServer) -> None:
    url = sim.openai_base_url + "/chat/completions"
    body = openai_body("m?fault=reset&fail_times=1")
    with pytest.raises(httpx.TransportError):
        httpx.post(url, json=body, timeout=2)
    assert httpx.post(url, json=body, timeout=2).status_code == 200


def test_unknown_or_bad_option_is_a_400_naming_it(
    oa: openai.OpenAI, an: anthropic.Anthropic
) -> None:
    with pytest.raises(openai.BadRequestError, match="bogus"):
        oa.chat.completions.create(model="sim-fast?bogus=1", messages=USER)
    with pytest.raises(anthropic.BadRequestError, match="tokens"):
        an.messages.create(model="sim-fast?tokens=many", max_tokens=5, messages=USER)
    with pytest.raises(openai.BadRequestError, match="fault"):
        oa.chat.completions.create(model="m?fault=explode", messages=USER)
    with pytest.raises(OptionError):
        Behaviour(fail=418)


def test_script_precedence(oa: openai.OpenAI, sim: SimServer) -> None:
    sim.script("sim-fast", Behaviour(tokens=3))

    def count(model: str) -> int:
        reply = oa.chat.completions.create(model=model, messages=USER)
        return len((reply.choices[0].message.content or "").split())

    assert count("sim-fast") == 3  # script beats the preset
    assert count("sim-fast?tokens=5") == 5  # options beat the script
    with pytest.raises(ValueError):
        sim.script("x?tps=1", Behaviour())


# -- counting, requests, reset -----------------------------------------------


def test_counts_last_request_and_reset(
    oa: openai.OpenAI, an: anthropic.Anthropic, sim: SimServer
) -> None:
    for _ in range(2):
        oa.chat.completions.create(model="sim-fast", messages=USER)
    an.messages.create(model="sim-fast?tokens=2", max_tokens=5, messages=USER)
    assert sim.requests == {"sim-fast": 2, "sim-fast?tokens=2": 1}
    assert sim.request_count() == 3 and sim.request_count("sim-fast") == 2
    assert sim.request_count("never") == 0

    last = sim.last_request()
    assert last is not None and last["path"] == "/v1/messages"
    assert last["body"]["model"] == "sim-fast?tokens=2"
    sent = json.dumps(last)
    assert "sk-ant-secret-2" not in sent
    assert "***" in {last["headers"].get("x-api-key"), last["headers"].get("authorization")}
    first = sim.last_request("sim-fast")
    assert first is not None and first["path"] == "/v1/chat/completions"
    assert first["headers"]["authorization"] == "***" and "sk-secret-1" not in json.dumps(first)

    sim.reset()
    assert sim.request_count() == 0 and sim.last_request() is None and sim.disconnects == []


async def test_counters_are_safe_under_concurrency(sim: SimServer) -> None:
    import asyncio

    async with openai.AsyncOpenAI(
        base_url=sim.openai_base_url, api_key="x", max_retries=0
    ) as client:
        await asyncio.gather(
            *(
                client.chat.completions.create(model="sim-fast?latency_ms=20", messages=USER)
                for _ in range(20)
            )
        )
    assert sim.request_count("sim-fast?latency_ms=20") == 20


def test_timing_latency_ttft_and_tps(sim: SimServer) -> None:
    body = openai_body("m?latency_ms=100&ttft_ms=100&tps=50&tokens=6", stream=True)
    started = time.monotonic()
    arrivals = []
    with (
        httpx.Client(timeout=5) as client,
        client.stream("POST", sim.openai_base_url + "/chat/completions", json=body) as response,
    ):
        headers_at = time.monotonic() - started
        for line in response.iter_lines():
            if '"content":"' in line and '"content":""' not in line.replace('"content":"",', ""):
                arrivals.append(time.monotonic() - started)
    assert 0.09 < headers_at < 0.5
    assert arrivals[0] >= 0.19
    assert arrivals[-1] - arrivals[0] >= 5 / 50 - 0.02  # 5 gaps at 50 tokens/s


# -- faults on the raw wire ----------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_reset_before_headers(sim: SimServer, path: str) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.post(sim.base_url + path, json=anthropic_body("m?fault=reset"), timeout=2)
    assert sim.request_count("m?fault=reset") == 1
    assert sim.disconnects == []  # the server hung up, not the client


def test_hang_then_client_gives_up_is_recorded(sim: SimServer) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            sim.openai_base_url + "/chat/completions",
            json=openai_body("m?fault=hang&hold_s=5"),
            timeout=0.3,
        )
    gone = wait_for_disconnect(sim)
    assert (gone.model, gone.phase, gone.tokens_sent) == ("m?fault=hang&hold_s=5", "waiting", 0)
    assert gone.path == "/v1/chat/completions" and abs(gone.at - time.time()) < 2


def test_hang_ends_after_hold_s(sim: SimServer) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(
            sim.openai_base_url + "/chat/completions",
            json=openai_body("m?fault=hang&hold_s=0.2"),
            timeout=3,
        )
    assert time.monotonic() - started < 1.5
    assert sim.disconnects == []


def test_stall_sends_some_tokens_then_nothing(sim: SimServer) -> None:
    body = openai_body("m?fault=stall&stall_after=2&hold_s=5", stream=True)
    lines, failure = read_lines(sim, "/v1/chat/completions", body, timeout=0.3)
    assert isinstance(failure, httpx.ReadTimeout)
    contents = [json.loads(d)["choices"][0]["delta"].get("content") for d in sse_data(lines)]
    assert [c for c in contents if c] == contents[1:] and len(contents) == 3  # role + 2 words
    gone = wait_for_disconnect(sim)
    assert (gone.phase, gone.tokens_sent) == ("streaming", 2)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_cut_closes_mid_stream_without_finish(sim: SimServer, path: str) -> None:
    body = anthropic_body("m?fault=cut&cut_after=3", stream=True)
    lines, failure = read_lines(sim, path, body)
    assert isinstance(failure, httpx.RemoteProtocolError)
    data = sse_data(lines)
    assert not any('"finish_reason":"stop"' in d or "message_delta" in d for d in data)
    assert "[DONE]" not in data
    assert sum("text_delta" in d or '"content":"' in d for d in data) >= 3


def test_malformed_chunk_then_normal(sim: SimServer) -> None:
    body = openai_body("m?fault=malformed&malformed_at=2&tokens=5", stream=True)
    lines, failure = read_lines(sim, "/v1/chat/completions", body)
    assert failure is None
    data = sse_data(lines)
    bad = []
    deltas = []
    for item in data[:-1]:
        try:
            chunk = json.loads(item)
        except ValueError:
            bad.append(item)
            continue
        deltas.append(chunk["choices"][0]["delta"].get("content") or "")
    assert bad == ['{"choices": [']
    assert len("".join(deltas).split()) == 5 and data[-1] == "[DONE]"
    assert data.index(bad[0]) == 3  # after the role chunk and two words


def test_no_finish(sim: SimServer) -> None:
    lines, failure = read_lines(
        sim, "/v1/chat/completions", openai_body("m?fault=no_finish", stream=True)
    )
    data = sse_data(lines)
    assert failure is None and data[-1] == "[DONE]"
    assert all(c["finish_reason"] is None for d in data[:-1] for c in json.loads(d)["choices"])
    lines, failure = read_lines(
        sim, "/v1/messages", anthropic_body("m?fault=no_finish", stream=True)
    )
    events = [json.loads(d) for d in sse_data(lines)]
    assert failure is None and events[-1]["type"] == "message_stop"
    assert events[-2]["type"] == "message_delta" and events[-2]["delta"]["stop_reason"] is None


def test_no_done_openai_holds_after_usage(sim: SimServer) -> None:
    body = openai_body(
        "m?fault=no_done&hold_s=5", stream=True, stream_options={"include_usage": True}
    )
    lines, failure = read_lines(sim, "/v1/chat/completions", body, timeout=0.3)
    assert isinstance(failure, httpx.ReadTimeout)
    data = sse_data(lines)
    assert "[DONE]" not in data
    assert json.loads(data[-2])["choices"][0]["finish_reason"] == "stop"
    assert json.loads(data[-1])["usage"]["completion_tokens"] == 12
    assert wait_for_disconnect(sim).phase == "streaming"
    # The same record over HTTP, for a provider running in another process.
    (seen,) = httpx.get(sim.base_url + "/sim/disconnects").json()
    assert seen["phase"] == "streaming" and seen["model"] == "m?fault=no_done&hold_s=5"
    assert seen["at"] == sim.disconnects[0].at


def test_no_done_anthropic_stops_before_message_stop(sim: SimServer) -> None:
    body = anthropic_body("m?fault=no_done&hold_s=5", stream=True)
    lines, failure = read_lines(sim, "/v1/messages", body, timeout=0.3)
    assert isinstance(failure, httpx.ReadTimeout)
    events = [json.loads(d) for d in sse_data(lines)]
    assert events[-1]["type"] == "message_delta"
    assert events[-1]["delta"]["stop_reason"] == "end_turn"
    assert events[-1]["usage"]["output_tokens"] == 12
    assert "event: message_stop" not in lines


def test_json_faults(sim: SimServer) -> None:
    url = sim.openai_base_url + "/chat/completions"
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(url, json=openai_body("m?fault=cut"), timeout=2)
    malformed = httpx.post(url, json=openai_body("m?fault=malformed"), timeout=2)
    with pytest.raises(ValueError):
        malformed.json()
    unfinished = httpx.post(url, json=openai_body("m?fault=no_finish"), timeout=2).json()
    assert unfinished["choices"][0]["finish_reason"] is None


# -- disconnects -------------------------------------------------------------


def test_client_closing_a_stream_is_recorded(sim: SimServer) -> None:
    body = anthropic_body("m?tps=20&tokens=50", stream=True)
    with (
        httpx.Client(timeout=5) as client,
        client.stream("POST", sim.base_url + "/v1/messages", json=body) as response,
    ):
        deltas = 0
        for line in response.iter_lines():
            deltas += line.startswith("event: content_block_delta")
            if deltas == 2:
                break
    gone = wait_for_disconnect(sim)
    assert gone.model == "m?tps=20&tokens=50" and gone.phase == "streaming"
    assert 2 <= gone.tokens_sent < 50


async def test_sdk_stream_close_is_recorded(sim: SimServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=sim.openai_base_url, api_key="x", max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model="m?ttft_ms=50&tps=20&tokens=50",
            messages=USER,
            stream=True,
        )
        async for _chunk in stream:
            break
        await stream.close()
        started = time.monotonic()
        import asyncio

        while not sim.disconnects and time.monotonic() - started < 2:
            await asyncio.sleep(0.01)
    assert sim.disconnects and sim.disconnects[0].phase == "streaming"


def test_disconnect_while_waiting_for_latency(sim: SimServer) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            sim.openai_base_url + "/chat/completions",
            json=openai_body("m?latency_ms=3000"),
            timeout=0.2,
        )
    assert wait_for_disconnect(sim).phase == "waiting"
