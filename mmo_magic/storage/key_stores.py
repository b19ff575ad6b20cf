"""Which key store a gateway uses: SQLite on one machine, Postgres for several gateways."""

from __future__ import annotations

from .keys import KeyStore, SQLiteKeyStore

__all__ = ["open_key_store"]


def open_key_store(where: str) -> KeyStore:
    """The key store at ``where``: a ``postgresql://`` URL (shared by several gateways;
    needs psycopg), else a SQLite file."""
    if where.startswith(("postgresql://", "postgres://")):
        from .keys_postgres import PostgresKeyStore

        return PostgresKeyStore(where)
    return SQLiteKeyStore(where)
