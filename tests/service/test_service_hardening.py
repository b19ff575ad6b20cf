"""The service's edges: the Host rule (DNS rebinding), HEAD /health, text that is not text,
upstream addresses and large echoes kept out of responses, the schema behind the key, and
the shutdown drain in process. Real HTTP (uvicorn on a loopback port) unless noted."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import chat, eventually, free_port, serving, sim_models, sse_data

import mmo_magic as mmo
from mmo_magic.core.config import ServerSettings, load_settings
from mmo_magic.service import create_app

KEY = "hardening-client-key-0123456789"
SURROGATE = "\ud800"


@pytest.fixture
def orc(sim, keys) -> Iterator[mmo.Orchestrator]:  # type: ignore[no-untyped-def]
    with mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:", cache=False) as o:
        yield o


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# -- 1. the Host rule ------------------------------------------------------------------------


def test_without_keys_only_loopback_hosts_are_answered(orc):
    with serving(create_app(orc, keys=[])) as url, httpx.Client(base_url=url) as http:
        port = _port(url)
        for host in ("localhost", f"localhost:{port}", "127.0.0.1", f"127.0.0.1:{port}",
                     "[::1]", f"[::1]:{port}", "LOCALHOST", "localhost."):  # fmt: skip
            answer = http.post("/v1/complete", json={"prompt": "hi"}, headers={"host": host})
            assert answer.status_code == 200, (host, answer.text)
        # A page on evil.example rebinding its name to 127.0.0.1 sends its own name as Host.
        for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example",
                     "127.0.0.1.nip.io", "x" * 5000):  # fmt: skip
            for path in ("/v1/models", "/health"):
                refused = http.get(path, headers={"host": host})
                assert refused.status_code == 403, (host, path)
                error = refused.json()["error"]
                assert (error["type"], error["code"]) == ("permission_error", "host_not_allowed")
                assert "--allowed-host" in error["message"] and "\n" not in error["message"]
                assert len(refused.text) < 600
        assert "--allowed-host evil.example" in http.get("/", headers={"host": "evil.example"}).text


def test_a_request_with_no_host_header_is_refused_without_keys(orc):
    with serving(create_app(orc, keys=[])) as url:
        raw = socket.create_connection(("127.0.0.1", _port(url)), timeout=10)
        with raw:
            raw.sendall(b"GET /health HTTP/1.0\r\n\r\n")  # HTTP/1.0 may leave Host out
            reply = b""
            while chunk := raw.recv(65536):
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 403") and b"host_not_allowed" in reply


def test_allowed_hosts_add_hosts_and_with_keys_restrict_them(orc):
    bearer = {"authorization": f"Bearer {KEY}"}
    settings = ServerSettings(allowed_hosts=("mmo.internal", "gw.internal:8443"))
    with serving(create_app(orc, keys=[], settings=settings)) as url, httpx.Client() as http:
        get = lambda host, **h: http.get(f"{url}/v1/models", headers={"host": host, **h})  # noqa: E731
        assert get("mmo.internal").status_code == 200
        assert get("MMO.internal:1234").status_code == 200  # any port when none is given
        assert get("gw.internal:8443").status_code == 200
        assert get("gw.internal:8444").status_code == 403
        assert get("localhost").status_code == 200  # loopback names stay allowed
        assert get("other.internal").status_code == 403
    with serving(create_app(orc, keys=[KEY])) as url, httpx.Client() as http:
        # With keys and no allowed hosts, Host is not checked: the key is the guard.
        assert http.get(f"{url}/v1/models", headers={"host": "any.example", **bearer}).is_success
    with serving(create_app(orc, keys=[KEY], settings=settings)) as url, httpx.Client() as http:
        assert get("mmo.internal", **bearer).status_code == 200
        refused = get("any.example", **bearer)
        assert refused.status_code == 403 and "allowed hosts" in refused.json()["error"]["message"]
    star = ServerSettings(allowed_hosts=("*",))
    with serving(create_app(orc, keys=[], settings=star)) as url, httpx.Client() as http:
        assert get("anything.example").status_code == 200


def test_allowed_hosts_in_mmo_toml_and_on_the_command_line(sim_server, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[server]\nallowed_hosts = ["mmo.internal", "10.0.0.5:8000"]\n')
    assert load_settings([good]).server.allowed_hosts == ("mmo.internal", "10.0.0.5:8000")
    for text, message in [
        ('[server]\nallowed_hosts = "mmo.internal"\n', "must be a list of strings"),
        ('[server]\nallowed_hosts = ["http://mmo.internal/"]\n', "is not a host name"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(mmo.ConfigError, match=message):
            load_settings([bad])
    env = {k: v for k, v in os.environ.items() if k != "MMO_SERVER_KEYS"}
    command = [sys.executable, "-m", "mmo_magic.service"]
    refused = subprocess.run(
        [*command, "--allowed-host", "http://x/", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "--allowed-host 'http://x/' is not a host name" in (
        refused.stderr
    )
    config = tmp_path / "mmo.toml"
    config.write_text(textwrap.dedent(f"""
        default_model = "lo"
        [server]
        allowed_hosts = ["from-config.internal"]
        [models.lo]
        provider = "local"
        model_id = "sim-fast"
        base_url = "{sim_server.openai_base_url}"
    """))  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port), "--config", str(config),
         "--allowed-host", "from-flag.internal", "--runlog", str(tmp_path / "runs.sqlite3")],
        env={**env, "MMO_CACHE": "off"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def status(host: str) -> int | None:
        assert process.poll() is None
        try:
            return httpx.get(f"{url}/health", headers={"host": host}).status_code
        except httpx.TransportError:
            return None

    try:
        eventually(lambda: status("localhost"), "mmo-serve answering", within_s=60)
        assert status("from-flag.internal") == 200
        assert status("from-config.internal") == 200
        assert status("evil.example") == 403
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.communicate()


# -- 2. HEAD /health -------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [[], [KEY]], ids=["no keys", "keys"])
def test_head_health_is_a_200_with_no_body(orc, keys):
    with serving(create_app(orc, keys=keys)) as url:
        head = httpx.head(f"{url}/health")
        get = httpx.get(f"{url}/health")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"] == "application/json"


# -- 3. text that is not text ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat("oa", [{"role": "user", "content": SURROGATE}]), "messages.0.content"),
        (chat("oa", [{"role": "user", "content": f"ok {SURROGATE} ok"}], stream=True),
         "messages.0.content"),
        (chat("oa", [{"role": "system", "content": "fine"},
                     {"role": "user", "content": [{"type": "text", "text": SURROGATE}]}]),
         "messages.1.content.0.text"),
        (chat("oa", [{"role": "user", "content": "hi", "name": SURROGATE}]), "messages.0.name"),
        (chat("oa", user=SURROGATE), "user"),
        ({"prompt": SURROGATE}, "prompt"),
    ],
)  # fmt: skip
def test_an_unpaired_surrogate_is_a_400_not_a_500(orc, sim, body, param):
    path = "/v1/complete" if "prompt" in body else "/v1/chat/completions"
    raw = json.dumps(body).encode()  # ASCII JSON: the surrogate travels as "\ud800"
    with serving(create_app(orc, keys=[])) as url:
        answer = httpx.post(url + path, content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert "unpaired surrogate" in error["message"] and "\n" not in error["message"]
    assert sim.request_count() == 0
    # A surrogate pair is one character, and fine.
    fine = json.dumps(chat("oa", [{"role": "user", "content": "\U0001f600 hi"}])).encode()
    assert "\\ud83d\\ude00" in fine.decode()
    with serving(create_app(orc, keys=[])) as url:
        ok = httpx.post(f"{url}/v1/chat/completions", content=fine,
                        headers={"content-type": "application/json"})  # fmt: skip
    assert ok.status_code == 200, ok.text


# -- 4. upstream addresses -------------------------------------------------------------------


def test_errors_never_show_where_the_upstreams_are(orc, sim, caplog):
    dead_port = free_port()  # nothing listens there: a connection error
    dead_url = f"http://127.0.0.1:{dead_port}/v1"
    orc.add_model(mmo.ModelConfig("local", "sim-fast", name="dead", base_url=dead_url,
                                  max_retries=0))  # fmt: skip
    orc.add_model(mmo.ModelConfig("anthropic", "sim-fast", name="dead-an",
                                  base_url=f"http://127.0.0.1:{dead_port}",
                                  api_key_env="MMO_TEST_ANTHROPIC_KEY", max_retries=0))  # fmt: skip
    orc.add_model(mmo.ModelConfig("local", "sim-echo", name="saved", base_url=dead_url,
                                  fallbacks=("lo",), max_retries=0))  # fmt: skip
    texts = []
    with (
        caplog.at_level(logging.WARNING, logger="mmo_magic.service"),
        serving(create_app(orc, keys=[])) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        for path, body, status in [
            ("/v1/chat/completions", chat("dead"), 502),
            ("/v1/chat/completions", chat("dead-an"), 502),
            ("/v1/chat/completions", chat("dead", stream=True), 502),
            ("/v1/complete", {"prompt": "hi", "model": "dead"}, 502),
            ("/v1/complete", {"prompt": "hi", "routing": "parallel", "models": ["dead", "lo"]},
             200),
            ("/v1/complete", {"prompt": "hi", "model": "saved"}, 200),  # failed over
            ("/v1/chat/completions", chat("saved"), 200),
            ("/v1/chat/completions", chat("saved", stream=True), 200),
        ]:  # fmt: skip
            answer = http.post(path, json=body)
            assert answer.status_code == status, (path, body, answer.text)
            texts.append(answer.text)
    assert "connect" in texts[0] and "[upstream]" in texts[0]  # still says what went wrong
    assert json.loads(texts[5])["attempts"][0]["error"].count("[upstream]") == 1
    assert [t for t in texts if str(dead_port) in t or "127.0.0.1" in t] == []
    assert sse_data(texts[-1].splitlines())[-1] == "[DONE]"
    assert dead_url in caplog.text  # the server's own log keeps the address


# -- 5. large echoes -------------------------------------------------------------------------


def test_an_unknown_name_is_echoed_back_cut_short(orc):
    big = "x" * 100_000
    with (
        serving(create_app(orc, keys=[])) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        answers = [
            http.post("/v1/chat/completions", json=chat(big)),
            http.post("/v1/chat/completions", json=chat(big, stream=True)),
            http.post("/v1/chat/completions", json=chat(f"auto:{big}")),
            http.post("/v1/complete", json={"prompt": "hi", "model": big}),
            http.post("/v1/complete", json={"prompt": "hi", "task_type": big}),
            http.post("/v1/complete", json={"prompt": "hi", "routing": "race", "models": [big]}),
            http.get(f"/v1/models/{big[:8000]}"),
            http.get(f"/no/such/{big[:8000]}"),
        ]
    for answer in answers:
        assert answer.status_code in (400, 404), answer.text[:300]
        message = answer.json()["error"]["message"]
        assert len(answer.content) < 1000 and "x" * 65 not in message
        assert "x" * 40 in message and "x…" in message, message
    assert answers[0].json()["error"]["message"].startswith(f"Unknown model '{'x' * 64}…'")


# -- 6. the schema ---------------------------------------------------------------------------


def test_the_openapi_schema_needs_a_key_when_keys_are_set(orc):
    with serving(create_app(orc, keys=[KEY])) as url:
        anonymous = httpx.get(f"{url}/openapi.json")
        keyed = httpx.get(f"{url}/openapi.json", headers={"authorization": f"Bearer {KEY}"})
        docs = httpx.get(f"{url}/docs", headers={"authorization": f"Bearer {KEY}"})
        health = httpx.get(f"{url}/health")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_api_key"
    schema = keyed.json()
    assert "/v1/chat/completions" in schema["paths"]
    assert schema["paths"]["/v1/models"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert docs.status_code == 404 and health.status_code == 200
    with serving(create_app(orc, keys=[])) as url:  # loopback only: the schema is open
        assert httpx.get(f"{url}/openapi.json").status_code == 200


# -- 7. the drain, in process ----------------------------------------------------------------


async def test_the_drain_refuses_new_requests_and_cuts_the_rest(orc, sim):
    slow = "sim-fast?tps=5&tokens=200"
    orc.add_model(orc.catalogue.resolve("lo").replace(name="slow", model_id=slow))
    app = create_app(orc, keys=[])
    transport = httpx.ASGITransport(app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:

        async def post(body: dict[str, Any]) -> httpx.Response:
            return await client.post("/v1/chat/completions", json=body, timeout=30)

        answer = asyncio.create_task(post(chat("slow")))
        stream = asyncio.create_task(post(chat("slow", stream=True)))
        while sim.request_count(slow) < 2:  # both are upstream (bounded by the test timeout)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # and the stream has text out
        app.state.drain.begin(0.2)
        refused = await client.get("/health")
        answered, streamed = await asyncio.wait_for(asyncio.gather(answer, stream), 10)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
    assert refused.json()["error"]["code"] == "server_shutting_down"
    assert answered.status_code == 503 and answered.headers["retry-after"] == "2"
    events = sse_data(streamed.text.splitlines())
    assert streamed.status_code == 200 and events[-1] == "[DONE]"
    *chunks, error = [json.loads(e) for e in events[:-1]]
    assert error["error"]["code"] == "server_shutting_down" and "cut" in error["error"]["message"]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    records = eventually(lambda: [r for r in orc.runs.records() if r.model == "slow"], "records")
    assert {r.status for r in records} == {"cancelled"}
