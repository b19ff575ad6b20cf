"""Batches over the simulated provider: rows per (item, model), failures, budget, resume, limits."""

from __future__ import annotations

import io
import json
import threading
import time
from urllib.parse import quote

import pandas as pd
import pytest
from helpers import with_model_id

import mmo_magic as mmo
from mmo_magic.evaluation import BatchStats

QUESTIONS = [{"question": f"What is {i} plus {i}?", "topic": "maths", "n": i} for i in range(4)]


class Recorder:
    """A progress view that keeps what it was shown."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.updates: list[int] = []
        self.finished: BatchStats | None = None

    def start(self, stats: BatchStats) -> None:
        self.started.set()

    def update(self, stats: BatchStats) -> None:
        self.updates.append(stats.done)

    def finish(self, stats: BatchStats) -> None:
        self.finished = stats


def batch_records(orc: mmo.Orchestrator, result) -> list[mmo.RunRecord]:  # type: ignore[no-untyped-def]
    return [r for r in orc.runs.records(group_id=result.group_id) if r.kind == "batch"]


def test_one_row_per_item_and_model_with_the_item_columns(orc, sim):
    echo = with_model_id(orc, "oa", "sim-echo")
    result = orc.batch(QUESTIONS, [echo, "an", "lo"], prompt="Topic {topic}: {question}")
    frame = result.to_dataframe()
    assert len(frame) == 12 and sim.request_count() == 12
    assert list(frame.columns[:3]) == ["question", "topic", "n"]
    assert set(frame["status"]) == {"ok"}
    answers = frame[frame["model"] == echo].set_index("n")["answer"]
    for i in range(4):  # the echo model repeats the rendered template
        assert answers[i] == f"Topic maths: What is {i} plus {i}?"
    assert frame["input_tokens"].notna().all() and (frame["cost"] > 0).all()
    assert frame["latency_ms"].notna().all() and frame["ttft_ms"].notna().all()
    assert (frame["attempts"] == 1).all() and not frame["cached"].any()
    wide = result.wide()
    assert wide.shape == (4, 3) and list(wide.columns) == [echo, "an", "lo"]
    summary = result.summary()
    assert summary.loc["an", "ok"] == 4 and summary.loc["an", "failed"] == 0
    assert summary.loc["lo", "cost"] == pytest.approx(frame[frame["model"] == "lo"]["cost"].sum())


def test_failures_are_rows_and_a_call_fails_over_like_a_single_call(orc, sim):
    broken = with_model_id(orc, "oa", "sim-fast?fail=500")
    covered = with_model_id(orc, "an", "sim-fast?fail=503", fallbacks=("lo",))
    result = orc.batch(QUESTIONS, [broken, covered, "lo"])
    frame = result.to_dataframe().set_index(["n", "model"])
    for i in range(4):
        row = frame.loc[(i, broken)]
        assert row["status"] == "error" and "500" in row["error"] and pd.isna(row["answer"])
        fell_back = frame.loc[(i, covered)]
        assert fell_back["status"] == "ok" and fell_back["answered_by"] == "lo"
        assert fell_back["attempts"] == 2
    assert result.summary().loc[broken, "failed"] == 4
    assert sim.request_count("sim-fast?fail=500") == 4


def test_data_from_a_dataframe_csv_jsonl_or_parquet(orc, sim, tmp_path):
    frame = pd.DataFrame(QUESTIONS)
    frame.to_csv(tmp_path / "q.csv", index=False)
    frame.to_parquet(tmp_path / "q.parquet")
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(q) for q in QUESTIONS))
    answers = []
    for data in (frame, tmp_path / "q.csv", str(tmp_path / "q.jsonl"), tmp_path / "q.parquet"):
        result = orc.batch(data, ["oa"], rerun="all")
        answers.append(result.to_dataframe()["answer"].tolist())
    assert all(a == answers[0] for a in answers) and len(answers[0]) == 4


def test_a_missing_column_is_a_template_error_before_any_request(orc, sim):
    with pytest.raises(mmo.TemplateError, match="questoin"):
        orc.batch(QUESTIONS, ["oa", "an"], prompt="{questoin}")
    assert sim.request_count() == 0


def test_braces_in_item_values_are_data_not_template(orc, sim):
    echo = with_model_id(orc, "oa", "sim-echo")
    result = orc.batch([{"question": "keep {topic} and {{x}}"}], [echo])
    assert result.rows[0]["answer"] == "keep {topic} and {{x}}"


def test_over_budget_is_refused_before_anything_is_sent(orc, sim):
    models = ["oa", "an", "lo"]
    worst = orc.estimate_batch(QUESTIONS, models, max_tokens=500)
    total = sum(worst.values())  # type: ignore[arg-type]
    # Worst case: input tokens plus 500 output tokens per call at $0.006/1k.
    assert total > 12 * 500 * 0.006 / 1000
    with pytest.raises(mmo.BudgetExceededError, match="Nothing was sent") as caught:
        orc.batch(QUESTIONS, models, max_tokens=500, budget=total * 0.9)
    assert caught.value.estimate == pytest.approx(total)
    assert sim.request_count() == 0
    # Within budget it runs, and what it spent stays under the worst case.
    result = orc.batch(QUESTIONS, models, max_tokens=500, budget=total * 1.01)
    assert sim.request_count() == 12
    assert 0 < result.cost <= result.worst_case_cost == pytest.approx(total)


def test_judges_count_in_the_worst_case(orc, sim):
    judge = with_model_id(orc, "an", "sim-fast?reply=judge&prefer=x")
    alone = sum(orc.estimate_batch(QUESTIONS, ["oa", "lo"]).values())  # type: ignore[arg-type]
    judged = orc.estimate_batch(QUESTIONS, ["oa", "lo"], judges=[judge])
    assert judged[f"judge {judge}"] > 0 and sum(judged.values()) > alone  # type: ignore[arg-type]
    with pytest.raises(mmo.BudgetExceededError):
        orc.batch(QUESTIONS, ["oa", "lo"], judges=[judge], budget=alone * 1.01)
    assert sim.request_count() == 0


def test_an_unpriced_model_under_a_budget_is_refused_unless_allowed(orc, sim):
    orc.add_model(orc.catalogue.resolve("lo").replace(name="free", cost_per_1k_input=None,
                                                      cost_per_1k_output=None))  # fmt: skip
    with pytest.raises(mmo.BudgetExceededError, match="free"):
        orc.batch(QUESTIONS, ["oa", "free"], budget=1.0)
    assert sim.request_count() == 0
    result = orc.batch(QUESTIONS, ["oa", "free"], budget=1.0, allow_unpriced=True)
    assert {r["status"] for r in result.rows} == {"ok"}


def test_rerunning_a_batch_sends_nothing_already_answered(orc, sim):
    first = orc.batch(QUESTIONS, ["oa", "an"])
    sent = sim.request_count()
    again = orc.batch(QUESTIONS, ["oa", "an"])
    assert sim.request_count() == sent == 8
    assert again.to_dataframe()["resumed"].all()
    assert again.wide().equals(first.wide())
    # Other parameters are another batch; a new item is the only new call.
    orc.batch(QUESTIONS, ["oa", "an"], max_tokens=5)
    assert sim.request_count() == 16
    orc.batch([*QUESTIONS, {"question": "new?", "topic": "t", "n": 9}], ["oa", "an"])
    assert sim.request_count() == 18


def test_rerun_failed_retries_only_the_failures(orc, sim):
    flaky = with_model_id(orc, "oa", "sim-fast?fail=500&fail_times=2")
    first = orc.batch(QUESTIONS, [flaky, "an"], concurrency=1)
    assert [r["status"] for r in first.rows].count("error") == 2
    again = orc.batch(QUESTIONS, [flaky, "an"])  # resume: failures stay rows
    assert sim.request_count() == 8 and [r["status"] for r in again.rows].count("error") == 2
    fixed = orc.batch(QUESTIONS, [flaky, "an"], rerun="failed")
    assert sim.request_count() == 10
    assert {r["status"] for r in fixed.rows} == {"ok"}
    assert sum(not r["resumed"] for r in fixed.rows) == 2


def test_an_interrupted_batch_resumes_and_answers_each_pair_ok_exactly_once(orc, sim):
    slow = [with_model_id(orc, m, "sim-fast?latency_ms=100") for m in ("oa", "an")]
    items = [{"question": f"question number {i}"} for i in range(20)]
    recorder = Recorder()
    future = orc._loop.submit(orc.abatch(items, slow, concurrency=4, progress=recorder))
    deadline = time.monotonic() + 10
    while (not recorder.updates or recorder.updates[-1] < 8) and time.monotonic() < deadline:
        time.sleep(0.005)
    future.cancel()
    time.sleep(0.3)  # the cancelled calls record themselves
    assert recorder.finished is not None and recorder.finished.phase == "stopped"
    sent_before = sim.request_count()
    ok_before = sum(r.status == "ok" for r in orc.runs.records() if r.kind == "batch")
    assert 8 <= ok_before < 40

    result = orc.batch(items, slow, concurrency=4)
    frame = result.to_dataframe()
    assert set(frame["status"]) == {"ok"} and len(frame) == 40
    assert int(frame["resumed"].sum()) == ok_before
    assert sim.request_count() - sent_before == 40 - ok_before  # only what was missing
    ok = [r for r in batch_records(orc, result) if r.status == "ok"]
    assert len(ok) == 40 and len({(r.step, r.requested_model) for r in ok}) == 40


def warm(orc: mmo.Orchestrator, sim, *models: str) -> None:  # type: ignore[no-untyped-def]
    """Load the SDKs before a timed batch: a first import blocks the loop for a while."""
    for model in models:
        orc.complete("warm up", model)
    sim.reset()


def assert_paced(starts: list[float], begun: float, per_second: float) -> None:
    """The k-th request started no sooner than k intervals after the batch began (a late
    machine only delays starts, so this holds however loaded it is), and the limiter did
    not hold them far longer than the rate asks."""
    interval = 1 / per_second
    assert all(s - begun >= k * interval - 0.02 for k, s in enumerate(starts)), (begun, starts)
    assert (len(starts) - 1) / (starts[-1] - starts[0]) >= per_second / 2


def test_requests_per_minute_is_honoured(orc, sim):
    limited = with_model_id(orc, "oa", "sim-fast?tokens=2")
    warm(orc, sim, "oa", "an")
    begun = time.time()
    result = orc.batch(
        [{"question": f"q{i}"} for i in range(7)], [limited, "an"],
        limits={limited: {"requests_per_minute": 120}},
    )  # fmt: skip
    records = batch_records(orc, result)
    starts = sorted(r.started_at.timestamp() for r in records if r.requested_model == limited)
    assert_paced(starts, begun, per_second=2.0)  # 120 per minute
    others = [r.finished_at.timestamp() for r in records if r.requested_model == "an"]
    assert max(others) < starts[-1] - 1.0  # the unlimited model did not wait for it


def test_a_models_own_requests_per_minute_applies_when_the_call_names_none(orc, sim):
    limited = with_model_id(orc, "oa", "sim-fast?tokens=2", requests_per_minute=120)
    warm(orc, sim, "oa")
    begun = time.time()
    result = orc.batch([{"question": f"q{i}"} for i in range(5)], [limited])
    starts = sorted(r.started_at.timestamp() for r in batch_records(orc, result))
    assert_paced(starts, begun, per_second=2.0)


def test_max_concurrency_per_model(orc, sim):
    slow = with_model_id(orc, "oa", "sim-fast?latency_ms=50")
    started = time.perf_counter()
    orc.batch([{"question": f"q{i}"} for i in range(6)], [slow],
              limits={slow: {"max_concurrency": 1}}, concurrency=6)  # fmt: skip
    assert time.perf_counter() - started >= 6 * 0.05


def test_a_429_pauses_only_that_model_and_honours_retry_after(orc, sim):
    limited = with_model_id(orc, "oa", "sim-fast?fail=429&fail_times=2&retry_after=1")
    warm(orc, sim, "oa", "an")
    items = [{"question": f"q{i}"} for i in range(3)]
    result = orc.batch(items, [limited, "an"], concurrency=1)
    assert {r["status"] for r in result.rows} == {"ok"}
    assert sim.request_count("sim-fast?fail=429&fail_times=2&retry_after=1") == 5
    records = batch_records(orc, result)
    throttled = [r for r in records if r.requested_model == limited and r.status == "error"]
    assert len(throttled) == 2
    first_429 = min(r.finished_at.timestamp() for r in throttled)
    sent = [r.started_at.timestamp() for r in records if r.requested_model == limited]
    retried = [t for t in sent if t > first_429]
    assert retried and min(retried) - first_429 >= 0.95  # Retry-After: 1
    others = [r.finished_at.timestamp() for r in records if r.requested_model == "an"]
    assert max(others) < max(sent)  # the other model never waited for the pauses
    assert result.stats is not None and result.stats.models[limited].throttled == 2


def quoted(reply: str) -> str:
    return "sim-fast?reply=" + quote(reply)


def test_pairwise_judging_exposes_a_position_biased_judge(orc, sim):
    good = with_model_id(orc, "oa", quoted("Paris is the capital of France."))
    bad = with_model_id(orc, "lo", quoted("Lyon, I think."))
    fair = with_model_id(orc, "an", "sim-fast?reply=judge&prefer=paris")
    biased = with_model_id(orc, "an", quoted('{"winner": "A", "reason": "the first"}'))
    items = [{"question": f"Capital of France? ({i})"} for i in range(3)]
    result = orc.batch(items, [bad, good], judges=[fair, biased])
    judged = result.judgements_frame()
    assert len(judged) == 6  # 3 items x 1 pair x 2 judges, each asked in both orders
    assert sim.request_count("sim-fast?reply=judge&prefer=paris") == 6
    by_judge = judged.groupby("judge")
    assert set(by_judge.get_group(fair)["winner"]) == {good}
    biased_rows = by_judge.get_group(biased)
    assert set(biased_rows["first"]) == {bad} and set(biased_rows["swapped"]) == {good}
    assert set(biased_rows["winner"]) == {"tie"}  # the swap turns its vote into a tie
    bias = result.bias()
    assert bias.loc[biased, "position_bias_rate"] == 1.0
    assert bias.loc[biased, "first_position_rate"] == 1.0
    assert bias.loc[fair, "position_bias_rate"] == 0.0
    assert bias.loc[fair, "first_position_rate"] == 0.5
    assert result.agreement()["agreement"].tolist() == [0.0]
    board = result.leaderboard()
    assert board.index[0] == good and board.loc[good, "wins"] == 3
    assert board.loc[good, "ties"] == 3 and board.loc[bad, "losses"] == 3
    # Judgements are resumed too.
    count = sim.request_count()
    orc.batch(items, [bad, good], judges=[fair, biased])
    assert sim.request_count() == count


def test_grading_with_a_reference_answer(orc, sim):
    from mmo_magic.core.completion import StreamEnd
    from mmo_magic.providers import register_function

    seen: list[str] = []

    def grader(request):  # type: ignore[no-untyped-def]
        """Grades 9 when the candidate holds the reference's first word, else 2."""
        system, user = request.messages[0].content, request.messages[-1].content
        seen.append(system)
        reference = json.loads(system.split("reference answer, written")[1].split("is: ")[1]
                               .split(" Judge")[0].rstrip("."))  # fmt: skip
        candidate = user.split("CANDIDATE A")[1]
        score = 9 if reference.split()[0].lower() in candidate.lower() else 2
        return [json.dumps({"winner": "A", "scores": {"A": score}, "reason": "graded"}),
                StreamEnd("stop", 10, 5)]  # fmt: skip

    register_function("grader", grader)
    orc.add_model(mmo.ModelConfig("function", "grader", name="grader"))
    right = with_model_id(orc, "oa", quoted("It is Paris."))
    wrong = with_model_id(orc, "lo", quoted("It is Rome."))
    items = [{"question": "Capital of France?", "answer": "Paris"},
             {"question": "Capital of Italy?", "answer": "Rome"}]  # fmt: skip
    result = orc.batch(items, [right, wrong], judges=["grader"], judge_mode="grade",
                       reference_column="answer")  # fmt: skip
    grades = result.judgements_frame().set_index(["item", "model"])["score"]
    assert grades[(0, right)] == 9 and grades[(0, wrong)] == 2
    assert grades[(1, right)] == 2 and grades[(1, wrong)] == 9
    assert all("1 to 10" in s for s in seen)
    board = result.leaderboard()
    assert board.loc[right, "rating"] == pytest.approx(5.5)


def test_progress_is_told_every_result(orc, sim):
    recorder = Recorder()
    orc.batch(QUESTIONS, ["oa", "an"], progress=recorder)
    assert recorder.finished is not None and recorder.finished.phase == "done"
    stats = recorder.finished
    assert stats.done == 8 and stats.total == 8 and stats.failed == 0
    assert stats.models["oa"].eta_s == 0.0 and stats.cost > 0


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_progress_shows_done_failed_cost_and_eta_per_model(orc, sim):
    from mmo_magic.evaluation.text_progress import TextProgress

    broken = with_model_id(orc, "oa", "sim-fast?fail=500&fail_times=1")
    out = io.StringIO()  # not a terminal: one block at the start, one at the end
    orc.batch(QUESTIONS, [broken, "an"], concurrency=1, progress=TextProgress(out))
    blocks = out.getvalue().split("batch ")[1:]
    assert len(blocks) == 2 and "\x1b[" not in out.getvalue()
    final = blocks[-1].splitlines()
    assert final[0].startswith("done: 8/8 · 1 failed · $0.000")
    bar = next(line for line in final if line.strip().startswith(broken))
    assert "4/4 · 1 failed · $0.000" in bar and bar.endswith("done")
    assert "████" in bar

    term = Terminal()
    view = TextProgress(term, interval_s=0)
    orc.batch(QUESTIONS, ["lo"], progress=view)
    text = term.getvalue()
    assert text.count("\x1b[2F\x1b[J") >= 2  # each redraw goes back over its two lines
    assert text.rstrip().endswith("done")


def test_text_progress_eta_follows_each_models_pace():
    from mmo_magic.evaluation.text_progress import render_text

    stats = BatchStats()
    fast, slow = stats.model("fast"), stats.model("slow")
    fast.total = slow.total = 10
    fast.done, fast.started, fast.last = 5, 0.0, 5.0  # 1 s per call, 5 left
    slow.done, slow.started, slow.last, slow.cost = 2, 0.0, 20.0, 0.0123
    slow.failed = 1
    lines = render_text(stats).splitlines()
    assert lines[1].split()[0] == "fast" and lines[1].endswith("eta 5s")
    assert "2/10 · 1 failed · $0.0123 · eta 1m20s" in lines[2]


async def test_tokens_per_minute_waits_for_the_bucket_to_drain():
    from mmo_magic.evaluation.limits import Limits

    gate = Limits({"m": {"tokens_per_minute": 60}}).gate("m")  # one token a second
    started = time.perf_counter()
    await gate.acquire(60)  # a minute's worth fits at once
    gate.release()
    assert time.perf_counter() - started < 0.5
    await gate.acquire(1)  # then it waits for the bucket to drain one token
    gate.release()
    assert 0.9 <= time.perf_counter() - started < 3


@pytest.mark.parametrize(
    "limits",
    [{"m": {"requests_per_minute": 0}}, {"m": {"max_concurrency": 1.5}}, {"m": {"rpm": 60}}],
)
def test_bad_limits_are_config_errors_before_any_request(orc, sim, limits):
    with pytest.raises(mmo.ConfigError):
        orc.batch(QUESTIONS, ["oa"], limits=limits)
    assert sim.request_count() == 0
