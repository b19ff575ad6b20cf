"""``mmo-serve``: the service on uvicorn, from the command line (``--help``).

Run it with ``mmo-serve`` or ``python -m mmo_magic.service``. Without client
keys it refuses to listen on anything but loopback, and answers only requests
naming a loopback host (``--allowed-host`` adds others).

On SIGHUP it reads its config again (``reload``). On SIGTERM or SIGINT it stops
accepting requests, gives those in flight
``graceful_shutdown_s`` to finish, then cuts the rest (``shutdown``): a stream
ends with an error event and ``[DONE]``, a request not yet answered gets 503
with Retry-After. uvicorn gets ``FLUSH_S`` more to send those endings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.config import load_settings
from ..core.errors import ConfigError, MMOError
from ..core.loop import background_loop
from ..orchestration.orchestrator import Orchestrator
from ..storage.key_stores import open_key_store
from .app import create_app
from .auth import KEYS_ENV, allowed_host_problem, client_keys, is_loopback
from .keys_cli import keys_main, store_path
from .reload import reload_config
from .shutdown import Drain

if TYPE_CHECKING:
    import uvicorn

__all__ = ["main"]

logger = logging.getLogger(__name__)

# After the grace: time to send the cut requests their endings. With closing the
# orchestrator after it, the process is gone within a second of the grace (README).
FLUSH_S = 0.5
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmo-serve",
        description="Serve mmo_magic's orchestrator over HTTP (OpenAI-compatible).",
        epilog=f"Client keys: {KEYS_ENV}=key1,key2, or keys with identities made with "
        "'mmo-serve keys add NAME' (needed for any host but loopback).",
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
        "--allowed-host", action="append", default=[], metavar="HOST",
        help="also answer requests whose Host is HOST or HOST:PORT ('*': any); without keys "
        "only localhost, 127.0.0.1 and [::1] are answered (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--max-concurrency", type=int, default=None, metavar="N",
        help="upstream calls in flight per provider and host (default: [concurrency] default, "
        "else 256)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``mmo-serve``: run the service with uvicorn until SIGINT or SIGTERM;
    ``mmo-serve keys ...`` manages client keys (``keys_cli``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["keys"]:
        return keys_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(None if args.config is None else [Path(args.config)]).server
    except ConfigError as exc:
        print(f"mmo-serve: {exc}", file=sys.stderr)
        return 2
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    if not 0 < port <= 65535:
        print(f"mmo-serve: --port must be 1-65535, got {port}.", file=sys.stderr)
        return 2
    for entry in args.allowed_host:
        if problem := allowed_host_problem(entry):
            print(f"mmo-serve: --allowed-host {problem}.", file=sys.stderr)
            return 2
    settings = dataclasses.replace(
        settings, host=host, port=port,
        cors_origins=(*settings.cors_origins, *args.cors_origin),
        allowed_hosts=(*settings.allowed_hosts, *args.allowed_host),
    )  # fmt: skip
    keys = client_keys(settings)
    try:
        path = store_path(args.config, args.runlog)
        store = None if path == ":memory:" else open_key_store(path)
    except MMOError as exc:
        print(f"mmo-serve: {exc}", file=sys.stderr)
        return 2
    live = store is not None and any(k.revoked_at is None for k in store.list_keys())
    if not keys and not live and not is_loopback(host):
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
        extra: dict[str, Any] = {} if args.runlog is None else {"runlog": args.runlog}
        if args.max_concurrency is not None:
            extra["max_concurrency_per_provider"] = args.max_concurrency
        orc = Orchestrator.from_config(args.config, **extra)
    except MMOError as exc:
        print(f"mmo-serve: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    access = "keys required" if keys or live else "no keys: loopback clients only"
    logger.info("serving %r; %s; run log %s", orc, access, orc.runs.path)
    app = create_app(orc, keys=keys, settings=settings, store=store)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=args.log_level,
        # The drain cuts what is left at the grace; uvicorn's own limit comes FLUSH_S after
        # it. Not rounded up to whole seconds (a 3 s grace waited 4 s): uvicorn hands it to
        # asyncio.timeout, which takes any number of seconds.
        timeout_graceful_shutdown=settings.graceful_shutdown_s + FLUSH_S,  # type: ignore[arg-type]
    )
    server = _draining_server(config, app.state.drain, settings.graceful_shutdown_s)
    # SIGINT or SIGTERM: stop gracefully (a second SIGINT: at once), as uvicorn would.
    handlers = {sig: signal.signal(sig, server.handle_exit) for sig in _STOP_SIGNALS}
    # SIGHUP: read the config again (models, deployments, what is served), between requests.
    handlers[signal.SIGHUP] = signal.signal(
        signal.SIGHUP, functools.partial(_reload_soon, app, args.config)
    )
    try:
        _serve_on_background_loop(server)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        orc.close()
        if store is not None:
            store.close()
    return 0 if server.started else 1


def _serve_on_background_loop(server: uvicorn.Server) -> None:
    """Serve on the background loop the orchestrator's calls run on, until ``server`` exits.

    Each request's ``acomplete`` then runs on the loop already running it: no hop between
    loops (two thread wake-ups a request). uvicorn listens for signals only on the main
    thread, so this thread takes them (``server.handle_exit``) and waits in short waits
    (``BackgroundLoop.wait``), so a signal's handler runs promptly.
    """

    async def serve() -> None:
        # uvicorn's failure to start (the port is taken) is logged, then a SystemExit: one
        # escaping a task would stop the loop, not this thread.
        with contextlib.suppress(SystemExit):
            await server.serve()

    background_loop.start(_fastest_loop())
    background_loop.wait(background_loop.submit(serve()))


def _draining_server(config: uvicorn.Config, drain: Drain, grace_s: float) -> uvicorn.Server:
    """A uvicorn server that starts ``drain`` as it starts shutting down."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            drain.begin(grace_s)
            await super().shutdown(sockets)

    return DrainingServer(config)


def _fastest_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when installed (the server extra brings it), as uvicorn would choose."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _reload_soon(app: Any, config: str | None, signum: int, frame: object) -> None:
    """On SIGHUP: reload on the server's loop, between steps of the requests under way."""
    background_loop.loop.call_soon_threadsafe(reload_config, app, config)
