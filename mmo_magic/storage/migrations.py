"""The run log's schema, versioned: ``MIGRATIONS`` is an append-only list of SQL statement
groups and ``PRAGMA user_version`` holds how many have run. Never edit a migration that
has shipped; add a new one."""

from __future__ import annotations

import sqlite3

__all__ = ["MIGRATIONS", "migrate"]

# Append-only. Statements, not scripts: sqlite3's executescript() would commit
# the migration transaction half-way.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            kind TEXT NOT NULL,
            group_id TEXT,
            requested_model TEXT NOT NULL,
            model TEXT,
            provider TEXT,
            status TEXT NOT NULL,
            error_type TEXT,
            error TEXT,
            finish_reason TEXT,
            prompt TEXT NOT NULL,
            system TEXT,
            response TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            tokens_estimated INTEGER NOT NULL DEFAULT 0,
            cost REAL,
            latency_ms REAL,
            ttft_ms REAL,
            attempt INTEGER NOT NULL DEFAULT 1,
            cached INTEGER NOT NULL DEFAULT 0,
            route_reason TEXT,
            cell INTEGER,
            session_id TEXT,
            temperature REAL,
            max_tokens INTEGER
        )
        """,
        "CREATE INDEX runs_started_at ON runs (started_at)",
        "CREATE INDEX runs_cell ON runs (cell)",
        "CREATE INDEX runs_group_id ON runs (group_id)",
    ),
    ("ALTER TABLE runs ADD COLUMN step TEXT",),
    ("ALTER TABLE runs ADD COLUMN tool_calls TEXT",),
    ("ALTER TABLE runs ADD COLUMN parts TEXT",),  # issue 25: images and documents sent
    (  # issue 25: reasoning models
        "ALTER TABLE runs ADD COLUMN reasoning_tokens INTEGER",
        "ALTER TABLE runs ADD COLUMN reasoning TEXT",
        "ALTER TABLE runs ADD COLUMN first_activity_ms REAL",
    ),
    ("ALTER TABLE runs ADD COLUMN client TEXT",),  # issue 26: spend attributed to client keys
]


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the database at ``path`` up to the newest schema (one transaction)."""
    from ..core.errors import ConfigError

    def version() -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    if version() > len(MIGRATIONS):
        raise ConfigError(
            f"The run log {path} was written by a newer mmo_magic "
            f"(schema {version()}, this version knows {len(MIGRATIONS)}).",
            hint="Upgrade mmo_magic: pip install -U mmo_magic",
        )
    if version() == len(MIGRATIONS):
        return
    # IMMEDIATE takes the write lock now, so two kernels opening an old
    # database at once cannot both apply the same migration.
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statements in MIGRATIONS[version() :]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
