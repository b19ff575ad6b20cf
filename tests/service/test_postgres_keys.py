"""Client keys on Postgres: the store's contract on a real local Postgres started for
these tests, and two ``mmo-serve`` processes sharing one key and its budget through it.
Skipped, with the reason, where Postgres or psycopg is missing or will not start."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import USER, free_port, mmo_serve

from mmo_magic.storage.key_stores import open_key_store

PG_BIN = Path("/usr/lib/postgresql")


def _pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(PG_BIN.glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("no Postgres server binaries (initdb, pg_ctl) on this machine")
    root = Path(tempfile.mkdtemp(prefix="mmo-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # Postgres will not run as root: as the postgres user, if any
        runuser = shutil.which("runuser")
        try:
            import pwd

            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run Postgres as")
        if not runuser:
            pytest.skip("running as root without runuser to run Postgres as postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = [runuser, "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "--auth=trust", "-U", "postgres"],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", options, "-l",
                        str(root / "log"), "-w", "start"], check=True, capture_output=True,
                       timeout=120)  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"a local Postgres did not start: {exc}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def url(postgres_url: str) -> str:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS client_keys, key_spend, key_days, key_holds")
    return postgres_url


def test_the_store_contract_on_postgres(url):
    store = open_key_store(url)
    secret = store.add("team", models=["oa", "auto:*"], budget_usd=2.5, budget_period="day",
                       requests_per_minute=10)  # fmt: skip
    key = store.find(secret)
    assert key is not None and key.models == ("oa", "auto:*") and key.budget_usd == 2.5
    assert store.find(secret + "x") is None
    with pytest.raises(Exception, match="exists already"):
        store.add("team")
    store.charge("team", "oa", 0.25, 100)
    store.charge("team", "oa", None, 5)  # unpriced: tokens counted, no dollars
    assert store.spent("team", 0) == pytest.approx(0.25)
    (row,) = store.spend()
    assert (row["key"], row["model"], row["requests"], row["tokens"]) == ("team", "oa", 2, 105)
    assert len(row["day"]) == 10
    held = store.hold("team", 2.0, 0, 2.5)
    assert held is not None and store.hold("team", 0.5, 0, 2.5) is None
    store.settle("team", [("oa", 0.5, 7)], [held])  # the charge and the hold's end, at once
    assert store.spent("team", 0) == pytest.approx(0.75)
    assert store.hold("team", 1.75, 0, 2.5) is not None  # the 2.0 held is gone
    assert store.revoke("team") and not store.revoke("team") and store.find(secret) is None
    store.close()


def test_two_gateways_share_one_keys_budget(url, sim_server, tmp_path):
    config = tmp_path / "mmo.toml"
    config.write_text(textwrap.dedent(f"""
        [server]
        keys_db = "{url}"
        [models.oa]
        provider = "local"
        model_id = "sim-fast?tokens=10"
        base_url = "{sim_server.openai_base_url}"
        cost_per_1k_input = 0.0
        cost_per_1k_output = 1.0
    """))  # fmt: skip

    def keys(*args: str) -> str:
        command = [sys.executable, "-m", "mmo_magic.service", "keys", "--config", str(config)]
        done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    # Each answer costs $0.01 (10 words at $1 per 1,000), its worst case too (max_tokens
    # 10, input free): a third would not fit in $0.025.
    shared = keys("add", "team", "--budget", "0.025", "--period", "day")
    burst_key = keys("add", "burst", "--budget", "0.035", "--period", "day")
    admin = keys("add", "ops", "--admin")
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(mmo_serve(config, tmp_path / f"runs{i}.sqlite3"))[1]
                for i in range(2)]  # fmt: skip

        def chat(base: str, key: str = shared) -> int:
            body = {"model": "oa", "messages": USER, "max_tokens": 10}
            headers = {"authorization": f"Bearer {key}"}
            return httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers,
                              timeout=30).status_code  # fmt: skip

        assert chat(urls[0]) == 200
        assert chat(urls[1]) == 200  # $0.01 spent through the first: still under
        assert chat(urls[0]) == chat(urls[1]) == 429  # both see $0.02 spent
        spend = httpx.get(f"{urls[1]}/v1/spend", headers={"authorization": f"Bearer {admin}"})
        (row,) = spend.json()["data"]
        assert row["key"] == "team" and row["requests"] == 2 and row["usd"] == pytest.approx(0.02)
        # 16 requests at once, half through each gateway: the holds on the shared budget
        # admit 3 ($0.03 of $0.035), whatever the interleaving.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda i: chat(urls[i % 2], burst_key), range(16)))
        assert sorted(codes) == [200] * 3 + [429] * 13
    store = open_key_store(url)
    assert store.spent("burst", 0) == pytest.approx(0.03)
    store.close()
