"""The response cache never fails a call: corrupt, locked, full and unopenable caches."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import sim_models

import mmo_magic as mmo
from mmo_magic.storage.cache import CachedAnswer, CacheWarning, ResponseCache

ROOT = Path(__file__).resolve().parents[2]
ANSWER = CachedAnswer("forty-two", "stop", 3, 1)


def test_a_corrupt_cache_is_set_aside_and_kept(tmp_path):
    path = tmp_path / "responses.sqlite3"
    path.write_bytes(b"not a database, only bytes " * 100)
    with pytest.warns(CacheWarning, match="unreadable"):
        cache = ResponseCache(path)
    cache.put("k", ANSWER)
    assert cache.get("k") == ANSWER
    assert len(list(tmp_path.glob("responses.sqlite3.corrupt-*"))) == 1


def test_a_locked_cache_is_skipped_not_set_aside(tmp_path):
    path = tmp_path / "responses.sqlite3"
    ResponseCache(path).put("k", ANSWER)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another kernel writing, for longer than we wait
    try:
        with pytest.warns(CacheWarning, match="cannot be used now.*locked"):
            cache = ResponseCache(path)
            assert cache.get("k") is None
            cache.put("k2", ANSWER)  # skipped, not raised
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not list(tmp_path.glob("*.corrupt-*"))
    assert ResponseCache(path).get("k") == ANSWER  # nothing was dropped


def test_an_unopenable_cache_lets_calls_through(sim, keys, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache's folder should be")
    with pytest.warns(CacheWarning, match="cannot be used now"):
        orc = mmo.Orchestrator(
            sim_models(sim), default_model="oa", runlog=":memory:",
            cache=blocker / "responses.sqlite3",
        )  # fmt: skip
    with orc:
        assert orc.complete("hello").status == "ok"
        assert orc.complete("hello").status == "ok"  # asked again: no cache, no error


FULL_CACHE_CHILD = """
import resource, signal, sys, warnings
from mmo_magic.storage.cache import CachedAnswer, CacheWarning, ResponseCache
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
cache = ResponseCache(sys.argv[1])
cache.put("small", CachedAnswer("ok", "stop", 1, 1))
limit = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, limit[1]))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for i in range(20):
        cache.put(f"big {i}", CachedAnswer("x" * 100_000, "stop", 1, 1))
print(sum(issubclass(w.category, CacheWarning) for w in caught), cache.get("small").content)
"""


def test_a_full_disk_skips_the_cache_with_one_warning(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", FULL_CACHE_CHILD, str(tmp_path / "responses.sqlite3")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["1", "ok"]


def test_a_key_in_an_answer_is_not_stored_in_the_cache(tmp_path, monkeypatch):
    key = "sk-test-canary-cache-0123456789abcdef"
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", key)
    cache = ResponseCache(tmp_path / "responses.sqlite3")
    cache.put("k", CachedAnswer(f"the key is {key}", "stop", 1, 1))
    cache.close()
    assert key not in (tmp_path / "responses.sqlite3").read_bytes().decode("latin-1")
