"""Client keys with identities at the gateway: budgets, rate limits, allowlists, spend
attribution, the admin API and ``mmo-serve keys``, over the simulated providers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from helpers import ANTHROPIC_KEY_ENV, KEY, OPENAI_KEY_ENV, USER, Service, serving, sim_models

import mmo_magic as mmo
from mmo_magic.service import create_app
from mmo_magic.storage.keys import SQLiteKeyStore, hash_key


@pytest.fixture
def store() -> Iterator[SQLiteKeyStore]:
    s = SQLiteKeyStore(":memory:")
    yield s
    s.close()


@pytest.fixture
def keys(store: SQLiteKeyStore) -> dict[str, str]:
    return {
        # A call at the sim costs $0.000076 and is held at its worst case, $0.000158 (19
        # input tokens at most, max_tokens 20): a third would not fit in $0.00025.
        "alice": store.add(
            "alice", models=["oa", "auto:*"], budget_usd=0.00025, budget_period="day"
        ),
        "bob": store.add("bob", models=["an"], requests_per_minute=3),
        "carol": store.add("carol", models=["o*"], tokens_per_minute=25),
    }  # fmt: skip


@pytest.fixture
def gateway(sim: Any, store: SQLiteKeyStore, keys: dict[str, str]) -> Iterator[Service]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv(OPENAI_KEY_ENV, "sk-test-openai-keys-0000000")
        env.setenv(ANTHROPIC_KEY_ENV, "sk-ant-test-keys-00000000")
        orc = mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:", cache=False)
        with orc, serving(create_app(orc, keys=[KEY], store=store)) as url:
            yield Service(url, orc)


def chat(gateway: Service, key: str, model: str) -> httpx.Response:
    with gateway.http(key) as http:
        body = {"model": model, "messages": USER, "max_tokens": 20}
        return http.post("/v1/chat/completions", json=body)


def test_a_key_over_its_budget_gets_429_naming_it_and_others_are_unaffected(gateway, keys):
    statuses = [chat(gateway, keys["alice"], "oa").status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    refused = chat(gateway, keys["alice"], "oa").json()["error"]
    assert refused["code"] == "budget_exceeded" and "alice" in refused["message"]
    assert "$0.00025 per day" in refused["message"]
    spent = sum(r["usd"] for r in gateway.http(KEY).get("/v1/spend").json()["data"])
    assert spent == pytest.approx(0.000152) and spent <= 0.00025
    assert chat(gateway, keys["bob"], "an").status_code == 200
    assert chat(gateway, KEY, "oa").status_code == 200  # the server's key has no budget


async def test_a_keys_rate_limit_holds_under_a_burst(gateway, keys, sim):
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"authorization": f"Bearer {keys['bob']}"}, timeout=30
    ) as http:
        body = {"model": "an", "messages": USER}
        burst = await asyncio.gather(
            *[http.post("/v1/chat/completions", json=body) for _ in range(8)]
        )
    codes = sorted(r.status_code for r in burst)
    assert codes == [200] * 3 + [429] * 5
    refused = next(r for r in burst if r.status_code == 429)
    assert refused.json()["error"]["code"] == "requests_per_minute"
    assert int(refused.headers["retry-after"]) >= 1
    assert sim.request_count() == 3  # the refused never reached a model
    assert chat(gateway, keys["alice"], "oa").status_code == 200  # another key's minute


def test_tokens_per_minute_hold(gateway, keys):
    # Each call is 14 tokens (2 in, 12 out): the third finds 28 used of 25.
    statuses = [chat(gateway, keys["carol"], "oa").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_a_model_outside_the_allowlist_is_unknown_to_the_key(gateway, keys):
    outside = chat(gateway, keys["bob"], "oa")
    missing = chat(gateway, keys["bob"], "no-such-model")
    assert outside.status_code == missing.status_code == 404
    outside_error, missing_error = outside.json()["error"], missing.json()["error"]
    assert outside_error["code"] == missing_error["code"] == "model_not_found"
    assert outside_error["type"] == missing_error["type"]
    # Suggestions come only from what the key may use.
    assert outside_error["message"] == "Unknown model 'oa'. Did you mean 'an'?"
    with gateway.http(keys["bob"]) as http:
        listed = [m["id"] for m in http.get("/v1/models").json()["data"]]
        assert listed == ["an"]
        assert http.get("/v1/models/oa").status_code == 404
    # Routers only with auto:* in the list.
    assert chat(gateway, keys["bob"], "auto:cost").status_code == 404
    assert chat(gateway, keys["alice"], "auto:cost").status_code == 200


def test_every_wire_checks_the_allowlist(gateway, keys):
    with gateway.http(keys["bob"]) as http:
        assert http.post("/v1/responses", json={"model": "oa", "input": "hi"}).status_code == 404
        messages = {"model": "oa", "max_tokens": 10, "messages": USER}
        assert http.post("/v1/messages", json=messages).status_code == 404
        assert http.post("/v1/completions", json={"model": "oa", "prompt": "x"}).status_code == 404
        assert http.post("/v1/complete", json={"prompt": "x", "model": "oa"}).status_code == 404
        parallel = {"prompt": "x", "routing": "parallel", "models": ["an", "oa"]}
        assert http.post("/v1/complete", json=parallel).status_code == 404


async def test_spend_by_key_matches_the_run_log(gateway, keys):
    for key, model in [("alice", "oa"), ("bob", "an"), ("bob", "an")]:
        assert chat(gateway, keys[key], model).status_code == 200
    sdk = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=keys["bob"], max_retries=0)
    stream = await sdk.chat.completions.create(model="an", messages=USER, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    with gateway.http(KEY) as http:
        rows = http.get("/v1/spend").json()["data"]
    by_key: dict[str, float] = {}
    for row in rows:
        by_key[row["key"]] = by_key.get(row["key"], 0.0) + row["usd"]
    frame = gateway.orc.runs.to_dataframe()
    logged = frame[frame["client"].notna()].groupby("client", observed=True)["cost"].sum()
    assert set(by_key) == {"alice", "bob"} == set(logged.index)
    for name, usd in by_key.items():
        assert usd == pytest.approx(float(logged[name]))
    assert {r["requests"] for r in rows if r["key"] == "bob"} == {3}
    # Calls made with the server's own key carry no client.
    chat(gateway, KEY, "oa")
    assert gateway.orc.runs.to_dataframe()["client"].isna().sum() == 1


def test_the_admin_api_makes_lists_and_revokes_keys(gateway, keys, store):
    with gateway.http(KEY) as admin:
        made = admin.post("/v1/keys", json={"name": "dave", "models": ["an"], "budget_usd": 1.5})
        assert made.status_code == 200, made.text
        secret = made.json()["key"]
        assert made.json()["budget_usd"] == 1.5 and made.json()["models"] == ["an"]
        assert chat(gateway, secret, "an").status_code == 200
        listed = admin.get("/v1/keys").json()["data"]
        assert {k["name"] for k in listed} == {"alice", "bob", "carol", "dave"}
        assert all(secret not in str(k) for k in listed)
        assert admin.post("/v1/keys", json={"name": "dave"}).status_code == 400  # live already
        assert admin.post("/v1/keys", json={"name": "bad name!"}).status_code == 400
        assert admin.delete("/v1/keys/dave").json() == {"name": "dave", "revoked": True}
        assert admin.delete("/v1/keys/dave").status_code == 404
    assert chat(gateway, secret, "an").status_code == 401
    # Stored hashed: the secret is nowhere in the database.
    dump = "\n".join(store._conn.iterdump())
    assert secret not in dump and hash_key(secret) in dump


def test_admin_endpoints_refuse_other_keys(gateway, keys):
    with gateway.http(keys["alice"]) as http:
        for method, path in [("GET", "/v1/keys"), ("GET", "/v1/spend"), ("DELETE", "/v1/keys/bob")]:
            assert http.request(method, path).status_code == 403
        assert http.post("/v1/keys", json={"name": "eve"}).status_code == 403


def test_keys_work_as_x_api_key_and_on_the_anthropic_wire(gateway, keys):
    import anthropic

    client = anthropic.Anthropic(base_url=gateway.url, api_key=keys["bob"], max_retries=0)
    assert client.messages.create(model="an", max_tokens=20, messages=USER).content
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="oa", max_tokens=20, messages=USER)


def test_mmo_serve_keys_add_list_revoke_and_a_served_key(sim_server, tmp_path):
    import json
    import subprocess
    import sys

    from helpers import mmo_serve

    runlog = tmp_path / "runs.sqlite3"
    config = tmp_path / "mmo.toml"
    config.write_text(
        f'[models.oa]\nprovider = "openai"\nmodel_id = "sim-fast"\n'
        f'base_url = "{sim_server.openai_base_url}"\napi_key_env = "MMO_TEST_OPENAI_KEY"\n'
        "cost_per_1k_input = 0.001\ncost_per_1k_output = 0.002\n"  # a budget needs prices
    )

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "mmo_magic.service", "keys", "--runlog", str(runlog)]
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)

    made = keys("add", "team-a", "--model", "oa", "--budget", "5", "--period", "day", "--rpm", "60")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("mmo-") and secret not in runlog.read_bytes().decode("latin-1")
    (listed,) = [json.loads(line) for line in keys("list").stdout.splitlines()]
    assert listed["name"] == "team-a" and listed["budget_usd"] == 5 and listed["models"] == ["oa"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv(OPENAI_KEY_ENV, "sk-test-openai-cli-0000000")
        with mmo_serve(config, runlog) as (_, url):
            headers = {"authorization": f"Bearer {secret}"}
            body = {"model": "oa", "messages": USER}
            assert httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers).is_success
            assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 401
    assert keys("revoke", "team-a").returncode == 0
    assert keys("revoke", "team-a").returncode == 1
    assert keys("add", "bad name").returncode == 2


async def test_a_burst_never_spends_over_the_budget(gateway, store):
    secret = store.add("dave", models=["oa"], budget_usd=0.0005, budget_period="day")
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"authorization": f"Bearer {secret}"}, timeout=30
    ) as http:
        body = {"model": "oa", "messages": USER, "max_tokens": 20}
        burst = await asyncio.gather(
            *[http.post("/v1/chat/completions", json=body) for _ in range(12)]
        )
    ok = [r for r in burst if r.status_code == 200]
    assert 1 <= len(ok) <= 5 and len(ok) + sum(r.status_code == 429 for r in burst) == 12
    assert store.spent("dave", 0) <= 0.0005  # holds at the worst case: never over
    assert store.spent("dave", 0) == pytest.approx(0.000076 * len(ok))


def test_a_budget_key_cannot_reach_an_unpriced_model(gateway, store, sim):
    free = gateway.model("sim-fast", cost_per_1k_input=None, cost_per_1k_output=None)
    secret = store.add("erin", models=["*"], budget_usd=1.0)
    refused = chat(gateway, secret, free)
    assert refused.status_code == 400 and "no price" in refused.json()["error"]["message"]
    assert sim.request_count() == 0


def test_a_settle_that_fails_leaves_the_holds_for_the_release(tmp_path):
    """A locked store refuses the charge: the request's hold must still end with it, or the
    budget stays held for the hold's ten-minute life."""
    from starlette.requests import Request

    from mmo_magic.core.completion import CompletionResponse
    from mmo_magic.service.auth import CLIENT_STATE
    from mmo_magic.service.clients import Clients
    from mmo_magic.storage.keys import period_start

    path = str(tmp_path / "keys.db")
    store = SQLiteKeyStore(path)
    secret = store.add("team", budget_usd=1.0, budget_period="day")
    store._conn.execute("PRAGMA busy_timeout = 50")  # the lock below: refused at once
    clients = Clients(store)
    request = Request({"type": "http", "state": {CLIENT_STATE: store.find(secret)}})
    clients.admit(request, ["oa"], known=lambda: ["oa"], cost=lambda: 0.6)
    today = period_start("day")
    assert store.hold("team", 0.6, today, 1.0) is None  # 0.6 held + 0.6 > 1.0

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    answer = CompletionResponse(
        content="hi", model="oa", provider="openai", input_tokens=3, output_tokens=2
    )
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        clients.charge(request, [answer])
    other.execute("ROLLBACK")
    other.close()
    clients.release(request.scope)  # the end of the request
    assert store.hold("team", 0.6, today, 1.0) is not None  # the first hold ended
    store.close()
