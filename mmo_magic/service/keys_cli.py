"""``mmo-serve keys add|list|revoke``: client keys in the key store (``storage.keys``).

The store is ``[server] keys_db`` (a SQLite file, or a ``postgresql://`` URL
shared by several gateways), else the run log's file (``--runlog``,
``runlog`` in mmo.toml, ``MMO_RUNLOG``, else the default). A running server
reads the store's keys as requests come; limits and allowlists of a key
already found are read again on SIGHUP or restart.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..core.config import default_runlog_path, load_settings
from ..core.errors import MMOError
from ..core.redaction import redact
from ..storage.key_stores import open_key_store
from ..storage.keys import PERIODS

__all__ = ["keys_main", "store_path"]


def store_path(config: str | None, runlog: str | None, keys_db: str | None = None) -> str:
    """The key store's file for these options and config files."""
    settings = load_settings(None if config is None else [Path(config)])
    path = keys_db or settings.server.keys_db or runlog or settings.runlog
    return path or default_runlog_path()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmo-serve keys", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, metavar="PATH", help="an mmo.toml to read")
    parser.add_argument("--runlog", default=None, metavar="PATH", help="the run log's file")
    parser.add_argument("--keys-db", default=None, metavar="PATH", help="the key store's file")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="make a key and print its secret (shown once)")
    add.add_argument("name")
    add.add_argument(
        "--model", action="append", default=[], metavar="GLOB",
        help="a model (or router: auto:*) it may use; repeatable; default: every model",
    )  # fmt: skip
    add.add_argument("--budget", type=float, default=None, metavar="USD")
    add.add_argument("--period", choices=list(PERIODS), default="month")
    add.add_argument("--rpm", type=int, default=None, help="requests per minute")
    add.add_argument("--tpm", type=int, default=None, help="tokens per minute")
    add.add_argument("--admin", action="store_true", help="it may manage keys and read spend")
    commands.add_parser("list", help="every key, as JSON lines (never a secret)")
    revoke = commands.add_parser("revoke", help="revoke a key by name")
    revoke.add_argument("name")
    return parser


def keys_main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        path = store_path(args.config, args.runlog, args.keys_db)
        if path == ":memory:":
            print("mmo-serve keys: the run log is in memory; give --keys-db PATH.", file=sys.stderr)
            return 2
        store = open_key_store(path)
        try:
            if args.command == "add":
                secret = store.add(
                    args.name, models=args.model or ["*"], budget_usd=args.budget,
                    budget_period=args.period, requests_per_minute=args.rpm,
                    tokens_per_minute=args.tpm, admin=args.admin,
                )  # fmt: skip
                print(secret)
                print(f"(key {args.name!r} in {redact(path)}; the secret is not shown again)",
                      file=sys.stderr)  # fmt: skip
            elif args.command == "list":
                for key in store.list_keys():
                    print(json.dumps(key.public()))
            elif not store.revoke(args.name):
                print(f"mmo-serve keys: no live key named {args.name!r}.", file=sys.stderr)
                return 1
        finally:
            store.close()
    except MMOError as exc:
        print(f"mmo-serve keys: {exc}", file=sys.stderr)
        return 2
    return 0
