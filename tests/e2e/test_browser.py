"""End to end in a real browser: JupyterLab runs race_and_judges.ipynb, then reopens it saved.

How the page is driven (the most robust way found):

- JupyterLab is started with ``--LabApp.expose_app_in_browser=True``, so the page has
  ``window.jupyterapp``. The test waits for the notebook's session to have a kernel that is
  idle, then runs the command ``notebook:run-all-cells`` through ``app.commands`` — the same
  command as the menu "Run → Run All Cells", without depending on menu layout or shortcuts.
- First-start noise is switched off before the page loads: news and update checks
  (``news_url=None``, ``NeverCheckForUpdate`` and the notification settings), and notebook
  windowing (``windowingMode: none``) so every cell is in the DOM. Any modal dialog that still
  appears (e.g. "Select Kernel") gets its default button pressed: while polling for the kernel
  and the run, and by a Playwright locator handler during assertions.
- It waits for every code cell to have an execution count, then checks the race outputs: a
  finished race is a static rendering of its final state (``.mmo-race``, one ``.mmo-panel``
  per model with its status, one trophy, the votes table), not a live widget any more.
- Contrast: for every element with its own text in the race outputs and the ``%%mmo``
  footer, the WCAG contrast ratio of its computed colour against its effective background
  (alpha blended up the tree) must be at least 4.5, in JupyterLab Light and JupyterLab Dark.
- Then the notebook is saved, its kernel shut down, and the page reopened on a new kernel:
  the races still show, and no "Error displaying widget" appears.

Screenshots (light, dark, reopened) are saved to ``artifacts/`` at the repository root
(gitignored; the trophy needs an emoji font: ``apt-get install -y fonts-noto-color-emoji``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "race_and_judges.ipynb"
ARTIFACTS = REPO / "artifacts"
SCREENSHOT = ARTIFACTS / "race_widget.png"  # light theme
SCREENSHOT_DARK = ARTIFACTS / "race_widget_dark.png"
SCREENSHOT_REOPENED = ARTIFACTS / "race_widget_reopened.png"
MIN_CONTRAST = 4.5  # WCAG AA for normal text

INSTALL_HINT = (
    "needs Chromium, Playwright and JupyterLab: "
    "`apt-get install -y chromium` and `pip install playwright jupyterlab` "
    "(never `playwright install`: the test uses /usr/bin/chromium)"
)
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RACE_MODELS = ("flaky", "quick", "sim-slow")
FINAL_BADGES = ("done", "failed", "cancelled")
SERVER_START_S = 60
KERNEL_START_S = 60
NOTEBOOK_RUN_S = 300  # with the embedded model installed, its judge takes ~10-20 s a call


def _chromium() -> str | None:
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")


def _missing() -> str | None:
    """Why this test cannot run here, or None."""
    if _chromium() is None:
        return "no chromium binary"
    for module in ("playwright.sync_api", "jupyterlab"):
        try:
            __import__(module)
        except ImportError:
            return f"{module.split('.')[0]} is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _lab_settings(settings_dir: Path) -> None:
    """User settings for a quiet lab: no news or update toasts, every cell rendered."""
    _write_json(
        settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    _write_json(
        settings_dir / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
        {"windowingMode": "none"},
    )


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class Lab:
    def __init__(self, url: str, token: str, root: Path, log: Path) -> None:
        self.url, self.token, self.root, self.log = url, token, root, log

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A JupyterLab server on 127.0.0.1 serving a copy of the notebook; stopped afterwards."""
    reason = _missing()
    if reason:
        pytest.skip(f"{reason}; this test {INSTALL_HINT}")
    root = tmp_path / "notebooks"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    jupyter = tmp_path / "jupyter"
    _lab_settings(jupyter / "lab-user-settings")
    port, token = _free_port(), secrets.token_hex(24)
    env = dict(os.environ)  # MMO_RUNLOG and friends from conftest: the user's log is untouched
    env.update(
        MMO_CACHE="off",  # the race must really run, not come from the response cache
        JUPYTER_CONFIG_DIR=str(jupyter / "config"),
        JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
        IPYTHONDIR=str(jupyter / "ipython"),
    )
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",  # jupyter_server 2
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
        "--ServerApp.terminals_enabled=False",
        "--ServerApp.allow_root=True",  # CI containers run as root
        f"--LabApp.user_settings_dir={jupyter / 'lab-user-settings'}",
        f"--LabApp.workspaces_dir={jupyter / 'lab-workspaces'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no PyPI queries
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, to drive the page
    ]
    log = tmp_path / "jupyterlab.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    lab = Lab(url, token, root, log)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while _get(f"{url}/api/status?token={token}") != 200:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{lab.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer in {SERVER_START_S} s:\n{lab.log_tail()}")
            time.sleep(0.25)
        yield lab
    finally:
        _stop(server, url, token)


def _stop(server: subprocess.Popen[bytes], url: str, token: str) -> None:
    """Shut the server down with its kernels; escalate to SIGTERM, then SIGKILL."""
    if server.poll() is None:
        request = urllib.request.Request(f"{url}/api/shutdown?token={token}", method="POST")
        with contextlib.suppress(OSError):  # already stopping, or not answering: escalate below
            urllib.request.urlopen(request, timeout=5).close()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(server.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    server.wait(timeout=10)
                    break
                except subprocess.TimeoutExpired:
                    continue


def _panel_js(name: str) -> str:
    """A notebook's panel, found through the exposed application."""
    return """
() => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === 'NOTEBOOK_NAME' && w.sessionContext) return w;
  }
  return null;
}
""".replace("NOTEBOOK_NAME", name)


def _kernel_idle_js(name: str) -> str:
    return f"""
() => {{
  const panel = ({_panel_js(name)})();
  const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!(kernel && kernel.status === 'idle' && panel.content.widgets.length > 0);
}}
"""


def _run_all_js(name: str) -> str:
    return f"""
async () => {{
  const panel = ({_panel_js(name)})();
  window.jupyterapp.shell.activateById(panel.id);
  window.jupyterapp.shell.collapseLeft();
  void window.jupyterapp.commands.execute('notebook:run-all-cells');
}}
"""


def _all_executed_js(name: str) -> str:
    return f"""
() => {{
  const panel = ({_panel_js(name)})();
  const code = panel.content.widgets.filter(c => c.model.type === 'code');
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return code.length > 0 && code.every(c => c.model.executionCount !== null)
      && !!kernel && kernel.status === 'idle';
}}
"""


def _save_and_shut_down_js(name: str) -> str:
    return f"""
async () => {{
  const panel = ({_panel_js(name)})();
  await panel.context.save();
  await panel.sessionContext.shutdown();
  await panel.close();
}}
"""


_PANEL_JS = _panel_js(NOTEBOOK.name)
_KERNEL_IDLE_JS = _kernel_idle_js(NOTEBOOK.name)
_RUN_ALL_JS = _run_all_js(NOTEBOOK.name)
_ALL_EXECUTED_JS = _all_executed_js(NOTEBOOK.name)

_ACCEPT_DIALOGS_JS = """
() => Array.from(document.querySelectorAll('.jp-Dialog')).map(dialog => {
  const button = dialog.querySelector('.jp-Dialog-button.jp-mod-accept');
  const title = (dialog.innerText || '').trim().split('\\n')[0];
  if (button) button.click();
  return title;
})
"""


@pytest.mark.timeout(700)
# Once more on failure: in the full suite on a loaded 2-core machine this failed about one
# run in three while passing alone every time; the race's timing is real, not simulated.
@pytest.mark.flaky(reruns=1)
def test_race_widget_renders_in_jupyterlab(lab: Lab) -> None:
    from playwright.sync_api import expect, sync_playwright

    chromium = _chromium()
    assert chromium is not None
    ARTIFACTS.mkdir(exist_ok=True)
    started = time.monotonic()
    timings: dict[str, float] = {}

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)  # Playwright's 5 s default is tight on a busy CI box
            # A modal dialog during a Playwright action or assertion: take its default.
            page.add_locator_handler(page.locator(".jp-Dialog"), lambda: _accept_dialogs(page))
            try:
                _open(page, lab)
                timings["kernel idle"] = time.monotonic() - started
                page.evaluate(_RUN_ALL_JS)
                _wait_for(page, _ALL_EXECUTED_JS, NOTEBOOK_RUN_S, "every code cell to run")
                timings["notebook ran"] = time.monotonic() - started
                race = _check_race(page)
                _check_votes(page)
                _check_contrast(page, "light")
                _screenshot(page, race, SCREENSHOT)

                page.evaluate(_THEME_JS, "JupyterLab Dark")
                page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
                page.wait_for_timeout(500)  # let the theme's variables apply
                _check_contrast(page, "dark")
                _screenshot(page, race, SCREENSHOT_DARK)

                # Save, stop the kernel, reopen the notebook on a new kernel.
                page.evaluate(_SAVE_AND_SHUT_DOWN_JS)
                saved = json.loads((lab.root / NOTEBOOK.name).read_text())
                assert saved["cells"][0]["cell_type"] == "markdown"
                kinds = [
                    k
                    for c in saved["cells"]
                    for o in c.get("outputs", [])
                    for k in o.get("data", {})
                ]
                assert "text/html" in kinds
                assert "application/vnd.jupyter.widget-view+json" not in kinds
                _open(page, lab)
                race = _check_race(page)
                _check_votes(page)
                expect(page.get_by_text("Error displaying widget")).to_have_count(0)
                expect(page.get_by_text("model not found")).to_have_count(0)
                _screenshot(page, race, SCREENSHOT_REOPENED)
                timings["reopened"] = time.monotonic() - started
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "race_widget_failure.png"), full_page=True)
                print(f"JupyterLab log:\n{lab.log_tail()}")
                raise
        finally:
            browser.close()

    timings["total"] = time.monotonic() - started
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()})
    for shot in (SCREENSHOT, SCREENSHOT_DARK, SCREENSHOT_REOPENED):
        assert shot.stat().st_size > 10_000
        with shot.open("rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _open(page: Page, lab: Lab, name: str = NOTEBOOK.name) -> None:
    from playwright.sync_api import expect

    page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}")
    expect(page.locator(".jp-NotebookPanel .jp-Notebook")).to_be_visible()
    _wait_for(page, _kernel_idle_js(name), KERNEL_START_S, "an idle kernel")


def _screenshot(page: Page, race: Locator, path: Path) -> None:
    # Race cell at the top of the notebook viewport, the judges' cell below it.
    race.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)  # let the scroll settle before the capture
    page.screenshot(path=str(path), full_page=True)


_THEME_JS = """
async (theme) => { await window.jupyterapp.commands.execute('apputils:change-theme', {theme}); }
"""

_SAVE_AND_SHUT_DOWN_JS = _save_and_shut_down_js(NOTEBOOK.name)

# WCAG contrast of every element with its own text in the race outputs and %%mmo footers.
_CONTRAST_JS = """
() => {
  const parse = (c) => {
    const m = c && c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => {
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a)).concat([1]);
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255, 1];
    for (const layer of layers.reverse()) bg = over(layer, bg);
    return bg;
  };
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const roots = document.querySelectorAll('.mmo-race, .jp-OutputArea-output small');
  const out = [];
  for (const root of roots) {
    for (const el of [root, ...root.querySelectorAll('*')]) {
      const own = Array.from(el.childNodes)
        .filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
      if (!own || /^[\\p{Extended_Pictographic}\\s]+$/u.test(own)) continue;
      const bg = background(el);
      const fg = over(parse(getComputedStyle(el).color), bg);
      const [l1, l2] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
      out.push({text: own.slice(0, 100), ratio: (l1 + 0.05) / (l2 + 0.05),
                tag: el.tagName, color: getComputedStyle(el).color,
                background: 'rgb(' + bg.slice(0, 3).map(Math.round).join(',') + ')'});
    }
  }
  return out;
}
"""


def _check_contrast(page: Page, theme: str) -> None:
    """Every text in the race outputs and footers reaches MIN_CONTRAST against its background."""
    measured = page.evaluate(_CONTRAST_JS)
    texts = " ".join(m["text"] for m in measured)
    # The elements that were unreadable in the dark theme are among those measured.
    for needed in ("winner: geographer", "total", "another model answered first", "ttft"):
        assert needed in texts, f"{needed!r} not measured in {theme}"
    assert len(measured) > 40
    low = [m for m in measured if m["ratio"] < MIN_CONTRAST]
    print(f"{theme}: {len(measured)} texts, lowest contrast",
          round(min(m["ratio"] for m in measured), 2))  # fmt: skip
    assert not low, f"{theme} theme: text below {MIN_CONTRAST}:1 contrast: {low[:5]}"


def _accept_dialogs(page: Page) -> None:
    """Press the default button of each open JupyterLab dialog (e.g. "Select Kernel").

    A DOM click, not a Playwright click: that would re-enter the locator handler.
    """
    for title in page.evaluate(_ACCEPT_DIALOGS_JS):
        print(f"accepted a JupyterLab dialog: {title!r}")


def _wait_for(page: Page, predicate: str, timeout_s: float, what: str) -> None:
    """Poll a JavaScript predicate, accepting dialogs meanwhile (wait_for_function cannot)."""
    deadline = time.monotonic() + timeout_s
    dialogs = page.locator(".jp-Dialog")
    while not page.evaluate(predicate):
        if dialogs.count():
            _accept_dialogs(page)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout_s} s")
        page.wait_for_timeout(250)


def _check_race(page: Page) -> Locator:
    """Every panel of the three-model race is final; one trophy, on a panel with text."""
    from playwright.sync_api import expect

    cell = page.locator(".jp-CodeCell").filter(has_text="%mmo_race flaky,quick,sim-slow")
    expect(cell).to_have_count(1)
    panels = cell.locator(".mmo-race .mmo-panel")
    expect(panels).to_have_count(len(RACE_MODELS))
    for model in RACE_MODELS:
        panel = cell.locator(f'.mmo-panel[data-model="{model}"]')
        expect(panel).to_have_count(1)
        expect(panel).to_be_visible()
        assert panel.get_attribute("data-status") in FINAL_BADGES
        expect(panel.locator(".mmo-badge")).to_have_text(re.compile("|".join(FINAL_BADGES)))
    winner = panels.filter(has_text="🏆")
    expect(winner).to_have_count(1)
    expect(winner).to_have_attribute("data-model", "quick")  # 500 ms, fast; the others slower
    expect(winner.locator("pre")).to_have_text(re.compile(r"\S"))
    expect(winner.locator(".mmo-badge")).to_have_text("done")
    flaky = cell.locator('.mmo-panel[data-model="flaky"]')
    expect(flaky.locator(".mmo-stats")).to_contain_text(re.compile(r"try 1: error: .*503"))
    expect(cell.locator(".mmo-summary", has_text="first successful answer")).to_be_visible()
    # No cell failed, and no object repr was printed under the race.
    expect(page.locator(".jp-OutputArea-output", has_text="Traceback")).to_have_count(0)
    expect(cell.locator(".jp-OutputArea-output", has_text="RaceResult")).to_have_count(0)
    return cell


def _check_votes(page: Page) -> None:
    from playwright.sync_api import expect

    cell = page.locator(".jp-CodeCell").filter(has_text="%%mmo_race guesser,geographer")
    expect(cell).to_have_count(1)
    votes = cell.locator("table.mmo-votes")
    expect(votes).to_be_visible()
    expect(votes).to_contain_text("winner: geographer")
    expect(votes).to_contain_text("fair-judge")
    expect(votes.locator("tr", has_text="biased-judge")).to_contain_text(
        "tie (flipped when swapped)"
    )
    expect(cell.locator(".mmo-panel pre", has_text="Paris is the capital")).to_be_visible()
    # The judging section: each judge in each order, all voted; the biased judge took "A"
    # both times, which meant a different answer each time.
    judging = cell.locator("table.mmo-judging")
    expect(judging).to_be_visible()
    expect(judging.locator('tr[data-status="voted"]')).to_have_count(4)
    expect(judging.locator('tr[data-judge="biased-judge"][data-order="swapped"]')).to_contain_text(
        "geographer (shown as A)"
    )


# -- issue 28: money is never math, and a refused batch leaves no widget ---------------------------

MONEY_NOTEBOOK = "frontends_money.ipynb"
MONEY_SHOTS = {
    theme: ARTIFACTS / f"frontends_money_{theme}.png" for theme in ("light", "dark", "reopened")
}
BOARD_SHOTS = {
    theme: ARTIFACTS / f"frontends_leaderboard_{theme}.png" for theme in ("light", "dark")
}
_MONEY_SETUP = """\
import mmo_magic as mmo

mmo.register_function("teller", lambda request: "Prices: $5 and $6, and `$x` stays code.")
mmo.register_function("quoter", lambda request: "It costs $7.")
mmo.register_function("picker", lambda request: '{"winner": "A", "reason": "the first"}')
PRICE = {"cost_per_1k_input": 0.5, "cost_per_1k_output": 1.5}
orc = mmo.Orchestrator(
    [
        mmo.ModelConfig("function", "teller", **PRICE),
        mmo.ModelConfig("function", "quoter"),  # unpriced: its cost can't be known
        mmo.ModelConfig("function", "picker", **PRICE),  # a judge that always says "A"
    ],
    runlog=":memory:",
    cache=False,
)
mmo.use(orc)
items = [{"question": f"What does item {i} cost?"} for i in range(3)]"""
_MONEY_CELLS = {
    "answer": "%%mmo teller\nWhat do they cost?",
    "batch": "%%mmo_batch --data items --models teller --budget 5\n{question}",
    "refused": "%%mmo_batch --data items --models no-such-model --budget 5\n{question}",
    "runs": "%mmo_runs --last 3",
    "models": "%mmo_models",
    "judged": (
        "%%mmo_batch --data items --models teller,quoter --judge picker --allow-unpriced -o br\n"
        "{question}"
    ),
    "board": "br.leaderboard()",
}

# Every MathJax-typeset element (v3 and v2) inside the output areas.
_MATH_IN_OUTPUTS_JS = """
() => Array.from(document.querySelectorAll(
  '.jp-OutputArea-output mjx-container, .jp-OutputArea-output .MathJax, '
  + '.jp-OutputArea-output .MathJax_Display, .jp-OutputArea-output math'
)).map(e => (e.closest('.jp-Cell') || e).innerText.slice(0, 120))
"""


def _write_notebook(path: Path, setup: str, cells: dict[str, str]) -> None:
    """A notebook that loads the extension, runs ``setup``, then each of ``cells``."""
    import nbformat

    sources = ["%load_ext mmo_magic", setup, *cells.values()]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in sources])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def _cell(page: Page, cells: dict[str, str], which: str) -> Locator:
    """The code cell that runs ``cells[which]``, found by its first line."""
    first_line = cells[which].splitlines()[0]
    return page.locator(".jp-CodeCell").filter(has_text=first_line)


def _money_cell(page: Page, which: str) -> Locator:
    return _cell(page, _MONEY_CELLS, which)


def _check_money(page: Page, theme: str) -> None:
    """No money typeset as math; the answer's dollars and the batch's spend shown literally."""
    from playwright.sync_api import expect

    answer = _money_cell(page, "answer").locator(".jp-RenderedMarkdown")
    expect(answer).to_contain_text("Prices: $5 and $6")
    expect(answer.locator("code")).to_have_text("$x")
    batch = _money_cell(page, "batch").locator(".jp-OutputArea-output")
    expect(batch.first).to_contain_text(re.compile(r"\$\d[\d.]* spent"))
    typeset = page.evaluate(_MATH_IN_OUTPUTS_JS)
    assert typeset == [], f"{theme}: outputs typeset as math: {typeset}"


def _check_tables(page: Page) -> None:
    """%mmo_runs: local time, labelled, costs as money; %mmo_models: useful columns first."""
    from playwright.sync_api import expect

    runs = _money_cell(page, "runs").locator(".jp-OutputArea-output")
    expect(runs).to_contain_text("time: local (UTC")
    expect(runs).not_to_contain_text("<NA>")
    expect(runs.locator("td", has_text=re.compile(r"^\$\d"))).not_to_have_count(0)
    heads = _money_cell(page, "models").locator(".jp-OutputArea-output th").all_inner_texts()
    assert heads[:3] == ["name", "available", "why_unavailable"], heads
    assert "host" in heads
    # The leaderboard (issue 28 #13): rounded, money as the panels say it, "—" with a note
    # where usd_per_point can't be computed, never NaN.
    board = _money_cell(page, "board").locator(".jp-OutputArea-output")
    expect(board).to_contain_text("cost n/a")
    expect(board).to_contain_text('usd_per_point "—": not computable for the lowest-rated')
    expect(board).not_to_contain_text("NaN")
    expect(board.locator("td", has_text=re.compile(r"^1000$"))).not_to_have_count(0)


def _check_refused(page: Page) -> None:
    from playwright.sync_api import expect

    refused = _money_cell(page, "refused")
    expect(refused.locator(".jp-OutputArea-output")).to_contain_text("Unknown model")
    expect(refused.locator(".jp-OutputArea-output", has_text="batch starting")).to_have_count(0)
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)


@pytest.mark.timeout(400)
def test_money_is_literal_and_a_refused_batch_leaves_no_widget(lab: Lab) -> None:
    from playwright.sync_api import expect, sync_playwright

    chromium = _chromium()
    assert chromium is not None
    ARTIFACTS.mkdir(exist_ok=True)
    _write_notebook(lab.root / MONEY_NOTEBOOK, _MONEY_SETUP, _MONEY_CELLS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)
            page.add_locator_handler(page.locator(".jp-Dialog"), lambda: _accept_dialogs(page))
            try:
                _open(page, lab, MONEY_NOTEBOOK)
                page.evaluate(_run_all_js(MONEY_NOTEBOOK))
                _wait_for(page, _all_executed_js(MONEY_NOTEBOOK), 120, "every code cell to run")
                page.wait_for_timeout(1500)  # MathJax typesets after rendering: give it time
                _check_money(page, "light")
                _check_refused(page)
                _check_tables(page)
                page.screenshot(path=str(MONEY_SHOTS["light"]), full_page=True)
                _money_cell(page, "board").screenshot(path=str(BOARD_SHOTS["light"]))

                page.evaluate(_THEME_JS, "JupyterLab Dark")
                page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
                page.wait_for_timeout(1000)
                _check_money(page, "dark")
                page.screenshot(path=str(MONEY_SHOTS["dark"]), full_page=True)
                _money_cell(page, "board").screenshot(path=str(BOARD_SHOTS["dark"]))

                page.evaluate(_save_and_shut_down_js(MONEY_NOTEBOOK))
                saved = json.loads((lab.root / MONEY_NOTEBOOK).read_text())
                kinds = [
                    k
                    for c in saved["cells"]
                    for o in c.get("outputs", [])
                    for k in o.get("data", {})
                ]
                assert "application/vnd.jupyter.widget-view+json" not in kinds
                _open(page, lab, MONEY_NOTEBOOK)
                page.wait_for_timeout(1500)
                _check_money(page, "reopened")
                _check_refused(page)
                page.screenshot(path=str(MONEY_SHOTS["reopened"]), full_page=True)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "frontends_money_failure.png"), full_page=True)
                print(f"JupyterLab log:\n{lab.log_tail()}")
                raise
        finally:
            browser.close()
    for shot in MONEY_SHOTS.values():
        assert shot.stat().st_size > 10_000


LOCAL_MATHJAX = Path("/usr/share/javascript/mathjax/MathJax.js")  # apt-get install libjs-mathjax
_MATHJAX_DONE_JS = """
() => new Promise(done => {
  if (!window.MathJax || !window.MathJax.Hub) return done('no MathJax');
  window.MathJax.Hub.Queue(() => done('typeset'));
})
"""


@pytest.mark.timeout(300)
def test_nbconvert_html_with_mathjax_keeps_money_literal(tmp_path: Path) -> None:
    """The executed notebook through nbconvert, with MathJax 2 (nbconvert's default major)
    loaded from a local copy: no output is typeset, and the dollars read as written."""
    reason = _missing()
    if reason or not LOCAL_MATHJAX.exists():
        pytest.skip(reason or "no local MathJax: `apt-get install -y libjs-mathjax`")
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter
    from playwright.sync_api import sync_playwright

    path = tmp_path / MONEY_NOTEBOOK
    _write_notebook(path, _MONEY_SETUP, _MONEY_CELLS)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3").execute(cwd=str(tmp_path))
    nb.cells.append(nbformat.v4.new_markdown_cell("Control: $x^2$ is math."))
    exporter = HTMLExporter(mathjax_url=f"file://{LOCAL_MATHJAX}?config=TeX-AMS_CHTML-full,Safe")
    body, _ = exporter.from_notebook_node(nb)
    page_path = tmp_path / "money.html"
    page_path.write_text(body)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=_chromium(), args=[*CHROMIUM_ARGS, "--allow-file-access-from-files"]
        )
        try:
            page = browser.new_page()
            page.goto(page_path.as_uri())
            assert page.evaluate(_MATHJAX_DONE_JS) == "typeset"  # MathJax ran on the page
            # It does typeset real math (the control cell); the outputs must hold none.
            control = page.locator(".jp-MarkdownCell .MathJax_CHTML, .jp-MarkdownCell .MathJax")
            assert control.count() >= 1
            typeset = page.evaluate(
                """() => Array.from(document.querySelectorAll(
                     '.jp-OutputArea-output .MathJax, .jp-OutputArea-output .MathJax_CHTML,'
                     + ' .jp-OutputArea-output .mjx-chtml')).map(e => e.textContent)"""
            )
            assert typeset == [], typeset
            text = page.inner_text("body")
            assert "Prices: $5 and $6, and $x stays code." in text
            assert re.search(r"\$\d[\d.]* spent", text)
            page.screenshot(path=str(ARTIFACTS / "frontends_money_nbconvert.png"), full_page=True)
        finally:
            browser.close()


# -- issues 25 and 28 #6: thumbnails, the live "thinking" and "retrying" badges --------------------

LIVE_NOTEBOOK = "frontends_live.ipynb"
_LIVE_SETUP = """\
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import mmo_magic as mmo

fig, ax = plt.subplots(figsize=(3, 2))
ax.bar(["north", "south", "west"], [3, 5, 2], color=["#1976d2", "#388e3c", "#f57c00"])
ax.set_title("sales")
fig.savefig("chart.png", dpi=80)
plt.close(fig)
orc = mmo.get_orchestrator()
orc.add_model(mmo.ModelConfig("sim", "sim-fast?reply=parts", name="looker"))
orc.add_model(mmo.ModelConfig("sim", "sim-fast?ttft_ms=300", name="quick"))
orc.add_model(mmo.ModelConfig("sim", "sim-fast?think_ms=4000", name="thinker", reasoning=True))
orc.add_model(
    mmo.ModelConfig("sim", "sim-slow?think_ms=5000&think=12", name="deep", reasoning=True)
)
orc.add_model(mmo.ModelConfig("sim", "sim-fast?ttft_ms=15000", name="slow"))
runs = globals().get("runs", 0)  # counts on when the notebook runs again in this kernel"""
# The retry waits the sim's Retry-After (4 s, no jitter) and the other model takes 15 s, so
# the badges' order never depends on the machine's speed. A new flaky model each run: its one
# 503 comes back when the notebook runs again in the same kernel (the Dark pass).
_LIVE_CELLS = {
    "answer": "%%mmo looker --image chart.png\nWhat does this chart show?",
    "race": "%%mmo --race looker,quick --image chart.png\nDescribe the chart.",
    "thinking": "%mmo_race --all --reasoning-effort low thinker,deep Why is the sky blue?",
    "retrying": (
        "runs += 1\n"
        'flaky = f"sim-fast?fail=503&fail_times=1&retry_after=4&ttft_ms=1500&tokens={10 + runs}"\n'
        'orc.add_model(mmo.ModelConfig("sim", flaky, name="flaky", max_retries=2))\n'
        "%mmo_race flaky,slow Name a colour."
    ),
}
LIVE_SHOTS = ARTIFACTS / "frontends_live"


def _live_cell(page: Page, which: str) -> Locator:
    return _cell(page, _LIVE_CELLS, which)


def _wait_for_badge(page: Page, which: str, model: str, pattern: str, shot: Path) -> str:
    """Wait until ``model``'s live badge in the ``which`` cell matches ``pattern``; screenshot
    the cell then. Returns the badge's text."""
    cell = _live_cell(page, which)
    badge = cell.locator(
        f"xpath=.//span[contains(@class, 'mmo-badge')][preceding-sibling::b[1][text()='{model}']]"
    )
    deadline = time.monotonic() + 60
    while True:
        texts = badge.all_inner_texts()
        if any(re.fullmatch(pattern, t) for t in texts):
            cell.scroll_into_view_if_needed()
            cell.screenshot(path=str(shot))
            return next(t for t in texts if re.fullmatch(pattern, t))
        if time.monotonic() > deadline:
            raise TimeoutError(f"{model}'s badge never read {pattern!r} (last: {texts})")
        page.wait_for_timeout(100)


_IMAGES_LOADED_JS = """
(cell) => Array.from(cell.querySelectorAll('img.mmo-thumb'))
  .map(img => img.complete && img.naturalWidth > 0)
"""


def _check_live_outputs(page: Page) -> None:
    """The finished cells: thumbnails loaded, thinking noted, the retry's failed try in sight."""
    from playwright.sync_api import expect

    for which in ("answer", "race"):
        cell = _live_cell(page, which)
        expect(cell.locator("img.mmo-thumb")).to_have_count(1)
        assert cell.locator("img.mmo-thumb").evaluate(
            "img => img.complete && img.naturalWidth > 0"
        ), f"{which}: the thumbnail did not load"
    thinking = _live_cell(page, "thinking")
    expect(thinking.locator(".mmo-panel")).to_have_count(2)
    expect(thinking.locator(".mmo-stats", has_text=re.compile(r"thought \d+ ms"))).to_have_count(2)
    retrying = _live_cell(page, "retrying")
    flaky = retrying.locator('.mmo-panel[data-model="flaky"]')
    expect(flaky).to_have_attribute("data-status", "done")
    expect(flaky.locator(".mmo-stats")).to_contain_text(re.compile(r"try 1: error: .*503"))
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)
    expect(page.locator(".jp-OutputArea-output", has_text="Traceback")).to_have_count(0)


def _run_live(page: Page, theme: str) -> dict[str, str]:
    """Run the notebook, catching the live badges as they show; then the finished outputs."""
    LIVE_SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate(_run_all_js(LIVE_NOTEBOOK))
    seen = {
        "thinking": _wait_for_badge(
            page, "thinking", "thinker", r"thinking \d+\.\d s", LIVE_SHOTS / f"thinking_{theme}.png"
        ),
        "retrying": _wait_for_badge(
            page, "retrying", "flaky", r"retrying in 4\.0 s", LIVE_SHOTS / f"retrying_{theme}.png"
        ),
        "sent": _wait_for_badge(
            page,
            "retrying",
            "flaky",
            r"(retrying|streaming) · try 2",
            LIVE_SHOTS / f"sent_{theme}.png",
        ),
    }
    _wait_for(page, _all_executed_js(LIVE_NOTEBOOK), 120, "every code cell to run")
    _check_live_outputs(page)
    page.screenshot(path=str(LIVE_SHOTS / f"finished_{theme}.png"), full_page=True)
    return seen


@pytest.mark.timeout(500)
def test_thumbnails_and_live_thinking_and_retrying_badges(lab: Lab) -> None:
    from playwright.sync_api import expect, sync_playwright

    chromium = _chromium()
    assert chromium is not None
    _write_notebook(lab.root / LIVE_NOTEBOOK, _LIVE_SETUP, _LIVE_CELLS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)
            page.add_locator_handler(page.locator(".jp-Dialog"), lambda: _accept_dialogs(page))
            try:
                _open(page, lab, LIVE_NOTEBOOK)
                light = _run_live(page, "light")
                page.evaluate(_THEME_JS, "JupyterLab Dark")
                page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
                page.wait_for_timeout(500)
                dark = _run_live(page, "dark")
                print("badges seen:", light, dark)

                page.evaluate(_save_and_shut_down_js(LIVE_NOTEBOOK))
                saved = json.loads((lab.root / LIVE_NOTEBOOK).read_text())
                outputs = [o for c in saved["cells"] for o in c.get("outputs", [])]
                kinds = [k for o in outputs for k in o.get("data", {})]
                assert "application/vnd.jupyter.widget-view+json" not in kinds
                _open(page, lab, LIVE_NOTEBOOK)
                page.wait_for_timeout(1000)
                _check_live_outputs(page)
                page.screenshot(path=str(LIVE_SHOTS / "reopened.png"), full_page=True)
            except Exception:
                page.screenshot(path=str(LIVE_SHOTS / "failure.png"), full_page=True)
                print(f"JupyterLab log:\n{lab.log_tail()}")
                raise
        finally:
            browser.close()
