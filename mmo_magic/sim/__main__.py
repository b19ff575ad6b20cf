"""``python -m mmo_magic.sim``: serve the simulated provider until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import threading

from .server import SimServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mmo_magic.sim",
        description="Serve a SIMULATED OpenAI/Anthropic-compatible provider (not a real model).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    args = parser.parse_args(argv)
    with SimServer(args.host, args.port) as sim:
        # One line, flushed, so a parent process can read the address.
        print(
            f"mmo_magic simulated provider (SIMULATED, not a real model) on {sim.base_url}"
            f" - OpenAI base_url {sim.openai_base_url}, Anthropic base_url"
            f" {sim.anthropic_base_url}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
