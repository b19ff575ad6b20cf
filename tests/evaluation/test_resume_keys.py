"""Resume matches what was asked (issue 24, defect 3): with ``key=``, an edited item is asked again.

An item's key names it across runs; what resume matches must still change with
everything that changes the request (the rendered prompt, the system prompt) and,
for a judge, with the question and the answers it judged.
"""

from __future__ import annotations

from urllib.parse import quote

from helpers import with_model_id

ITEMS = [
    {"id": "fr", "question": "What is the capital of France?", "persona": "a geographer"},
    {"id": "it", "question": "What is the capital of Italy?", "persona": "a geographer"},
]


def edited(index: int, **changes: str) -> list[dict[str, str]]:
    items = [dict(item) for item in ITEMS]
    items[index].update(changes)
    return items


def test_an_edited_question_is_asked_again_not_resumed(orc, sim):
    echo = with_model_id(orc, "oa", "sim-echo")
    orc.batch(ITEMS, [echo], key="id", progress=False)
    again = orc.batch(edited(0, question="What is the capital of Japan?"), [echo], key="id",
                      progress=False)  # fmt: skip
    japan, italy = again.rows
    assert not japan["resumed"] and "Japan" in (japan["answer"] or "")
    assert italy["resumed"] and "Italy" in (italy["answer"] or "")
    assert sim.request_count("sim-echo") == 3


def test_an_edited_system_prompt_is_asked_again(orc, sim):
    echo = with_model_id(orc, "oa", "sim-echo")
    options = {"key": "id", "system": "You are {persona}.", "progress": False}
    orc.batch(ITEMS, [echo], **options)
    again = orc.batch(edited(1, persona="a historian"), [echo], **options)
    assert [r["resumed"] for r in again.rows] == [True, False]
    assert sim.request_count("sim-echo") == 3


def test_a_judge_is_asked_again_when_the_question_it_judged_changed(orc, sim):
    # The answers do not change (fixed replies); the question does.
    good = with_model_id(orc, "oa", "sim-fast?reply=" + quote("Paris."))
    bad = with_model_id(orc, "lo", "sim-fast?reply=" + quote("Lyon."))
    judge_id = "sim-fast?reply=judge&prefer=paris"
    judge = with_model_id(orc, "an", judge_id)
    orc.batch(ITEMS, [bad, good], judges=[judge], key="id", progress=False)
    assert sim.request_count(judge_id) == 4  # two items, both orders
    orc.batch(edited(0, question="Which city is the capital of France?"), [bad, good],
              judges=[judge], key="id", progress=False)  # fmt: skip
    assert sim.request_count(judge_id) == 6  # the edited item's pair again, both orders


def test_a_grader_is_asked_again_when_the_question_it_graded_changed(orc, sim):
    answer = with_model_id(orc, "oa", "sim-fast?reply=" + quote("Paris."))
    grade_id = "sim-fast?reply=" + quote('{"winner": "A", "scores": {"A": 8}, "reason": "ok"}')
    grader = with_model_id(orc, "an", grade_id)
    options = {"judges": [grader], "judge_mode": "grade", "key": "id", "progress": False}
    orc.batch(ITEMS, [answer], **options)
    orc.batch(edited(1, question="What was the capital of Italy in 1870?"), [answer], **options)
    assert sim.request_count(grade_id) == 3
