"""%%mmo_batch through a real InteractiveShell, over the simulated provider; orc.batch's façade."""

from __future__ import annotations

import pytest
from helpers import magic_shell, sim_models
from IPython.utils.capture import capture_output

import mmo_magic as mmo

ITEMS = [{"question": "What is two plus two?"}, {"question": "Name a prime number."}]


@pytest.fixture
def ip(sim, keys):
    with mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:") as orc:
        for base in ("oa", "lo"):
            orc.add_model(
                orc.catalogue.resolve(base).replace(name=f"{base}-echo", model_id="sim-echo")
            )
        with magic_shell(orc) as shell:
            shell.user_ns["items"] = ITEMS
            yield shell


def test_the_cell_is_the_template_and_every_model_answers_every_item(ip, sim):
    with capture_output() as shown:
        ip.run_cell_magic(
            "mmo_batch", "--data items --models oa-echo,lo-echo -o br", "Q: {question}"
        )
    frame = ip.user_ns["br"].to_dataframe()
    assert len(frame) == 4 and set(frame["status"]) == {"ok"}
    assert all(a.startswith("Q: ") for a in frame["answer"])  # the echo model saw the template
    assert sim.request_count() == 4
    assert "oa-echo" in shown.stderr  # the progress (on stderr, as tqdm) names each model
    assert "Traceback" not in shown.stdout + shown.stderr


def test_re_running_the_cell_resumes_instead_of_paying_again(ip, sim):
    with capture_output():
        ip.run_cell_magic("mmo_batch", "--data items --models oa-echo", "Q: {question}")
        ip.run_cell_magic("mmo_batch", "--data items --models oa-echo -o again", "Q: {question}")
    assert sim.request_count() == 2  # the second run read the answers from the run log
    assert len(ip.user_ns["again"].to_dataframe()) == 2


def test_a_bad_flag_is_one_line_and_an_unknown_engine_is_refused(ip):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError):
        ip.run_cell_magic("mmo_batch", "--models oa-echo", "Q: {question}")  # no --data
    with pytest.raises(mmo.ConfigError, match="Unknown batch engine 'spark'"):
        mmo.get_orchestrator().batch(ITEMS, ["oa-echo"], engine="spark")


def test_engine_flags_reach_the_batch(ip, capsys):
    # Checked before Ray starts: the flags arrive, and a bad one is one line, not a traceback.
    ip.run_cell_magic("mmo_batch", "--data items --models oa-echo --workers 2", "Q: {question}")
    assert "workers only apply to engine='ray'" in capsys.readouterr().err
    ip.run_cell_magic(
        "mmo_batch", "--data items --models oa-echo --engine ray --workers 0", "Q: {question}"
    )
    assert "workers must be a whole number >= 1, got 0" in capsys.readouterr().err


def test_a_missing_template_variable_names_a_column_not_a_keyword(ip):
    # Issue 28 #23: in a batch the missing thing is an item column.
    with pytest.raises(mmo.TemplateError) as caught:
        mmo.get_orchestrator().batch(ITEMS, ["oa-echo"], prompt="{questoin}", progress=False)
    text = str(caught.value)
    assert "Add a column 'questoin' to the items, or use one they have (question)" in text
    assert "keyword argument" not in text


def test_the_batch_views_money_is_never_typeset_as_math_and_cells_are_padded():
    # Issue 28 #1 and #10: "$0.000871 spent · worst case $0.00271" stays text under MathJax.
    from mmo_magic.evaluation.progress import BatchStats
    from mmo_magic.notebook.batch_view import render_html

    stats = BatchStats(worst_case_cost=0.00271)
    m = stats.model("oa")
    m.total, m.done, m.cost = 4, 2, 0.000871
    page = render_html(stats)
    assert "class='mathjax_ignore tex2jax_ignore'" in page and "$0.000871" in page
    assert page.count("padding:") >= 16  # every header and cell
