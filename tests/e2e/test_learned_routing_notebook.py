"""notebooks/learned_routing.ipynb runs top to bottom in a real kernel, offline, and its
figures hold: the held-out point at 95% quality and the savings measured on new prompts."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import outputs, run_notebook


def cell_with(code: list[Any], text: str) -> Any:
    """The code cell whose source holds ``text``."""
    (cell,) = [c for c in code if text in c.source]
    return cell


def shares(pattern: str, text: str) -> tuple[float, float]:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in {text!r}"
    return float(found.group(1)) / 100, float(found.group(2)) / 100


@pytest.mark.timeout(300)
def test_the_learned_routing_notebook_learns_routes_and_saves(tmp_path: Path) -> None:
    nb = run_notebook("learned_routing.ipynb", tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o["output_type"] == "error"]

    # The judged batch: three models answered 240 prompts, each answer graded.
    assert "720 answers, 720 grades" in outputs(cell_with(code, "br = orc.batch("))

    # The held-out point the router was picked at.
    held = outputs(cell_with(code, "lr.at(quality=0.95)"))
    quality, cost = shares(r"held out: ([\d.]+)% of expert's quality at ([\d.]+)% of its", held)
    assert quality >= 0.95 and cost <= 0.6

    # The curve is drawn.
    plot = cell_with(code, "lr.plot()")
    assert any("image/png" in o.get("data", {}) for o in plot.outputs)

    # Decisions are explained: the predicted qualities, through the API and %mmo_route.
    for cell in (cell_with(code, "router.inspect("), cell_with(code, "%mmo_route -r mine")):
        shown = outputs(cell)
        assert "predicted quality" in shown
        assert all(model in shown for model in ("quick", "steady", "expert"))

    # New prompts, routed for real: most of expert's grade at a fraction of its spend.
    savings = outputs(cell_with(code, "routed = ["))
    quality, cost = shares(r"kept ([\d.]+)% of expert's grade at ([\d.]+)% of its spend", savings)
    assert quality >= 0.93 and cost <= 0.6
    calls = re.search(r"calls per model: (\{.*\})", savings)
    assert calls and len(ast.literal_eval(calls.group(1))) >= 2

    apgr = re.search(r"APGR: learned ([\d.]+), oracle ([\d.]+)", outputs(cell_with(code, "apgr")))
    assert apgr and float(apgr.group(1)) >= 0.8 * float(apgr.group(2))

    assert "reloaded router makes the same choices: True" in outputs(
        cell_with(code, "mmo.load_router(")
    )
    assert (tmp_path / "my_router.json").is_file()
