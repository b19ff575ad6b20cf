"""Batches on a real local Ray (two CPUs) against the simulated provider.

One Ray for the module: started with the test keys in its environment, as a
cluster would have them (workers read keys from their own environment).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import ANTHROPIC_KEY_ENV, OPENAI_KEY_ENV, arrivals, sim_models, with_model_id

import mmo_magic as mmo
from mmo_magic.evaluation import BatchStats

KEYS = {
    OPENAI_KEY_ENV: "sk-test-openai-000000000000",
    ANTHROPIC_KEY_ENV: "sk-ant-test-0000000000000",
}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="Ray is not installed")
    with pytest.MonkeyPatch.context() as env:
        for name, value in KEYS.items():
            env.setenv(name, value)  # before the workers start: they inherit it
        try:
            ray.init(
                num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
                logging_level="WARNING",
            )  # fmt: skip
        except Exception as exc:  # any reason Ray cannot start here
            pytest.skip(f"Ray cannot start here: {exc}")
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.fixture
def orc(ray_cluster, sim, keys) -> Iterator[mmo.Orchestrator]:  # type: ignore[no-untyped-def]
    with mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:", cache=False) as o:
        yield o


def items(n: int) -> list[dict[str, Any]]:
    return [{"question": f"Question number {i}: say something."} for i in range(n)]


def batch_records(orc: mmo.Orchestrator, group_id: str) -> list[mmo.RunRecord]:
    return [r for r in orc.runs.records(group_id=group_id) if r.kind == "batch"]


class Recorder:
    """A progress view that keeps what it was shown; ``at(n, action)`` acts once n are done."""

    def __init__(self) -> None:
        self.updates: list[int] = []
        self.phases: list[str] = []
        self.finished: BatchStats | None = None
        self.done = threading.Event()
        self._action: tuple[int, Any] | None = None

    def at(self, done: int, action: Any) -> None:
        self._action = (done, action)

    def start(self, stats: BatchStats) -> None:
        self.phases.append(stats.phase)

    def update(self, stats: BatchStats) -> None:
        self.updates.append(stats.done)
        self.phases.append(stats.phase)
        if self._action is not None and stats.done >= self._action[0]:
            action, self._action = self._action[1], None
            action()

    def finish(self, stats: BatchStats) -> None:
        self.finished = stats
        self.done.set()


def test_a_ray_batch_answers_like_the_local_one_and_logs_every_call_once(orc, sim):
    echo = with_model_id(orc, "oa", "sim-echo")
    models = [echo, "an"]
    data = items(300)
    local = orc.batch(data, models, progress=False)
    sim.reset()
    recorder = Recorder()
    with mmo.Orchestrator(list(orc.catalogue), runlog=":memory:", cache=False) as other:
        on_ray = other.batch(data, models, engine="ray", workers=2, progress=recorder)
        assert sim.request_count() == 600  # every pair sent once
        assert on_ray.wide().equals(local.wide())
        assert {r["status"] for r in on_ray.rows} == {"ok"}
        records = batch_records(other, on_ray.group_id)
        assert len(records) == 600 and len({r.run_id for r in records}) == 600
        assert len({(r.step, r.requested_model) for r in records}) == 600
        assert {r.session_id for r in records} == {other.session_id}
        assert [r["run_id"] for r in on_ray.rows] != [None] * 600
    assert recorder.finished is not None and recorder.finished.phase == "done"
    assert recorder.finished.done == recorder.finished.total == 600
    assert any(phase.startswith("starting") for phase in recorder.phases)
    assert recorder.updates == sorted(recorder.updates)  # progress only goes forward


def test_scorers_on_ray_score_on_the_driver_like_here(orc, sim):
    from mmo_magic.evaluation import scorers

    echo = with_model_id(orc, "oa", "sim-echo")
    data = [{"question": f"Say {i}", "expect": f"Say {i}" if i % 2 else "nothing"}
            for i in range(6)]  # fmt: skip
    checks = [scorers.exact("expect"), lambda answer, item: len(answer) > 0]
    on_ray = orc.batch(data, [echo], engine="ray", workers=2, scorers=checks, progress=False)
    board = on_ray.leaderboard()
    assert board.loc[echo, "exact"] == 0.5 and board.loc[echo, "exact_items"] == 6
    assert board.loc[echo, "<lambda>"] == 1.0
    with pytest.raises(mmo.ConfigError, match="epochs > 1 runs on this process"):
        orc.batch(data, [echo], engine="ray", epochs=2, progress=False)


def test_judging_on_ray_matches_judging_here(orc, sim):
    from urllib.parse import quote

    good = with_model_id(orc, "oa", "sim-fast?reply=" + quote("Paris is the capital of France."))
    bad = with_model_id(orc, "lo", "sim-fast?reply=" + quote("Lyon, I think."))
    judge = with_model_id(orc, "an", "sim-fast?reply=judge&prefer=paris")
    data = [{"question": f"Capital of France? ({i})"} for i in range(6)]
    local = orc.batch(data, [bad, good], judges=[judge], progress=False)
    with mmo.Orchestrator(list(orc.catalogue), runlog=":memory:", cache=False) as other:
        on_ray = other.batch(data, [bad, good], judges=[judge], engine="ray", workers=2,
                           progress=False)  # fmt: skip
    assert len(on_ray.judgements) == len(local.judgements) == 6
    assert {j["winner"] for j in on_ray.judgements} == {good}
    assert on_ray.leaderboard().index[0] == good


def test_judge_calls_on_ray_pass_the_judges_one_rate_limit_each(orc, sim):
    """Issue 24, defect 1 on Ray: both orders of every pair pass the shared limiter."""
    from urllib.parse import quote

    good = with_model_id(orc, "oa", "sim-fast?reply=" + quote("Paris is the capital of France."))
    bad = with_model_id(orc, "lo", "sim-fast?reply=" + quote("Lyon, I think."))
    judge = with_model_id(orc, "an", "sim-fast?reply=judge&prefer=paris")
    data = [{"question": f"Capital of France? ({i})"} for i in range(6)]
    with arrivals(sim, "sim-fast?reply=judge&prefer=paris") as times:
        result = orc.batch(
            data, [bad, good], judges=[judge], engine="ray", workers=2, progress=False,
            limits={judge: {"requests_per_minute": 240}},
        )  # fmt: skip
    assert len(result.judgements) == 6 and len(times) == 12
    # 240 a minute is one every 0.25 s: 12 calls span 2.75 s (a stalled first call may
    # let one catch up). Passing the gate once per pair, they spanned about 1.25 s.
    assert times[-1] - times[0] >= 2.2, times[-1] - times[0]


def test_the_orchestrators_budget_holds_across_all_workers(orc, sim):
    # The budget pays for about 20 of the 200 calls; two workers with a budget each would
    # send about 40.
    costs = [orc.complete("Question number 1: say something.", m, max_tokens=20).cost or 0
             for m in ("oa", "an")]  # fmt: skip
    assert min(costs) > 0
    sim.reset()
    budget = max(costs) * 20.5
    with mmo.Orchestrator(list(orc.catalogue), runlog=":memory:", cache=False,
                          budget=budget) as capped:  # fmt: skip
        result = capped.batch(items(100), ["oa", "an"], max_tokens=20, engine="ray", workers=2,
                              concurrency=8, progress=False)  # fmt: skip
        sent = sim.request_count()
        records = batch_records(capped, result.group_id)
        spent = sum(r.cost or 0 for r in records)
        assert 0 < sent <= budget // min(costs)
        assert spent <= budget and capped.budget.spent == pytest.approx(spent)
        refused = [r for r in result.rows if r["status"] != "ok"]
        assert len(refused) == 200 - sent
        assert all("budget" in r["error"] for r in refused)


def test_a_rate_limit_is_one_limit_for_all_workers(orc, sim):
    limited = with_model_id(orc, "oa", "sim-fast?tokens=2")
    result = orc.batch(
        items(9), [limited], limits={limited: {"requests_per_minute": 120}},
        engine="ray", workers=2, progress=False,
    )  # fmt: skip
    starts = sorted(r.started_at.timestamp() for r in batch_records(orc, result.group_id))
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert rate <= 2.0 * 1.25  # 120 per minute in all: two limits would allow 4 a second


def named_workers(ray: Any) -> list[Any]:
    names = [n for n in ray.util.list_named_actors() if n.startswith("mmo-batch-")]
    return [ray.get_actor(n) for n in sorted(names) if not n.endswith("-limits")]


def test_a_worker_that_dies_loses_only_its_calls_in_flight(orc, sim, ray_cluster):
    slow = [with_model_id(orc, m, "sim-fast?latency_ms=40") for m in ("oa", "an")]
    data = items(120)
    killed: list[Any] = []

    def kill_one() -> None:
        worker = named_workers(ray_cluster)[0]
        killed.append(worker)
        ray_cluster.kill(worker)

    recorder = Recorder()
    recorder.at(60, kill_one)
    result = orc.batch(data, slow, engine="ray", workers=2, concurrency=8, progress=recorder)
    assert killed
    assert {r["status"] for r in result.rows} == {"ok"}
    ok = [r for r in batch_records(orc, result.group_id) if r.status == "ok"]
    assert len(ok) == 240 and len({(r.step, r.requested_model) for r in ok}) == 240
    # Sent twice: only what the dead worker had in flight (its 4 slots), or had finished
    # but not yet reported (it reports every 20 ms), never its shards again.
    assert 240 <= sim.request_count() <= 240 + 3 * 4  # a shard is 16 calls, a worker's 32


def interrupt(orc: mmo.Orchestrator, data: list[dict[str, Any]], models: list[str],
              **options: Any) -> int:  # fmt: skip
    """Start a batch, stop it once 40 answers are in, and return how many are ok in the log."""
    recorder = Recorder()
    future = orc._loop.submit(orc.abatch(data, models, progress=recorder, **options))
    deadline = time.monotonic() + 60
    while (not recorder.updates or recorder.updates[-1] < 40) and time.monotonic() < deadline:
        time.sleep(0.005)
    future.cancel()
    assert recorder.done.wait(20)
    assert recorder.finished is not None and recorder.finished.phase == "stopped"
    return sum(r.status == "ok" for r in orc.runs.records() if r.kind == "batch")


@pytest.mark.parametrize(("first", "then"), [("ray", None), (None, "ray")])
def test_a_stopped_batch_resumes_on_the_other_engine_sending_only_what_is_missing(
    orc, sim, first, then
):
    slow = [with_model_id(orc, m, "sim-fast?latency_ms=50") for m in ("oa", "an")]
    data = items(60)
    ray_options = {"workers": 2}
    ok_before = interrupt(orc, data, slow, concurrency=8,
                          **({"engine": "ray", **ray_options} if first else {}))  # fmt: skip
    assert 40 <= ok_before < 120
    time.sleep(0.5)  # nothing is sent after a stop
    sent_before = sim.request_count()
    time.sleep(0.3)
    assert sim.request_count() == sent_before

    result = orc.batch(data, slow, concurrency=8, progress=False,
                       **({"engine": "ray", **ray_options} if then else {}))  # fmt: skip
    frame = result.to_dataframe()
    assert set(frame["status"]) == {"ok"} and len(frame) == 120
    assert int(frame["resumed"].sum()) == ok_before
    assert sim.request_count() - sent_before == 120 - ok_before
    ok = [r for r in batch_records(orc, result.group_id) if r.status == "ok"]
    assert len(ok) == 120 and len({(r.step, r.requested_model) for r in ok}) == 120


def test_a_key_set_here_but_not_on_the_workers_is_a_config_error(orc, sim, monkeypatch):
    monkeypatch.setenv("MMO_TEST_LATE_KEY", "sk-test-late-0000000000")  # after Ray started
    orc.add_model(orc.catalogue.resolve("oa").replace(name="late", api_key_env="MMO_TEST_LATE_KEY"))
    with pytest.raises(mmo.ConfigError, match="MMO_TEST_LATE_KEY is set here but not on the Ray"):
        orc.batch(items(4), ["late"], engine="ray", workers=1, progress=False)
    assert sim.request_count() == 0


def test_without_ray_installed_engine_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray looks like
    orc = mmo.Orchestrator([], runlog=":memory:", cache=False)
    with pytest.raises(mmo.ConfigError, match=r"pip install 'mmo_magic\[ray\]'"):
        orc.batch(items(2), ["oa"], engine="ray")


def test_engine_options_are_checked_before_anything_runs():
    with mmo.Orchestrator([], runlog=":memory:", cache=False) as orc:
        with pytest.raises(mmo.ConfigError, match="Unknown batch engine 'spark'"):
            orc.batch(items(2), ["oa"], engine="spark")
        with pytest.raises(mmo.ConfigError, match="only apply to engine='ray'"):
            orc.batch(items(2), ["oa"], workers=2)
        with pytest.raises(mmo.ConfigError, match="cache"):
            orc.batch(items(2), ["oa"], engine="ray", cache=True)


def test_importing_the_package_does_not_import_ray():
    import subprocess

    code = "import sys, mmo_magic.evaluation.ray.driver; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ}, check=True)  # fmt: skip
    assert done.stdout.strip() == "False"
