"""Streaming into widgets: 8 live panels at 200 tokens/s each, headless.

    python benchmarks/widgets.py [--tokens 600] [--rounds 3]

``Orchestrator.all`` streams 8 simulated models (``--tokens`` words each at
200 tokens/s, so 3 s per answer by default) into a ``RaceView``, wired as
``%mmo_race`` wires it. There is no browser: every comm message a widget
would send to the frontend is counted instead (``comm.create_comm`` is
replaced by a comm that records them), which is what the browser would
receive. Per panel: update messages for its text (the ``body`` widget) per
second of streaming, and whether its final text equals the recorded
response and the deltas streamed (a lost or repeated token shows there).
CPU time per token is the thread CPU time spent inside the view's code (its
callbacks and the throttle's timer flushes, comm messages included) over the
tokens shown. The simulated provider runs in a process of its own.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, ClassVar

import comm
from _common import Check, median, print_checks, print_table, save, sim_process
from comm.base_comm import BaseComm

import mmo_magic as mmo
from mmo_magic.notebook.widgets import RaceView, _Panel

KEY_ENV = "MMO_BENCH_SIM_KEY"
os.environ.setdefault(KEY_ENV, "sim-benchmark-key")
PANELS, TPS = 8, 200
PROMPT = "Tell a long story."


class CountingComm(BaseComm):
    """A frontend-less comm that counts the messages a widget sends (by comm id)."""

    sent: ClassVar[Counter[str]] = Counter()

    def publish_msg(
        self,
        msg_type: str,
        data: Any = None,
        metadata: Any = None,
        buffers: Any = None,
        **keys: Any,
    ) -> None:
        if msg_type == "comm_msg":
            CountingComm.sent[self.comm_id] += 1


class Stopwatch:
    """CPU time spent inside the view's own code (every entry point, timer flushes included).

    Thread CPU time: the callbacks run on the loop thread and on timer threads,
    and a wait for the GIL or a lock is not the view's work.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, action: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return action(*args, **kwargs)
            finally:
                self.seconds += time.thread_time() - start

        return timed


def run(
    orc: mmo.Orchestrator, names: list[str], view: RaceView, watch: Stopwatch
) -> tuple[list[mmo.CompletionResponse], dict[str, str]]:
    streamed: dict[str, list[str]] = defaultdict(list)
    view_text, view_finish = watch.wrap(view.on_text), watch.wrap(view.on_finish)

    def on_text(model: str, delta: str) -> None:
        streamed[model].append(delta)
        view_text(model, delta)

    results = orc.all(PROMPT, models=names, on_text=on_text, on_result=view_finish)
    watch.wrap(view.finish)(None)
    return results, {m: "".join(parts) for m, parts in streamed.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    comm.create_comm = CountingComm  # every widget made from here on counts its messages

    rows: list[dict[str, Any]] = []
    lost = 0
    watch = Stopwatch()
    # Text held back by the throttle is pushed from a timer: time those flushes too.
    _Panel.flush = watch.wrap(_Panel.flush)  # type: ignore[method-assign]
    with sim_process() as base_url:
        configs = [
            mmo.ModelConfig(
                "openai",
                f"sim-fast?tokens={args.tokens}&tps={TPS}",
                name=f"panel{i}",
                base_url=base_url,
                api_key_env=KEY_ENV,
                max_retries=0,
            )
            for i in range(PANELS)
        ]
        names = [c.name for c in configs]
        with mmo.Orchestrator(
            configs, runlog=":memory:", cache=False, max_concurrency_per_provider=PANELS
        ) as orc:
            run(orc, names, RaceView(names), Stopwatch())  # warm-up
            for _ in range(args.rounds):
                view = RaceView(names)
                CountingComm.sent.clear()
                results, streamed = run(orc, names, view, watch)
                state = view.state()
                for name, result in zip(names, results, strict=True):
                    assert result.ok, result.error
                    panel = view._panels[name]
                    updates = CountingComm.sent[panel.body.comm.comm_id]
                    seconds = result.latency_ms / 1000
                    text_ok = state[name]["text"] == result.content == streamed[name]
                    lost += not text_ok
                    rows.append(
                        {
                            "panel": name,
                            "tokens": result.output_tokens,
                            "seconds": seconds,
                            "updates": updates,
                            "updates_per_s": updates / seconds,
                            "text_exact": text_ok,
                        }
                    )
    tokens = sum(r["tokens"] for r in rows)
    view_us_per_token = watch.seconds / tokens * 1e6
    per_panel = [r["updates_per_s"] for r in rows]
    print_table(
        f"{PANELS} panels, {args.tokens} tokens each at {TPS} tokens/s,"
        f" {args.rounds} rounds (last round shown)",
        ("panel", "tokens", "seconds", "text updates", "updates/s", "final text exact"),
        [tuple(r.values()) for r in rows[-PANELS:]],
    )
    checks = [
        Check(
            "widget updates per panel per second, max",
            max(per_panel),
            "/s",
            "<= 20",
            max(per_panel) <= 20,
            f"median {median(per_panel):.1f}/s",
        ),
        Check(
            "panels whose final text lost or repeated tokens",
            lost,
            "",
            "0",
            lost == 0,
            f"{len(rows)} panels, {tokens:,} tokens",
        ),
        Check(
            "view's CPU time per token",
            view_us_per_token,
            "µs",
            "",
            None,
            f"{view_us_per_token * PANELS * TPS / 1e4:.1f}% of a core at {PANELS}x{TPS} tokens/s",
        ),
    ]
    print_checks(checks)
    save("widgets", vars(args), rows, checks)


if __name__ == "__main__":
    main()
