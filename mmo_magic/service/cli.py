"""``mmo-serve``: the service on uvicorn, from the command line (``--help``).

Run it with ``mmo-serve`` or ``python -m mmo_magic.service``. Without client
keys it refuses any host but loopback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from ..core.config import load_settings
from ..core.errors import ConfigError, MMOError
from ..orchestration.orchestrator import Orchestrator
from .app import create_app
from .auth import KEYS_ENV, client_keys, is_loopback

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmo-serve",
        description="Serve mmo_magic's orchestrator over HTTP (OpenAI-compatible).",
        epilog=f"Client keys: {KEYS_ENV}=key1,key2 (needed for any host but loopback).",
    )
    parser.add_argument("--host", default=None, help="default: [server] host, else 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: [server] port, else 8000")
    parser.add_argument("--config", default=None, metavar="PATH", help="an mmo.toml to read")
    parser.add_argument("--runlog", default=None, metavar="PATH", help="the run log's SQLite file")
    parser.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN",
        help="allow browser calls from ORIGIN (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``mmo-serve``: run the service with uvicorn until SIGINT or SIGTERM."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(None if args.config is None else [Path(args.config)]).server
    except ConfigError as exc:
        print(f"mmo-serve: {exc}", file=sys.stderr)
        return 2
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    settings = dataclasses.replace(
        settings, host=host, port=port, cors_origins=(*settings.cors_origins, *args.cors_origin)
    )
    keys = client_keys(settings)
    if not keys and not is_loopback(host):
        print(
            f"mmo-serve: refusing to listen on {host} without client keys: "
            f"set {KEYS_ENV}=key1,key2 (or [server] keys_env), or listen on 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    # Our own messages at --log-level; other libraries' (the SDKs log every request) at warning.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(name)s: %(message)s")
    logging.getLogger("mmo_magic").setLevel(args.log_level.upper())
    try:
        extra = {} if args.runlog is None else {"runlog": args.runlog}
        orc = Orchestrator.from_config(args.config, **extra)
    except MMOError as exc:
        print(f"mmo-serve: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    access = f"keys required ({len(keys)})" if keys else "no keys: loopback clients only"
    logger.info("serving %r; %s; run log %s", orc, access, orc.runs.path)
    # uvicorn shuts down gracefully on SIGINT or SIGTERM, then raises that signal again.
    # SIGTERM then raises KeyboardInterrupt too, so both end here, and the exit is clean.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        uvicorn.run(
            create_app(orc, keys=keys, settings=settings),
            host=host,
            port=port,
            log_level=args.log_level,
            # In-flight requests (streams included) get this long to finish on shutdown.
            timeout_graceful_shutdown=math.ceil(settings.graceful_shutdown_s),
        )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        orc.close()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
