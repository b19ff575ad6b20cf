"""A batch's progress in a plain script or terminal (issue 24 #7; issue 28 #4, #5, #11).

A script run in a terminal shows the text status block on stderr with no
``batch_view.install()`` and no IPython; at 80 columns no line wraps and each redraw
leaves exactly one block on screen (tmux is the terminal); judging shows its own row
at once and the clock keeps moving while a slow judge thinks; a stopped batch shows
no ETA and a running model is never "eta 0s".
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers import OPENAI_KEY_ENV, with_model_id

from mmo_magic.evaluation.progress import BatchStats
from mmo_magic.evaluation.text_progress import render_text

SCRIPT = """
import sys
import time
import mmo_magic as mmo

url, key_env = sys.argv[1], sys.argv[2]
names = ["a-rather-long-model-name-one", "a-rather-long-model-name-two"]
models = [
    mmo.ModelConfig("openai", "sim-fast?latency_ms=150", name=n, base_url=url,
                    api_key_env=key_env, max_retries=0)
    for n in names
]
with mmo.Orchestrator(models, runlog=":memory:") as orc:
    items = [{"question": f"q{i}"} for i in range(12)]
    result = orc.batch(items, names, concurrency=2)
    assert "IPython" not in sys.modules, "the terminal view must not need IPython"
print("FINISHED", len(result), flush=True)
# Stay alive until the test has read the screen: once a pane dies, tmux writes its own
# "Pane is dead" line at the bottom, which can scroll the status block up by a line.
time.sleep(60)
"""

tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (a real terminal)")


@tmux
def test_a_script_in_an_80_column_terminal_shows_one_status_block(sim, keys, tmp_path: Path):
    script = tmp_path / "batch_script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    # A tmux server of this test's own: no other test's session ending can stop it.
    tmux = ["tmux", "-L", f"mmo-batch-{time.monotonic_ns()}"]
    command = [sys.executable, str(script), sim.openai_base_url, OPENAI_KEY_ENV]
    env = [f"{OPENAI_KEY_ENV}={keys[OPENAI_KEY_ENV]}"]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "batch", "-x", "80", "-y", "30", "env", *env, *command],
        check=True,
    )
    try:
        screen = ""
        for _ in range(200):
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "batch"], capture_output=True, text=True
            ).stdout
            if "FINISHED" in screen:
                break
            time.sleep(0.1)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    assert "FINISHED 24" in screen, screen
    lines = [line for line in screen.splitlines() if line.strip()]
    headers = [line for line in lines if line.startswith("batch ")]
    assert len(headers) == 1 and headers[0].startswith("batch done: 24/24"), screen
    assert all(len(line) < 80 for line in lines), screen  # nothing wrapped
    model_lines = [line for line in lines if "a-rather-long-model-name" in line]
    assert len(model_lines) == 2 and all(line.endswith("done") for line in model_lines), screen


def test_lines_fit_the_width_and_the_bar_narrows_first():
    stats = BatchStats(worst_case_cost=0.00271)
    for name in ("a-rather-long-model-name-one", "judge a-rather-long-judge-name"):
        m = stats.model(name)
        m.total, m.done, m.cost = 400, 123, 0.000871
    text = render_text(stats, 79)
    assert all(len(line) <= 79 for line in text.splitlines()), text
    assert "123/400" in text and "█" in text


def test_a_stopped_batch_shows_no_eta_and_a_running_model_is_never_eta_0s():
    stats = BatchStats()
    m = stats.model("m")
    m.total, m.done, m.started, m.last = 100, 99, 0.0, 0.1  # 1 ms a call, one left
    assert render_text(stats).splitlines()[1].endswith("eta <1s")
    stats.phase = "stopped"
    line = render_text(stats).splitlines()[1]
    assert line.endswith("stopped") and "eta" not in line


def test_unpriced_cost_is_missing_not_zero(orc, sim):
    free = with_model_id(orc, "oa", "sim-fast", cost_per_1k_input=None, cost_per_1k_output=None)
    recorder = Recorder()
    orc.batch([{"question": "q"}], [free], progress=recorder, allow_unpriced=True)
    text = render_text(recorder.last)
    assert "$0.00" not in text and "failed · cost n/a · " in text.splitlines()[0], text


class Recorder:
    """Keeps what each call to the view saw: (phase, judges' total, elapsed)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []
        self.last = BatchStats()

    def start(self, stats: BatchStats) -> None:
        self.update(stats)

    def update(self, stats: BatchStats) -> None:
        judges = sum(m.total for n, m in stats.models.items() if n.startswith("judge "))
        self.seen.append((stats.phase, judges, render_text(stats).splitlines()[0]))
        self.last = stats

    def finish(self, stats: BatchStats) -> None:
        self.update(stats)


def test_judging_shows_the_judge_row_at_once_and_the_clock_moves(orc, sim):
    # A judge that takes 1.2 s a verdict: the first judging update already counts the
    # judge's calls, and the view is redrawn while the judge thinks (before: frozen at
    # "batch answering: 4/4 ... 2.9s" until the first verdict).
    slow_judge = with_model_id(orc, "an", "sim-fast?reply=judge&prefer=paris&latency_ms=1200")
    models = [with_model_id(orc, "oa", "sim-fast?reply=" + quote(r)) for r in ("Paris", "Lyon")]
    recorder = Recorder()
    orc.batch([{"question": "Capital of France?"}], models, judges=[slow_judge],
              progress=recorder)  # fmt: skip
    judging = [s for s in recorder.seen if s[0] == "judging"]
    assert judging and judging[0][1] == 1, recorder.seen  # one pair, its row from the start
    clocks = {header.rsplit("·", 1)[1] for _, _, header in judging}
    assert len(clocks) >= 3, judging  # the elapsed time moved while the judge thought
