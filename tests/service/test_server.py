"""The service over real HTTP: uvicorn on a free port (a thread, or a subprocess for the CLI),
the simulated provider behind it, httpx and the real openai SDK in front."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from helpers import (
    ANTHROPIC_KEY_ENV,
    KEY,
    OPENAI_KEY_ENV,
    OTHER_KEY,
    PRICE_IN,
    USER,
    Service,
    chat,
    eventually,
    free_port,
    mmo_serve,
    serving,
    sim_models,
    sse_data,
)

import mmo_magic as mmo
from mmo_magic.core.config import ServerSettings, load_settings
from mmo_magic.service import create_app
from mmo_magic.service.errors import classify

# Not shaped like a provider key, so only the environment-variable redaction can hide it.
CANARY = "canary-DO-NOT-LEAK-0123456789abcdef"
CAP = 1000
CODING = "Fix this Python function, it raises a TypeError: def add(a, b): return a + str(b)"


@pytest.fixture(scope="module")
def service(sim_server: Any) -> Iterator[Service]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv(OPENAI_KEY_ENV, CANARY)
        env.setenv(ANTHROPIC_KEY_ENV, "ant-test-key-0000000000000")
        orc = mmo.Orchestrator(
            sim_models(sim_server), default_model="oa", runlog=":memory:", cache=False,
            task_models={"coding": ["an"]},
            retry_policy=mmo.RetryPolicy(base_delay_s=0.01, max_delay_s=0.05),
            breaker=mmo.CircuitBreaker(threshold=1000),
        )  # fmt: skip
        settings = ServerSettings(max_body_bytes=64_000, max_tokens_cap=CAP)
        with orc, serving(create_app(orc, keys=[KEY, OTHER_KEY], settings=settings)) as url:
            yield Service(url, orc)


async def streamed(client: openai.AsyncOpenAI, **request: Any) -> list[Any]:
    """Every chunk of a streamed chat completion."""
    return [chunk async for chunk in await client.chat.completions.create(stream=True, **request)]


def upstream_cancelled(service: Service, sim: Any, name: str) -> None:
    """Model ``name``'s provider stream was closed, and its attempt recorded as cancelled."""
    model_id = name.split(":", 1)[1]
    eventually(lambda: [d for d in sim.disconnects if d.model == model_id], "a disconnect")
    records = eventually(lambda: [r for r in service.orc.runs.records() if r.model == name], "run")
    assert (records[-1].status, records[-1].step) == ("cancelled", "service")


# -- endpoints -----------------------------------------------------------------------------------


async def test_health_is_public_and_models_lists_the_catalogue_and_the_routers(service):
    service.orc.add_model(
        mmo.ModelConfig("openai", "gpt-x", name="keyless", api_key_env="MMO_TEST_UNSET_KEY",
                        aliases=("kl",))
    )  # fmt: skip
    assert httpx.get(f"{service.url}/health").json()["status"] == "ok"
    with service.http() as http:
        listing = http.get("/v1/models")
        one = http.get("/v1/models/kl").json()
        router = http.get("/v1/models/auto:cost").json()
        missing = http.get("/v1/models/keyles")
        no_router = http.get("/v1/models/auto:sideways")
    assert listing.json()["object"] == "list"
    entries = {e["id"]: e for e in listing.json()["data"]}
    assert {"oa", "an", "lo", "keyless", "auto", "auto:task", "auto:cost"} <= entries.keys()
    assert all(e["object"] == "model" and e["owned_by"] for e in entries.values())
    oa = entries["oa"]
    assert (oa["provider"], oa["model_id"], oa["available"]) == ("openai", "sim-fast", True)
    assert oa["cost_per_1k_input"] == PRICE_IN and oa["kind"] == "model"
    keyless = entries["keyless"]
    assert not keyless["available"]
    assert keyless["unavailable_reason"] == "MMO_TEST_UNSET_KEY not set"
    assert CANARY not in listing.text  # names of key variables, never their values
    assert one["id"] == "keyless" and one["aliases"] == ["kl"]
    assert router["kind"] == "router" and router["owned_by"] == "mmo_magic"
    assert missing.status_code == 404
    assert "Did you mean 'keyless'" in missing.json()["error"]["message"]
    assert no_router.status_code == 404
    ids = [m.id async for m in service.sdk().models.list()]
    assert "oa" in ids and "auto:task" in ids


@pytest.mark.parametrize(
    ("fields", "model", "reason"),
    [
        ({"model": "lo"}, "lo", None),
        ({"routing": "specific", "model": "an"}, "an", None),
        ({"routing": "auto", "route": "cost"}, None, "cost: "),
        ({"model": "auto:complexity"}, None, "complexity: "),
        ({"task_type": "coding"}, "an", "rule 'task coding'"),
        ({"routing": "task_type"}, "an", "task: task coding"),  # detected from the prompt
    ],
)
def test_complete_with_one_model(service, fields, model, reason):
    response = service.post("/v1/complete", {"prompt": CODING, "max_tokens": 50, **fields})
    assert response.status_code == 200, response.text
    out = response.json()
    seed = ("content", "model", "provider", "input_tokens", "output_tokens", "latency_ms", "cost")
    assert all(out[name] is not None for name in seed)
    assert out["status"] == "ok" and out["content"] and out["run_id"] and out["ttft_ms"] >= 0
    assert out["model"] in ("oa", "an", "lo") if model is None else out["model"] == model
    assert [(a["model"], a["status"]) for a in out["attempts"]] == [(out["model"], "ok")]
    if reason is None:
        assert out["route_reason"] is None
    else:
        assert reason in out["route_reason"]


def test_parallel_returns_every_model_outcome(service):
    refused = service.model("sim-fast?fail=400")
    out = service.post(
        "/v1/complete",
        {"prompt": "same question", "routing": "parallel", "models": ["an", refused, "lo"]},
    ).json()
    assert out["routing"] == "parallel" and out["winner"] is None
    assert [r["model"] for r in out["responses"]] == ["an", refused, "lo"]
    assert [r["status"] for r in out["responses"]] == ["ok", "error", "ok"]
    assert "HTTP 400" in out["responses"][1]["error"]
    records = service.orc.runs.records(group_id=out["group_id"])
    assert len(records) == 3 and {(r.kind, r.step) for r in records} == {("all", "service")}


def test_race_returns_the_first_good_answer_and_every_outcome(service):
    # The refusal (a 400 is not retried) lands long before the echo's first token,
    # so the loser's outcome is an error, never a cancellation.
    failing = service.model("sim-fast?fail=400")
    echo = service.model("sim-echo?ttft_ms=400", base="an")
    out = service.post(
        "/v1/complete", {"prompt": "who wins", "routing": "race", "models": [failing, echo]}
    ).json()
    assert out["winner"]["model"] == echo and out["winner"]["content"] == "who wins"
    assert [r["status"] for r in out["responses"]] == ["error", "ok"]


def test_consensus_returns_the_winner_and_the_votes(service):
    paris = service.model("sim-fast?reply=Paris+is+the+capital")
    lyon = service.model("sim-fast?reply=Lyon+is+the+capital", base="lo")
    judge = service.model("sim-fast?reply=judge&prefer=Paris", base="an")
    body = {"prompt": "Capital of France?", "routing": "consensus", "models": [paris, lyon]}
    out = service.post("/v1/complete", {**body, "judges": [judge]}).json()
    assert out["winner"]["model"] == paris and "judge" in out["reason"]
    votes = out["votes"]
    assert votes["candidates"] == {"A": paris, "B": lyon} and votes["winner"] == "A"
    assert votes["points"][judge] == {"A": 1.0, "B": 0.0}
    # Without judges: the majority of normalised answers.
    twice = [service.model("sim-fast?reply=42"), service.model("sim-fast?reply=42", base="lo")]
    out = service.post("/v1/complete", {**body, "models": [*twice, lyon]}).json()
    assert out["winner"]["content"] == "42" and out["votes"] is None


async def test_openai_sdk_plain_and_streamed_with_a_usage_chunk(service):
    client = service.sdk()
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    for model in ("oa", "an"):  # OpenAI and Anthropic wire formats behind the same answer shape
        plain = await client.chat.completions.create(model=model, messages=messages)
        text = plain.choices[0].message.content
        assert plain.object == "chat.completion" and plain.model == model and text
        assert plain.choices[0].finish_reason == "stop"
        assert plain.usage.completion_tokens == len(text.split())
        assert plain.model_extra["mmo"]["run_id"]  # our details ride along
        stream = await client.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        assert all(c.object == "chat.completion.chunk" for c in chunks)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == text  # the simulated reply depends on the model and prompt only
        *body, last = chunks
        assert last.choices == [] and last.usage.total_tokens == plain.usage.total_tokens
        assert all(c.usage is None for c in body)
        assert body[-1].choices[0].finish_reason == "stop" and body[-1].model == model
    stream = await client.chat.completions.create(model="lo", messages=USER, stream=True)
    assert all([chunk.choices async for chunk in stream])  # no usage chunk unless asked


async def test_openai_sdk_with_model_auto_task_routes_by_task(service):
    answer = await service.sdk().chat.completions.create(
        model="auto:task", messages=[{"role": "user", "content": CODING}]
    )
    assert answer.model == "an"  # task_models={"coding": ["an"]}
    assert answer.model_extra["mmo"]["route_reason"].startswith("task: task coding")


# -- security ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", f"Basic {KEY}", f"Token {KEY}", "Bearer", KEY,
     f"Bearer {KEY[:-1]}", f"Bearer {KEY}x", f"Bearer {KEY},{OTHER_KEY}"],
)  # fmt: skip
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/models"), ("GET", "/v1/models/oa"), ("POST", "/v1/complete"),
     ("POST", "/v1/chat/completions"), ("GET", "/no/such/path")],
)  # fmt: skip
def test_requests_without_a_valid_key_are_refused(service, sim, authorization, method, path):
    headers = {} if authorization is None else {"authorization": authorization}
    body = {"prompt": "hi", **chat("oa")} if method == "POST" else None
    response = httpx.request(method, service.url + path, headers=headers, json=body)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "authentication_error"
    assert sim.request_count() == 0


async def test_every_configured_key_works_and_the_sdk_sees_a_401_for_others(service):
    for key in (KEY, OTHER_KEY):
        with service.http(key) as http:
            assert http.get("/v1/models").status_code == 200
    with service.http(None) as http:
        assert http.get("/v1/models", headers={"authorization": f"bearer {KEY}"}).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        await service.sdk("not-a-key").chat.completions.create(model="oa", messages=USER)


@pytest.mark.parametrize("how", ["flag", "config"])
def test_refuses_to_listen_beyond_loopback_without_keys(tmp_path, how):
    config = tmp_path / "mmo.toml"
    config.write_text('[server]\nhost = "0.0.0.0"\n')
    where = ["--host", "0.0.0.0"] if how == "flag" else ["--config", str(config)]
    env = {k: v for k, v in os.environ.items() if k != "MMO_SERVER_KEYS"}
    done = subprocess.run(
        [sys.executable, "-m", "mmo_magic.service", *where, "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "refusing to listen on 0.0.0.0 without client keys" in line
    assert "MMO_SERVER_KEYS" in line


async def test_a_keyless_server_serves_loopback_clients_only(sim_server, keys):
    with mmo.Orchestrator(sim_models(sim_server), runlog=":memory:", cache=False) as orc:
        app = create_app(orc, keys=[])
        with serving(app) as url:
            assert httpx.post(f"{url}/v1/complete", json={"prompt": "hi", "model": "lo"}).is_success
        remote = httpx.ASGITransport(app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=remote) as client:
            refused = await client.get("http://service/v1/models")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "loopback_only"


def test_a_router_with_no_usable_model_is_a_503_naming_the_missing_key():
    keyless = mmo.ModelConfig("openai", "gpt-4o-mini", api_key_env="MMO_TEST_UNSET_KEY")
    with (
        mmo.Orchestrator([keyless], runlog=":memory:", cache=False) as orc,
        serving(create_app(orc, keys=[])) as url,
    ):
        out = httpx.post(f"{url}/v1/chat/completions", json=chat("auto"))
    assert out.status_code == 503, out.text
    error = out.json()["error"]
    assert error["type"] == "service_unavailable"
    assert "No model is available" in error["message"] and "MMO_TEST_UNSET_KEY" in error["message"]


def test_cors_is_off_unless_origins_are_configured(sim_server, keys):
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    with mmo.Orchestrator(sim_models(sim_server), runlog=":memory:", cache=False) as orc:
        with serving(create_app(orc, keys=[KEY])) as url:
            answer = httpx.options(f"{url}/v1/complete", headers=preflight)
            assert "access-control-allow-origin" not in answer.headers
        settings = ServerSettings(cors_origins=("https://app.example",))
        with serving(create_app(orc, keys=[KEY], settings=settings)) as url:
            allowed = httpx.options(f"{url}/v1/complete", headers=preflight)
            other = httpx.options(
                f"{url}/v1/complete", headers={**preflight, "origin": "https://evil.example"}
            )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers


def test_oversized_bodies_get_413_before_they_are_parsed(service, sim):
    body = json.dumps({"prompt": "x" * 100_000}).encode()
    with service.http() as http:
        sized = http.post(
            "/v1/complete", content=body, headers={"content-type": "application/json"}
        )
        chunked = http.post(  # no Content-Length: counted as it arrives
            "/v1/chat/completions",
            content=iter([body[:40_000], body[40_000:]]),
            headers={"content-type": "application/json"},
        )
    for response in (sized, chunked):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"
    assert sim.request_count() == 0


async def test_max_tokens_over_the_cap_is_refused(service, sim):
    response = service.post("/v1/complete", {"prompt": "hi", "model": "oa", "max_tokens": CAP + 1})
    assert response.status_code == 400
    assert f"limit of {CAP}" in response.json()["error"]["message"]
    client = service.sdk()
    for cap_field in ("max_tokens", "max_completion_tokens"):
        with pytest.raises(openai.BadRequestError, match=f"limit of {CAP}"):
            await client.chat.completions.create(model="oa", messages=USER, **{cap_field: 10**6})
    assert sim.request_count() == 0


AUDIO = [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/v1/complete", b"{not json", "not valid JSON"),
        ("/v1/complete", b"[]", "JSON object"),
        ("/v1/complete", {"prompt": 5}, "prompt"),
        ("/v1/complete", {"prompt": ""}, "prompt"),
        ("/v1/complete", {"prompt": "hi", "max_tokens": "5"}, "max_tokens"),
        ("/v1/complete", {"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ("/v1/complete", {"prompt": "hi", "temperature": 9}, "temperature"),
        ("/v1/complete", {"prompt": "hi", "routing": "sideways"}, "routing"),
        ("/v1/complete", {"prompt": "hi", "max_token": 5}, "Did you mean 'max_tokens'"),
        ("/v1/complete", {"prompt": "hi", "routing": "race"}, "needs models"),
        ("/v1/complete", {"prompt": "hi", "routing": "auto", "model": "oa"}, "chooses the model"),
        ("/v1/complete", {"prompt": "hi", "task_type": "coding", "model": "oa"}, "chooses the"),
        ("/v1/complete", {"prompt": "hi", "model": "oa", "models": ["lo"]}, "models is for"),
        ("/v1/complete", {"prompt": "hi", "task_type": "cookin"}, "Did you mean 'coding'"),
        ("/v1/complete", {"prompt": "hi", "model": "auto:sideways"}, "Unknown router"),
        ("/v1/chat/completions", chat("oa", "hi"), "messages"),  # type: ignore[arg-type]
        ("/v1/chat/completions", chat("oa", []), "messages"),
        ("/v1/chat/completions", chat("oa", [{"role": "tool", "content": "x"}]), "tool_call_id"),
        (
            "/v1/chat/completions",
            chat("oa", [{"role": "user", "content": AUDIO}]),
            "'input_audio' part",
        ),
        ("/v1/chat/completions", chat("oa", n=2, stream=True), "n"),
        ("/v1/chat/completions", chat("oa", stream="yes"), "stream"),
        ("/v1/chat/completions", chat("oa", tools=[{"type": "function"}]), "tools"),
    ],
)
def test_bad_requests_get_a_400_in_openai_shape(service, sim, path, body, words):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with service.http() as http:
        response = http.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert words.lower() in f"{error['message']} {error['param']}".lower()
    assert "\n" not in error["message"] and "Traceback" not in response.text
    assert sim.request_count() == 0


async def test_unknown_models_get_404_with_suggestions(service):
    service.orc.add_model(service.orc.catalogue.resolve("lo").replace(name="gpt-local"))
    for body in ({"prompt": "hi", "model": "gpt-locl"},
                 {"prompt": "hi", "routing": "race", "models": ["lo", "gpt-locl"]}):  # fmt: skip
        error = service.post("/v1/complete", body)
        assert error.status_code == 404
        assert error.json()["error"] | {"message": ""} == {
            "message": "", "type": "invalid_request_error", "param": "model",
            "code": "model_not_found",
        }  # fmt: skip
        assert "Did you mean 'gpt-local'?" in error.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError, match="gpt-local"):
        await service.sdk().chat.completions.create(model="gpt-locl", messages=USER)


def test_every_model_rate_limited_is_a_429(service, sim):
    backup = service.model("sim-fast?fail=429&retry_after=0", base="an", max_retries=0)
    first = service.model("sim-fast?fail=429&retry_after=0", max_retries=0, fallbacks=(backup,))
    out = service.post("/v1/complete", {"prompt": "hi", "model": first})
    assert out.status_code == 429, out.text
    assert out.json()["error"]["type"] == "rate_limit_error"
    assert sim.request_count("sim-fast?fail=429&retry_after=0") == 2  # both were tried


async def test_an_outage_fails_over_to_the_fallback_model(service, sim):
    backup = service.model("sim-echo", base="an")
    down = service.model("sim-fast?fail=503", fallbacks=(backup,))
    prompt = "where did this come from"
    out = service.post("/v1/complete", {"prompt": prompt, "model": down}).json()
    assert out["model"] == backup and out["content"] == prompt
    assert [(a["model"], a["status"]) for a in out["attempts"]] == [(down, "error"), (backup, "ok")]
    assert "HTTP 503" in out["attempts"][0]["error"]
    client = service.sdk()
    messages = [{"role": "user", "content": prompt}]
    plain = await client.chat.completions.create(model=down, messages=messages)
    assert plain.model == backup and plain.choices[0].message.content == prompt
    assert [a["status"] for a in plain.model_extra["mmo"]["attempts"]] == ["error", "ok"]
    chunks = await streamed(client, model=down, messages=messages)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == prompt
    assert chunks[-1].model == backup
    assert sim.request_count("sim-fast?fail=503") == 3


async def test_a_stream_broken_after_text_ends_in_an_error_not_a_repeat(service, sim):
    backup = service.model("sim-echo", base="an")
    broken = service.model("sim-echo?fault=cut&cut_after=3", fallbacks=(backup,))
    stream = await service.sdk().chat.completions.create(
        model=broken, messages=[{"role": "user", "content": "one two three four five"}], stream=True
    )
    text = ""
    with pytest.raises(openai.APIError, match="broke mid-stream"):
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
    assert text == "one two three"  # what was sent stays sent; nothing is sent twice
    assert sim.request_count("sim-echo") == 0  # the fallback was never asked


@pytest.mark.parametrize(
    ("model_id", "fields", "status", "code"),
    [
        ("sim-fast?fail=429&retry_after=1", {}, 429, "rate_limit_error"),
        ("sim-fast?ttft_ms=5000", {"ttft_timeout_s": 0.1}, 504, "timeout"),
        ("sim-fast?fail=500", {}, 502, "upstream_error"),
        ("sim-fast?fail=content_policy", {}, 400, "invalid_request_error"),
        ("sim-fast", {"api_key_env": "MMO_TEST_UNSET_KEY"}, 503, "service_unavailable"),
    ],
)
def test_provider_failures_map_to_their_status(service, model_id, fields, status, code):
    name = service.model(model_id, **fields)
    response = service.post("/v1/complete", {"prompt": "hi", "model": name})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == code and "Traceback" not in response.text
    if status == 429:
        assert response.headers["retry-after"] == "1"
    if status == 503:
        assert (
            "MMO_TEST_UNSET_KEY is not set" in error["message"]
            and "getpass" not in error["message"]
        )


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (mmo.BudgetExceededError("over budget"), 402),
        (mmo.AllModelsFailedError([mmo.Attempt("a", "sim", "timeout")]), 504),
        (mmo.AllModelsFailedError([mmo.Attempt("a", "sim", "error", "HTTP 500")]), 502),
        (
            mmo.AllModelsFailedError(
                [mmo.Attempt("a", "sim", "error"), mmo.Attempt("b", "sim", "error")],
                [mmo.ProviderError("slow down", provider="sim", model=m, status=429) for m in "ab"],
            ),
            429,
        ),
        (mmo.StreamError("cut", provider="sim", model="a", retryable=True), 502),
        (mmo.MMOError("something else"), 500),
    ],
)
def test_the_rest_of_the_status_table(error, status):
    assert classify(error)[0] == status


def test_an_unexpected_error_is_a_generic_500(service, monkeypatch):
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("internal detail that must stay on the server")

    monkeypatch.setattr(service.orc, "acomplete", broken)
    response = service.post("/v1/complete", {"prompt": "hi", "model": "oa"})
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "internal detail" not in response.text and "Traceback" not in response.text


async def test_provider_keys_never_reach_a_response(service, sim):
    leaky = service.model("sim-fast?fail=401&echo_key=1")
    client = service.sdk()
    texts = []
    with service.http() as http:
        for path, body in [
            ("/v1/complete", {"prompt": "hi", "model": leaky}),
            ("/v1/complete", {"prompt": "hi", "routing": "parallel", "models": [leaky, "lo"]}),
            ("/v1/chat/completions", chat(leaky)),
            ("/v1/chat/completions", chat(leaky, stream=True)),
        ]:
            response = http.post(path, json=body)
            texts += [response.text, str(response.headers)]
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model=leaky, messages=USER)
    texts.append(str(info.value.body))
    assert sim.request_count(leaky.split(":", 1)[1]) == 5  # each call reached the provider
    assert "***" in texts[0]  # the provider did echo the key; it was scrubbed
    assert not [t for t in texts if CANARY in t]


async def test_every_service_call_is_in_the_run_log(service):
    client = service.sdk()
    ids = [service.post("/v1/complete", {"prompt": "one", "model": "lo"}).json()["run_id"]]
    plain = await client.chat.completions.create(model="an", messages=USER)
    ids.append(plain.model_extra["mmo"]["run_id"])
    chunks = await streamed(client, model="oa", messages=USER)
    ids.append(chunks[-1].model_extra["mmo"]["run_id"])
    race = {"prompt": "two", "routing": "race", "models": ["oa", "lo"]}
    ids += [r["run_id"] for r in service.post("/v1/complete", race).json()["responses"]]
    with pytest.raises(openai.BadRequestError):  # the router name is wrong: recorded as failed
        await client.chat.completions.create(model="auto:sideways", messages=USER)
    runs = service.orc.runs.to_dataframe()
    ours = runs[runs.run_id.isin(ids)].set_index("run_id").loc[ids]
    assert (ours.step == "service").all()
    assert list(ours.kind[:3]) == ["complete", "complete", "stream"]
    assert list(ours.kind[3:]) == ["race", "race"]
    failed = runs[runs.requested_model == "auto"].iloc[-1]
    assert (failed.status, failed.error_type, failed.step) == ("error", "ConfigError", "service")


def test_a_client_leaving_mid_stream_cancels_the_upstream_call(service, sim):
    slow = service.model("sim-fast?tps=20&tokens=400")
    with (
        service.http() as http,
        http.stream("POST", "/v1/chat/completions", json=chat(slow, stream=True)) as response,
    ):
        for line in response.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break  # text is arriving: now hang up
    upstream_cancelled(service, sim, slow)
    (gone,) = [d for d in sim.disconnects if d.model.endswith("tokens=400")]
    assert gone.phase == "streaming" and gone.tokens_sent < 400


def test_a_client_leaving_a_plain_request_cancels_it(service, sim):
    silent = service.model("sim-fast?ttft_ms=20000")
    with service.http() as http, pytest.raises(httpx.ReadTimeout):
        http.post("/v1/complete", json={"prompt": "hi", "model": silent}, timeout=0.5)
    upstream_cancelled(service, sim, silent)


# -- configuration and the command line --------------------------------------------------------


def test_the_server_table_in_mmo_toml(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(textwrap.dedent("""
        [server]
        port = 9000
        keys_env = "MY_KEYS"
        cors_origins = ["https://app.example"]
        graceful_shutdown_s = 2.5
    """))  # fmt: skip
    server = load_settings([good]).server
    assert (server.port, server.keys_env, server.cors_origins) == (
        9000,
        "MY_KEYS",
        ("https://app.example",),
    )
    assert server.host == "127.0.0.1" and server.graceful_shutdown_s == 2.5
    for text, message in [
        ("[server]\nprot = 1\n", "Did you mean 'port'?"),
        ("[server]\nport = '80'\n", "port must be an integer"),
        ("[server]\nmax_body_bytes = 0\n", "must be > 0"),
        ("server = 1\n", "must be a table"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(mmo.ConfigError, match=message):
            load_settings([bad])


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_mmo_serve_answers_and_finishes_in_flight_requests_on_shutdown(sim_server, tmp_path, stop):
    config = tmp_path / "mmo.toml"
    config.write_text(textwrap.dedent(f"""
        default_model = "slow"
        [models.slow]
        provider = "local"
        model_id = "sim-fast?ttft_ms=100&tps=20&tokens=8"
        base_url = "{sim_server.openai_base_url}"
    """))  # fmt: skip
    runlog = tmp_path / "runs.sqlite3"
    with (
        mmo_serve(config, runlog) as (process, url),
        httpx.Client(base_url=url, timeout=30) as http,
        http.stream("POST", "/v1/chat/completions", json=chat("slow", stream=True)) as response,
    ):
        lines = response.iter_lines()
        assert '"role":"assistant"' in next(lines)  # the answer is under way
        process.send_signal(stop)
        rest = sse_data(list(lines))
        assert process.wait(timeout=30) == 0
        stderr = process.stderr.read() if process.stderr else ""
    assert rest[-1] == "[DONE]"  # the in-flight stream was finished, not cut
    words = "".join(json.loads(d)["choices"][0]["delta"].get("content", "") for d in rest[:-1])
    assert len(words.split()) == 8
    assert "Traceback" not in stderr and "Finished server process" in stderr
    with mmo.RunLog(runlog) as log:
        (record,) = log.records()
    assert (record.model, record.status, record.step) == ("slow", "ok", "service")


def test_each_client_key_is_redacted_like_a_provider_key(sim_server, keys):
    from mmo_magic.core.redaction import redact

    client_keys = ["client-key-one-1234567", "client-key-two-7654321"]
    with mmo.Orchestrator(sim_models(sim_server), runlog=":memory:", cache=False) as orc:
        create_app(orc, keys=client_keys)
    # A comma-separated list is no variable's whole value: each key is known on its own.
    assert redact(f"sent {client_keys[1]} by mistake") == "sent *** by mistake"


def test_an_open_circuit_is_a_503_that_says_when_to_retry() -> None:
    from mmo_magic.service.errors import mmo_error_response

    response = mmo_error_response(
        mmo.CircuitOpenError(provider="openai", model="oa", retry_after_s=2.2), lambda s: s
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert b"circuit_open" in response.body and b"retry in 2.2 s" in response.body
