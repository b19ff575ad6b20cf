"""The learned task classifier: its data, its cross-source accuracy, its file, its decisions.

The cross-source evaluation trains once per held-out source on the shipped prompts
(about ten fits of a few seconds), once for the whole module.
"""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmo_magic.core.errors import ConfigError
from mmo_magic.core.models import Catalogue, ModelConfig
from mmo_magic.routing import TASKS, TaskRouter
from mmo_magic.routing.evaluation import ROUND_TWO_SOURCES, cross_source_router_evaluation
from mmo_magic.routing.task_model import (
    BENCHMARK_TASKS,
    SPLIT_TASKS,
    SourceScore,
    TaskClassifier,
    _softmax,
    load_task_prompts,
    mean_accuracy,
    read_task_prompts,
    shipped_classifier,
    train_shipped,
    train_task_classifier,
)

# Measured on the shipped data (README, Routing) minus a margin: accuracy of TaskRouter
# on the eight benchmark categories of each source when that source was never trained on.
FLOORS = {
    "arc": 0.76,  # measured 0.807
    "awesome-chatgpt-prompts": 0.94,  # 0.993
    "dolly": 0.48,  # 0.560 (50 prompts: one is 2 points)
    "gsm8k": 0.90,  # 0.936
    "humaneval": 0.93,  # 0.975
    "mbpp": 0.96,  # 1.000
    "mmlu": 0.65,  # 0.692
    "mmo-seed": 0.91,  # 0.955
    "openstax": 0.67,  # 0.712
    "pubmedqa": 0.58,  # 0.625
    "truthfulqa": 0.61,  # 0.655
    "uscis-civics": 0.68,  # 0.719
    "written-23": 0.87,  # 0.918
    "written-23-c": 0.81,  # 0.868
    "written-23-d": 0.94,  # 0.985
    "written-23-e": 0.81,  # 0.851
    "written-23-f": 0.65,  # 0.697
    "written-23-g": 0.85,  # 0.893
    "written-23-h": 0.78,  # 0.840
    "written-23-long": 0.86,  # 0.908
}
MEAN_FLOOR = 0.78  # measured 0.814 over every source
# Like for like with round two (79.1% on these twelve sources): measured 0.853.
ROUND_TWO_MEAN_FLOOR = 0.83
CUES_ALONE_MEAN = 0.410  # measured: the learned router must beat the cues by a wide margin


@pytest.fixture(scope="module")
def held_out() -> dict[str, SourceScore]:
    return {s.source: s for s in cross_source_router_evaluation()}


# -- the data ---------------------------------------------------------------------


def test_shipped_prompts_have_a_task_source_and_licence() -> None:
    data = read_task_prompts()
    assert len(data) >= 2000
    assert {d.task for d in data} == set(TASKS)
    by_task = collections.Counter(d.task for d in data)
    assert min(by_task.values()) >= 30
    sources = {d.source for d in data}
    assert len(sources) >= 8
    assert all(d.prompt.strip() and d.licence and d.origin for d in data)
    assert len({" ".join(d.prompt.lower().split()) for d in data}) == len(data)  # no duplicates
    # Each of the eight benchmark categories comes from at least two independent sources,
    # so each can be tested on a source it was not trained on.
    for task in BENCHMARK_TASKS:
        assert len({d.source for d in data if d.task == task}) >= 2, task
    frame = load_task_prompts()
    assert list(frame.columns) == ["prompt", "task", "source", "licence", "origin"]
    assert len(frame) == len(data)


def test_no_public_chat_benchmark_is_a_source() -> None:
    # MT-Bench, Arena-Hard, AlpacaEval, Vicuna-80 and WildBench measure routing from outside.
    banned = ("mt-bench", "mt_bench", "arena", "alpaca", "vicuna", "wildbench", "lmsys")
    for d in read_task_prompts():
        where = f"{d.source} {d.origin}".lower()
        assert not any(b in where for b in banned), d.origin
    # Non-commercial licences cannot ship in an MIT package.
    assert not any("NC" in d.licence.split() or "-NC" in d.licence for d in read_task_prompts())


def test_openstax_rows_come_from_the_cc_by_books_and_are_labelled_by_book() -> None:
    # Only the OpenStax books whose licence is CC BY 4.0 today (most others are now CC
    # BY-NC-SA); the subject is the book's, decided before measuring: economics is
    # humanities, physics is stem.
    books = {"OpenStax Principles of Economics 3e": "humanities", "OpenStax Physics": "stem"}
    rows = [d for d in read_task_prompts() if d.source == "openstax"]
    assert len(rows) >= 400
    for d in rows:
        book = next(b for b in books if d.origin.startswith(b + " (CC BY 4.0)"))
        assert d.licence == "CC BY 4.0" and d.task == books[book], d.origin
    # Over all sources, stem and humanities stay balanced so the topic split is not pulled.
    by_task = collections.Counter(d.task for d in read_task_prompts())
    assert 0.9 <= by_task["stem"] / by_task["humanities"] <= 1.1


def test_mmlu_rows_are_labelled_by_what_they_ask() -> None:
    # MMLU's human_aging questions are the psychology of ageing (traits, coping,
    # retirement): humanities, like its other psychology; a medical question filed under
    # human_sexuality or a psychology one under college_medicine follows its content.
    # Each changed label says so in its origin.
    mmlu = [d for d in read_task_prompts() if d.source == "mmlu"]
    ageing = collections.Counter(d.task for d in mmlu if "mmlu_human_aging" in d.origin)
    assert ageing["humanities"] > 3 * ageing["stem"]
    relabelled = [d for d in mmlu if "relabelled" in d.origin]
    assert 20 <= len(relabelled) <= 40
    assert all(f"-> {d.task}" in d.origin for d in relabelled)

    def task_of(start: str) -> str:
        return next(d.task for d in mmlu if d.prompt.startswith(start))

    assert task_of("Which method of abortion is most costly") == "stem"
    assert task_of("The World Systems Theory divides the world") == "humanities"


# -- accuracy on sources never trained on ----------------------------------------------


# The module's cross-source evaluation (20 folds, each fitting the word model and the
# topic split) takes 40-50 s here and more on a loaded CI machine: the first test to use
# it gets the time to build it.
@pytest.mark.timeout(300)
def test_cross_source_accuracy_stays_above_the_measured_floors(
    held_out: dict[str, SourceScore],
) -> None:
    print("\n".join(str(s) for s in held_out.values()))
    assert set(held_out) == set(FLOORS)
    low = {s: round(held_out[s].accuracy, 3) for s in FLOORS if held_out[s].accuracy < FLOORS[s]}
    assert not low, f"below the floor: {low}"
    assert mean_accuracy(list(held_out.values())) >= MEAN_FLOOR
    same = [s for s in held_out.values() if s.source in ROUND_TWO_SOURCES]
    assert mean_accuracy(same) >= ROUND_TWO_MEAN_FLOOR


@pytest.mark.timeout(300)
def test_the_learned_router_beats_the_cues_alone(held_out: dict[str, SourceScore]) -> None:
    cues = cross_source_router_evaluation(learned=False)  # nothing trained: fast
    assert mean_accuracy(cues) == pytest.approx(CUES_ALONE_MEAN, abs=0.03)
    assert mean_accuracy(list(held_out.values())) >= mean_accuracy(cues) + 0.12


# -- the shipped weights ----------------------------------------------------------------


def test_shipped_weights_are_what_the_shipped_prompts_train(tmp_path: Path) -> None:
    fresh = train_shipped(tmp_path / "model.npz")
    shipped = shipped_classifier()
    assert shipped.tasks == fresh.tasks == TASKS
    assert shipped.representation.version == fresh.representation.version
    # float16 on disk: equal to about three significant digits.
    assert np.allclose(shipped.weights, fresh.weights, atol=2e-3, rtol=1e-2)
    prompts = [d.prompt for d in read_task_prompts()[::25]]
    assert shipped.predict(prompts) == fresh.predict(prompts)
    assert shipped.info["prompts"] == len(read_task_prompts())


def test_a_classifier_round_trips_and_a_foreign_file_is_refused(tmp_path: Path) -> None:
    model = train_task_classifier(
        ["write a python function", "solve 2x + 3 = 7", "hello!"],
        ["coding", "math", "conversation"],
        steps=20,
    )
    path = tmp_path / "m.npz"
    model.save(path)
    again = TaskClassifier.load(path)
    assert again.tasks == model.tasks
    assert again.predict(["write a python function to sort"]) == ["coding"]
    assert np.allclose(again.scores(["hello"]), model.scores(["hello"]), atol=1e-2)

    (tmp_path / "text.npz").write_text("not a model")
    with pytest.raises(ConfigError, match="is not a task classifier file"):
        TaskClassifier.load(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", header=np.array('{"format": "something-else"}'))
    with pytest.raises(ConfigError, match="has format 'something-else'"):
        TaskClassifier.load(tmp_path / "other.npz")
    # A pickled object inside is refused, never loaded.
    np.savez(tmp_path / "pickled.npz", header=np.array([{"format": 1}], dtype=object))
    with pytest.raises(ConfigError, match="is not a task classifier file"):
        TaskClassifier.load(tmp_path / "pickled.npz")


def test_the_topic_split_is_saved_with_the_model_and_an_older_file_still_loads(
    tmp_path: Path,
) -> None:
    prompts = ["why do cells divide", "what is a neuron", "who was napoleon", "what is inflation"]
    labels = ["stem", "stem", "humanities", "humanities"]
    model = train_task_classifier([*prompts, "hi"], [*labels, "conversation"], steps=30)
    assert model.topic is not None and model.topic.tasks == SPLIT_TASKS
    path = tmp_path / "m.npz"
    model.save(path)
    again = TaskClassifier.load(path)
    assert again.topic is not None and again.topic.representation.name == "topic"
    assert np.allclose(again.predict_proba(prompts), model.predict_proba(prompts), atol=1e-2)
    # A round-two file (format 1, no topic split) loads as the model it was.
    no_split = train_task_classifier(prompts, labels, steps=30, topic=False)
    assert no_split.topic is None
    no_split.save(path)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["header"] = np.array(str(arrays["header"]).replace("classifier/2", "classifier/1"))
    np.savez(path, **arrays)
    assert TaskClassifier.load(path).topic is None
    # Shares among the split tasks still sum to what the main model gave them.
    p = model.predict_proba(["what is a neuron"])
    main = _softmax(model.scores(["what is a neuron"]))
    columns = [TASKS.index(t) for t in SPLIT_TASKS]
    assert p[0, columns].sum() == pytest.approx(main[0, columns].sum(), abs=1e-5)


def test_weights_from_another_representation_version_are_refused(tmp_path: Path) -> None:
    model = train_task_classifier(["a b", "c d"], ["coding", "math"], steps=5)
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["header"] = np.array(str(arrays["header"]).replace("hashed-ngrams-", "hashed-ngrams-0"))
    np.savez(path, **arrays)
    with pytest.raises(ConfigError, match="Retrain it"):
        TaskClassifier.load(path)


def test_balance_trades_equal_tasks_for_equal_prompts() -> None:
    # 40 coding prompts and 4 maths ones share the word "alpha"; "alpha" alone is then
    # pulled towards the larger task the more each prompt (not each task) counts.
    prompts = [f"alpha code {i}" for i in range(40)] + [f"alpha sum {i}" for i in range(4)]
    labels = ["coding"] * 40 + ["math"] * 4
    coding = TASKS.index("coding")

    def p_coding(balance: float) -> float:
        model = train_task_classifier(prompts, labels, balance=balance, steps=40)
        assert model.info["balance"] == balance
        return float(model.predict_proba(["alpha"])[0, coding])

    equal_tasks, default, equal_prompts = p_coding(1.0), p_coding(0.5), p_coding(0.0)
    assert equal_tasks < default < equal_prompts
    assert shipped_classifier().info["balance"] == 1.0


@pytest.mark.parametrize(
    ("prompt", "task"),
    [
        # Exam phrasing around a subject the word model has little of: the topic split
        # decides by the subject.
        ("Which of the following structures drains lymph from the lower limbs?", "stem"),
        ("Which of the following best describes the role of a central bank?", "humanities"),
        ("What is the mechanism of action of proton pump inhibitors?", "stem"),
    ],
)
def test_exam_phrased_questions_go_by_their_subject(prompt: str, task: str) -> None:
    guess = TaskRouter().detect(prompt)
    assert guess.task == task, guess.describe()
    assert guess.terms  # the words that decided it are named


def test_unknown_labels_are_refused() -> None:
    with pytest.raises(ConfigError, match="Unknown task label 'cooking'"):
        train_task_classifier(["make soup"], ["cooking"])


# -- decisions ----------------------------------------------------------------------------


def local(name: str) -> ModelConfig:
    return ModelConfig("local", name, name=name, base_url="http://127.0.0.1:9/v1")


def test_a_low_confidence_guess_falls_back_to_the_default_and_says_so() -> None:
    cat = Catalogue.of([local("mine"), local("sonnet")])
    router = TaskRouter(default="mine", task_models={"coding": ["sonnet"]})
    guess = router.detect("hmm")
    assert guess.fallback and guess.confidence < TaskRouter.MIN_CONFIDENCE
    d = router.route("hmm", cat)
    assert (d.model, d.rule) == ("mine", "low-confidence:default")
    assert "low confidence" in d.reason and "fallback to the default model → mine" in d.reason
    # Without a default the guess is used, and the reason says it is one.
    no_default = TaskRouter(task_models={guess.task: ["sonnet"]}).route("hmm", cat)
    assert no_default.model == "sonnet"
    assert "routed on this guess (no default model to fall back to)" in no_default.reason
    # A confident decision ignores the default and names its evidence.
    sure = router.route("Write a Python function that parses ISO dates", cat)
    assert sure.rule == "task:coding"
    assert "confidence" in sure.reason and ("words" in sure.reason or "cues" in sure.reason)


def test_routing_is_fast_and_numpy_stays_unimported_until_it_runs() -> None:
    code = (
        "import sys, time, mmo_magic\n"
        "assert 'numpy' not in sys.modules, 'import mmo_magic imported numpy'\n"
        "from mmo_magic.routing import TaskRouter\n"
        "r = TaskRouter(); r.detect('warm up')\n"
        "times = []\n"
        "for i in range(200):\n"
        "    t = time.perf_counter(); r.detect(f'Explain the causes of war number {i}')\n"
        "    times.append(time.perf_counter() - t)\n"
        "times.sort(); print(times[100] * 1000)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(done.stdout) < 5.0  # ms, p50


def test_nearest_examples_are_the_most_similar_shipped_prompts() -> None:
    from mmo_magic.routing.task_model import ExampleIndex

    data = read_task_prompts()[::10]
    index = ExampleIndex(data, shipped_classifier().representation)
    query = data[3].prompt
    found = index.nearest(query, k=4)
    assert found[0].prompt == query and found[0].similarity == pytest.approx(1.0, abs=1e-3)
    # The same ranking as the dense cosine over every prompt.
    rep = shipped_classifier().representation
    dense = rep.transform([d.prompt for d in data]) @ rep.transform([query])[0]
    order = [data[i].prompt for i in np.argsort(-dense, kind="stable")[:4]]
    assert [e.prompt for e in found] == order
    assert [e.similarity for e in found] == pytest.approx(sorted(dense, reverse=True)[:4], abs=1e-4)
    assert index.nearest("", k=3) == []  # nothing in common: no evidence, not noise


def test_the_router_shows_labelled_examples_beside_a_decision() -> None:
    examples = TaskRouter().examples("Why did the Roman Empire fall?", k=2)
    assert len(examples) == 2 and all(e.task == "humanities" for e in examples)
    assert all(e.source and 0 < e.similarity <= 1.0 for e in examples)
