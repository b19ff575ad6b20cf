"""A key's budget check reads its running daily totals, which agree with its charges."""

from __future__ import annotations

import sqlite3

import pytest

from mmo_magic.storage.keys import DAY_S, SQLiteKeyStore, period_start


def test_daily_totals_agree_with_the_charges_and_budgets_hold_on_them(tmp_path):
    store = SQLiteKeyStore(str(tmp_path / "keys.db"))
    store.add("team", budget_usd=1.0, budget_period="day")
    for usd in (0.25, 0.25, None, 0.1):  # an unpriced answer counts no dollars
        store.charge("team", "oa", usd, 10)
    today = period_start("day")
    assert store.spent("team", today) == pytest.approx(0.6)
    assert store.spent("team", today + 1) == pytest.approx(0.6)  # any moment: from the charges
    assert store.hold("team", 0.5, today, 1.0) is None  # 0.6 spent + 0.5 > 1.0
    held = store.hold("team", 0.4, today, 1.0)
    assert held is not None and store.hold("team", 0.01, today, 1.0) is None
    store.release(held)
    assert store.hold("team", 0.4, today, 1.0) is not None
    (days,) = store._run("SELECT COUNT(*) FROM key_days WHERE key = 'team'")
    assert days == (1,)  # one row a day, however many charges
    store.close()


def test_a_store_written_before_daily_totals_is_filled_from_its_charges(tmp_path):
    path = str(tmp_path / "old.db")
    today = period_start("day")
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE key_spend (key TEXT NOT NULL, model TEXT NOT NULL, "
                "at REAL NOT NULL, usd REAL, tokens INTEGER NOT NULL)")  # fmt: skip
    charges = [("team", today + 5, 0.25), ("team", today + 9, 0.5),
               ("team", today - DAY_S + 1, 2.0), ("solo", today + 1, 0.125)]  # fmt: skip
    old.executemany("INSERT INTO key_spend VALUES (?, 'oa', ?, ?, 1)", charges)
    old.commit()
    old.close()
    store = SQLiteKeyStore(path)
    assert store.spent("team", today) == pytest.approx(0.75)  # yesterday's 2.0 not counted
    assert store.spent("team", today - DAY_S) == pytest.approx(2.75)
    assert store.spent("solo", today) == pytest.approx(0.125)
    store.close()
    again = SQLiteKeyStore(path)  # reopened: filled once, not twice
    assert again.spent("team", today) == pytest.approx(0.75)
    again.close()


def test_a_settle_charges_a_requests_calls_and_ends_its_holds_together(tmp_path):
    store = SQLiteKeyStore(str(tmp_path / "keys.db"))
    store.add("team", budget_usd=1.0, budget_period="day")
    today = period_start("day")
    held = store.hold("team", 0.9, today, 1.0)
    assert held is not None and store.hold("team", 0.2, today, 1.0) is None
    store.settle("team", [("oa", 0.25, 10), ("an", None, 5)], [held])
    assert store.spent("team", today) == pytest.approx(0.25)
    assert store.hold("team", 0.75, today, 1.0) is not None  # 0.9 no longer held
    assert [(r["model"], r["tokens"]) for r in store.spend()] == [("an", 5), ("oa", 10)]
    store.close()
