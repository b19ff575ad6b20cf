"""Issue 28 #3 in a real kernel: a prompt ending in "?" on a line magic is a prompt.

IPython's help transformer used to read ``%mmo_route What is the capital of France?`` as
help on ``France`` ("Object `France` not found"), in JupyterLab and the terminal alike.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Iterator
from typing import Any

import pytest

SETUP = """
import mmo_magic as mmo
mmo.register_function("capital", lambda request: "Paris.")
mmo.register_function("slow-capital", lambda request: "Paris, eventually.")
orc = mmo.Orchestrator(
    [mmo.ModelConfig("function", "capital"), mmo.ModelConfig("function", "slow-capital")],
    default_model="capital", runlog=":memory:", cache=False,
)
mmo.use(orc)
%load_ext mmo_magic
"""


@pytest.fixture
def kernel() -> Iterator[Any]:
    jupyter_client = pytest.importorskip("jupyter_client")
    pytest.importorskip("ipykernel")
    manager, client = jupyter_client.manager.start_new_kernel(
        kernel_name="python3", env=dict(os.environ), startup_timeout=60
    )
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _execute(client: Any, code: str, timeout: float = 60) -> tuple[str, list[dict[str, Any]]]:
    """Run ``code``; (its stream text, its display and result outputs' data)."""
    msg_id = client.execute(code)
    text, data = "", []
    while True:
        try:
            msg = client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no reply to {code!r} in {timeout} s") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            text += content["text"]
        elif kind in ("display_data", "execute_result", "update_display_data"):
            data.append(content["data"])
        elif kind == "error":
            text += "\n".join(content["traceback"])
        elif kind == "status" and content["execution_state"] == "idle":
            break
    reply = client.get_shell_msg(timeout=timeout)  # help goes to the pager: the reply's payload
    while reply["parent_header"].get("msg_id") != msg_id:  # an earlier cell's reply
        reply = client.get_shell_msg(timeout=timeout)
    for payload in reply["content"].get("payload", []):
        data.append(payload.get("data", {}))
    return text, data


@pytest.mark.timeout(120)
def test_line_magics_take_a_prompt_ending_in_a_question_mark(kernel) -> None:
    text, _ = _execute(kernel, SETUP)
    assert "Error" not in text, text

    text, data = _execute(kernel, "%mmo_route What is the capital of France?")
    assert "not found" not in text, text
    shown = " ".join(d.get("text/markdown", d.get("text/plain", "")) for d in data)
    assert "capital" in shown and "router" in shown, (text, data)

    text, _ = _execute(kernel, "d = %mmo_route -r cost What is the capital of France?")
    check, _ = _execute(kernel, "print(type(d).__name__, d.model)")
    assert check.split() == ["RouteDecision", "capital"], (text, check)

    text, _ = _execute(
        kernel, "%mmo_race capital,slow-capital -o race What is the capital of France?"
    )
    assert "not found" not in text, text
    check, _ = _execute(kernel, "print(race.winner.content, race.responses[0].status)")
    assert check.strip().startswith("Paris"), (text, check)

    # The magic's own help is still one "?" away.
    text, data = _execute(kernel, "%mmo_route?")
    help_text = text + " ".join(str(d) for d in data)
    assert "Explain which model a router would choose" in help_text, help_text
