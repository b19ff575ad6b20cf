"""``python -m mmo_magic demo`` prints what a terminal would show (issue 28 #15)."""

from __future__ import annotations

from helpers import sim_models
from IPython.core.interactiveshell import InteractiveShell

import mmo_magic as mmo
from mmo_magic.__main__ import _join_streams, _text_of


def test_demo_prints_text_not_markup(sim, keys) -> None:
    with mmo.Orchestrator(sim_models(sim), runlog=":memory:", cache=False) as orc:
        orc.add_model(orc.catalogue.resolve("oa").replace(name="echo", model_id="sim-echo"))
        response = orc.complete("Prices: $5 and $6", model="echo")
    shell = InteractiveShell.instance()
    try:
        data, _ = shell.display_formatter.format(response)
    finally:
        InteractiveShell.clear_instance()
    assert "<sub>" in data["text/markdown"]  # what the demo used to print
    shown = _text_of({"output_type": "execute_result", "data": data})
    assert "<sub>" not in shown and "\\$" not in shown
    assert shown.startswith("Prices: $5 and $6") and "$" in shown.splitlines()[-1]
    streamed = [{"output_type": "stream", "text": "a"}, {"output_type": "stream", "text": "b"}]
    assert _join_streams(streamed) == ["ab"]
