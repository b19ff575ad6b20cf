"""The run log: writes per second, and ``to_dataframe()`` on many records.

    python benchmarks/records.py [--records 100000] [--writes 20000] [--rounds 3]

Records look like real ones: a prompt, a ~30-word response, tokens, cost,
latency, a few models and statuses. Writes: ``RunLog.add`` from one thread
into a log on disk, timed until every record is committed (``flush``), so
the figure is sustained throughput, not queueing. The old way, one commit
per record, is timed in the same run for comparison. Then ``to_dataframe()``
reads ``--records`` records back, best of ``--rounds`` (pandas and pyarrow
already imported), with the SQLite fetch alone shown for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from _common import Check, print_checks, print_table, save

from mmo_magic.storage.runlog import _COLUMNS, _INSERT, RunLog, RunRecord, _to_row

MODELS = ["gpt-4o-mini", "claude-haiku-4-5", "smollm2", "gpt-4o"]
STATUSES = ["ok"] * 17 + ["error", "timeout", "cancelled"]
WORDS = "the of model answer token stream judge route cost cell race pipeline".split()  # noqa: SIM905


IN_FLIGHT = 100


def make_records(n: int, seed: int = 7) -> list[RunRecord]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        status = rng.choice(STATUSES)
        model = rng.choice(MODELS)
        records.append(
            RunRecord(
                kind=rng.choice(["complete", "complete", "race", "judge", "pipeline_step"]),
                group_id=f"group{i // 3}",
                requested_model=model,
                model=model,
                provider="openai" if model.startswith("gpt") else "anthropic",
                status=status,
                error="HTTP 503 from the provider" if status == "error" else None,
                error_type="ProviderError" if status == "error" else None,
                finish_reason="stop" if status == "ok" else None,
                prompt=f"Question {i}: " + " ".join(rng.choices(WORDS, k=12)),
                response=" ".join(rng.choices(WORDS, k=30)) if status == "ok" else None,
                input_tokens=rng.randint(10, 400),
                output_tokens=rng.randint(5, 300) if status == "ok" else None,
                cost=rng.random() / 1000,
                latency_ms=rng.uniform(100, 3000),
                ttft_ms=rng.uniform(50, 800),
                cell=i // 50,
                session_id="bench",
            )
        )
    return records


def writes_per_second(records: list[RunRecord], path: Path) -> float:
    with RunLog(path) as log:
        start = time.perf_counter()
        for record in records:
            log.add(record)
        log.flush()
        return len(records) / (time.perf_counter() - start)


def durable_writes_per_second(records: list[RunRecord], path: Path, in_flight: int) -> float:
    """``in_flight`` callers on one event loop, each waiting for its record's commit.

    What a call does since a returned call is a recorded call: the caller awaits
    the commit that covers its record; concurrent callers share commits.
    """

    async def caller(mine: list[RunRecord], log: RunLog) -> None:
        for record in mine:
            await asyncio.wrap_future(log.add(record))

    async def all_callers(log: RunLog) -> None:
        shares = [records[i::in_flight] for i in range(in_flight)]
        await asyncio.gather(*(caller(share, log) for share in shares))

    with RunLog(path) as log:
        start = time.perf_counter()
        asyncio.run(all_callers(log))
        return len(records) / (time.perf_counter() - start)


def one_commit_per_record(records: list[RunRecord], path: Path) -> float:
    """The previous RunLog.add: one autocommitted INSERT per record, on the caller's thread."""
    RunLog(path).close()  # the schema
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    start = time.perf_counter()
    for record in records:
        conn.execute(_INSERT, _to_row(record))
    rate = len(records) / (time.perf_counter() - start)
    conn.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import pandas  # noqa: F401 - imported before timing, as in a notebook that has used it
    import pyarrow  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        sample = make_records(args.writes)
        batched = max(
            writes_per_second(sample, Path(tmp) / f"w{i}.sqlite3") for i in range(args.rounds)
        )
        durable = max(
            durable_writes_per_second(sample, Path(tmp) / f"d{i}.sqlite3", IN_FLIGHT)
            for i in range(args.rounds)
        )
        single = one_commit_per_record(sample, Path(tmp) / "single.sqlite3")
        print_table(
            f"Run-log writes: {args.writes:,} records, one thread,"
            f" file on disk (best of {args.rounds})",
            ("how", "records/s"),
            [
                ("RunLog.add (group commit on a writer thread)", batched),
                (f"{IN_FLIGHT} callers each awaiting its commit", durable),
                ("one commit per record (before)", single),
            ],
        )

        path = Path(tmp) / "big.sqlite3"
        with RunLog(path) as log:
            for record in make_records(args.records):
                log.add(record)
        with RunLog(path) as log:
            frame_s, fetch_s = [], []
            for _ in range(args.rounds):
                start = time.perf_counter()
                frame = log.to_dataframe()
                frame_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                rows = log._conn.execute(
                    f"SELECT {_COLUMNS} FROM runs ORDER BY started_at, rowid"
                ).fetchall()
                fetch_s.append(time.perf_counter() - start)
            assert len(frame) == len(rows) == args.records
        print_table(
            f"to_dataframe() on {args.records:,} records (best of {args.rounds})",
            ("step", "seconds"),
            [("to_dataframe()", min(frame_s)), ("  of which the SQLite fetch alone", min(fetch_s))],
        )

    checks = [
        Check(
            "run-log writes",
            batched,
            "records/s",
            ">= 10,000",
            batched >= 10_000,
            f"one commit per record: {single:,.0f}/s",
        ),
        Check(
            f"run-log writes, {IN_FLIGHT} callers awaiting their commits",
            durable,
            "records/s",
            ">= 10,000",
            durable >= 10_000,
            "a returned call is a recorded call",
        ),
        Check(
            f"to_dataframe() on {args.records:,} records",
            min(frame_s),
            "s",
            "< 1 s",
            min(frame_s) < 1.0,
            f"SQLite fetch alone {min(fetch_s):.2f} s",
        ),
    ]
    print_checks(checks)
    rows_out = [
        {
            "writes_per_s": batched,
            "durable_writes_per_s": durable,
            "in_flight": IN_FLIGHT,
            "one_commit_per_record_per_s": single,
        },
        {"records": args.records, "to_dataframe_s": min(frame_s), "fetch_s": min(fetch_s)},
    ]
    save("records", vars(args), rows_out, checks)


if __name__ == "__main__":
    main()
