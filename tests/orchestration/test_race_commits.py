"""A race returns only once its cancelled losers' records are committed (issue 27, defect 3):
a process killed right after ``orc.race`` returns keeps every record of ``rr.responses``."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from helpers import sim_models

import mmo_magic as mmo
from mmo_magic.storage.runlog import RunLog

COMMIT_S = 0.3


class SlowDisk(RunLog):
    """A run log whose every commit takes ``COMMIT_S`` longer, like a slow disk."""

    def _write_to_log(self, batch: Any, rows: Any) -> None:
        time.sleep(COMMIT_S)
        super()._write_to_log(batch, rows)


def on_disk(path: Path) -> set[str]:
    """The run ids committed to the file, read as another process would (no flush)."""
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT run_id FROM runs")}


def test_a_race_returns_only_once_its_cancelled_losers_are_committed(
    sim: Any, keys: Any, tmp_path: Path
) -> None:
    path = tmp_path / "runs.sqlite3"
    with mmo.Orchestrator(sim_models(sim), runlog=SlowDisk(path), cache=False) as orc:
        slow = "lo:sim-fast?ttft_ms=50&tokens=200&tps=20"
        orc.add_model(orc.catalogue.resolve("lo").replace(name=slow, model_id=slow[3:]))
        result = orc.race("who wins", ["oa", slow])
        returned = {r.run_id for r in result.responses}
        committed = on_disk(path)
        assert [r.status for r in result.responses] == ["ok", "cancelled"]
        assert None not in returned
        assert returned <= committed, "a cancelled loser's record was not committed yet"
