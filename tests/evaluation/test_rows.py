"""One row type: every way a batch makes a row gives the same fields."""

from __future__ import annotations

import mmo_magic as mmo
from mmo_magic.evaluation.rows import ROW_FIELDS, not_run_row, row, row_from_record


def test_every_row_has_every_field_once():
    assert ROW_FIELDS == (
        "answer", "answered_by", "status", "error", "input_tokens", "output_tokens", "ttft_ms",
        "latency_ms", "cost", "attempts", "cached", "resumed", "run_id",
    )  # fmt: skip
    record = mmo.RunRecord(run_id="r1", kind="batch", requested_model="m", model="m",
                           provider="sim", prompt="p", status="ok", response="yes")  # fmt: skip
    for made in (row("ok"), not_run_row("stopped"), row_from_record(record)):
        assert tuple(made) == ROW_FIELDS
    assert row_from_record(record)["resumed"] is True
    assert not_run_row("gone", "error") == row("error", error="gone")
