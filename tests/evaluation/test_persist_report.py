"""A result that outlives the kernel (issue 24, Build): ``br.save(path)`` -> a new process
-> ``load_batch(path)`` gives the same ``leaderboard()``; ``br.to_html(path)`` is a
self-contained report, opened offline in headless Chromium and screenshotted into
artifacts/ (looked at by the person who changed it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mmo_magic as mmo
from mmo_magic.core.completion import StreamEnd
from mmo_magic.evaluation import eval_questions, load_batch, scorers
from mmo_magic.providers import register_function, unregister_function

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
QUESTIONS = eval_questions().head(8)
REFERENCE = dict(zip(QUESTIONS["question"], QUESTIONS["reference"], strict=True))


def careful(request: Any) -> str:
    return str(REFERENCE[request.prompt_text])


def hasty(request: Any) -> str:
    if "prime" in request.prompt_text:
        raise RuntimeError("hasty is down")
    return f"Probably {len(request.prompt_text) % 7} — costs $5 and $6."


def candidates(request: Any) -> dict[str, str]:
    user = request.messages[-1].content
    a = user.split("<<<CANDIDATE A")[1].split("<<<END A")[0]
    b = user.split("<<<CANDIDATE B")[1].split("<<<END B")[0] if "<<<CANDIDATE B" in user else ""
    return {"A": a, "B": b}


def referee(request: Any) -> list[Any]:
    texts = candidates(request)
    longer = "A" if len(texts["A"]) > len(texts["B"]) else "B"
    winner = "tie" if "Probably 3" in texts["A"] + texts["B"] else longer
    return [json.dumps({"winner": winner, "reason": "by length"}), StreamEnd("stop", 10, 5)]


@pytest.fixture(scope="module")
def br() -> Iterator[mmo.BatchResult]:
    functions = {"careful": careful, "hasty": hasty, "referee": referee}
    for name, function in functions.items():
        register_function(f"persist-{name}", function)
    models = [mmo.ModelConfig("function", f"persist-{name}", name=name, cost_per_1k_input=0.01,
                              cost_per_1k_output=0.03) for name in functions]  # fmt: skip
    with mmo.Orchestrator(models, default_model="careful", runlog=":memory:") as orc:
        yield orc.batch(QUESTIONS, ["careful", "hasty"], judges=["referee"],
                        scorers=[scorers.exact(), scorers.numeric()], progress=False)  # fmt: skip
    for name in functions:
        unregister_function(f"persist-{name}")


def test_save_then_load_in_a_new_process_gives_the_same_leaderboard(br, tmp_path):
    folder = br.save(tmp_path / "run")
    assert sorted(p.name for p in folder.iterdir()) == [
        "batch.json", "grades.parquet", "items.parquet", "judgements.parquet", "rows.parquet",
        "scores.parquet",
    ]  # fmt: skip
    assert not list(folder.glob("*.pkl"))
    code = (
        "import sys; from mmo_magic.evaluation import load_batch; "
        "b = load_batch(sys.argv[1]); print(b.leaderboard().to_json(orient='split'))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert json.loads(out.stdout) == json.loads(br.leaderboard().to_json(orient="split"))
    again = load_batch(folder)
    assert again.to_dataframe().equals(br.to_dataframe())
    assert again.spec["models"] == ["careful", "hasty"] and again.prices["careful"] == {
        "cost_per_1k_input": 0.01, "cost_per_1k_output": 0.03,
    }  # fmt: skip
    assert again.judgements == br.judgements and again.prompts == br.prompts


def test_load_batch_names_a_folder_that_is_not_a_saved_batch(tmp_path):
    with pytest.raises(mmo.ConfigError, match="No saved batch"):
        load_batch(tmp_path)


def test_the_report_is_self_contained_and_says_what_it_shows(br, tmp_path):
    page = br.to_html(tmp_path / "report.html")
    for needed in ("Leaderboard", "<svg", "exact_items", "ties[referee]", "Position bias",
                   "Answers", "hasty is down", "Cost", "mathjax_ignore"):  # fmt: skip
        assert needed in page, needed
    for outside in ("<script", "<link", 'src="http', "src='http", 'href="http', "url(http"):
        assert outside not in page, outside  # nothing to fetch (xmlns names are not fetched)


CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_the_report_opens_offline_in_chromium(br, tmp_path):
    from playwright.sync_api import sync_playwright

    report = tmp_path / "report.html"
    br.to_html(report)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
        ])  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            assert page.locator("h1").inner_text() == "Batch report"
            assert page.locator("svg").count() >= 1
            answers = page.locator("table.answers tr")
            assert answers.count() == len(QUESTIONS) + 1
            assert "costs $5 and $6" in page.locator("table.answers").inner_text()
            page.screenshot(path=str(ARTIFACTS / "report_batch.png"), full_page=True)
        finally:
            browser.close()
    assert [u for u in requests if not u.startswith("file:")] == []  # nothing fetched
