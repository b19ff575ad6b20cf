"""Helpers shared by the test modules: import them from here (``from helpers import ...``).

Fixtures live in ``conftest.py``; everything a test module imports by name lives
here, once: the simulated models, the gateway on a free port, the tool and
sampling examples, and running the shipped notebooks in a real kernel.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import mmo_magic as mmo

if TYPE_CHECKING:
    import httpx
    import nbformat
    import openai

T = TypeVar("T")

# -- the simulated models -------------------------------------------------------------------------

OPENAI_KEY_ENV = "MMO_TEST_OPENAI_KEY"
ANTHROPIC_KEY_ENV = "MMO_TEST_ANTHROPIC_KEY"
PRICE_IN, PRICE_OUT = 0.002, 0.006  # USD per 1k tokens for the test models

# The raw SDKs pointed at the simulated provider (tests of its wire formats). The keys
# are fake but recognisable, so tests can check they never come back in errors or logs.
SIM_OPENAI_KEY = "sk-secret-1"
SIM_ANTHROPIC_KEY = "sk-ant-secret-2"


def sim_models(sim: Any, *, priced: bool = True) -> list[mmo.ModelConfig]:
    """Three ways to reach the simulated provider: openai and anthropic SDKs, and a local server."""
    prices: dict[str, Any] = (
        {"cost_per_1k_input": PRICE_IN, "cost_per_1k_output": PRICE_OUT} if priced else {}
    )
    prices["max_retries"] = 0  # the reliability tests turn retries on where they test them
    return [
        mmo.ModelConfig("openai", "sim-fast", name="oa", base_url=sim.openai_base_url,
                        api_key_env=OPENAI_KEY_ENV, **prices),
        mmo.ModelConfig("anthropic", "sim-fast", name="an", base_url=sim.anthropic_base_url,
                        api_key_env=ANTHROPIC_KEY_ENV, **prices),
        mmo.ModelConfig("local", "sim-fast", name="lo", base_url=sim.openai_base_url, **prices),
    ]  # fmt: skip


def with_model_id(orc: mmo.Orchestrator, name: str, model_id: str, **changes: Any) -> str:
    """Register a copy of model ``name`` sending ``model_id`` (sim options); return its name."""
    new_name = f"{name}:{model_id}"
    orc.add_model(orc.catalogue.resolve(name).replace(name=new_name, model_id=model_id, **changes))
    return new_name


# -- request examples -----------------------------------------------------------------------------

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1},
            },
            "required": ["city", "unit"],
        },
    },
}
SAMPLING: dict[str, Any] = {
    "stop": ["\n\n", "END"],
    "seed": 7,
    "top_p": 0.9,
    "frequency_penalty": 0.5,
    "presence_penalty": -0.25,
    "logit_bias": {"50256": -100, "17": 2.5},
    "user": "user-1234",
}
ANTHROPIC_LACKS = ["seed", "frequency_penalty", "presence_penalty", "logit_bias"]


# -- waiting and serving --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(probe: Callable[[], T], what: str, within_s: float = 10) -> T:
    """Poll ``probe`` until it returns something truthy (a liveness bound, not a timing test)."""
    deadline = time.monotonic() + within_s
    while not (found := probe()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)
    return found


KEY = "client-key-0123456789abcdef"
OTHER_KEY = "second-client-key-ghijklmnop"
USER = [{"role": "user", "content": "hello there"}]


@contextlib.contextmanager
def mmo_serve(config: Path, runlog: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The ``mmo-serve`` command in its own process on a free port; yields it and its URL."""
    import httpx

    script = Path(sys.executable).with_name("mmo-serve")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mmo_magic.service"]
    port = free_port()
    env = {**os.environ, "MMO_CACHE": "off"}
    env.pop("MMO_SERVER_KEYS", None)
    process = subprocess.Popen(
        [*command, "--port", str(port), "--config", str(config), "--runlog", str(runlog)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, process.communicate()[1]
        with contextlib.suppress(httpx.TransportError):
            return bool(httpx.get(f"{url}/health").json()["status"] == "ok")
        return False

    try:
        eventually(healthy, "mmo-serve answering /health", within_s=60)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` on uvicorn in a thread, on a free loopback port; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    eventually(lambda: server.started, "uvicorn started")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Service:
    """The gateway on a free port and the orchestrator behind it."""

    url: str
    orc: mmo.Orchestrator

    def http(self, key: str | None = KEY) -> httpx.Client:
        import httpx

        headers = {} if key is None else {"authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def post(self, path: str, body: Any) -> httpx.Response:
        with self.http() as http:
            return http.post(path, json=body)

    def sdk(self, key: str = KEY) -> openai.AsyncOpenAI:
        import openai

        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)

    def model(self, model_id: str, base: str = "oa", **fields: Any) -> str:
        """Register a copy of ``base`` sending ``model_id`` (sim options); return its name.

        Priced above the base models, so the routers never pick these.
        """
        name = f"{base}:{model_id}"
        fields = {"cost_per_1k_input": 0.5, "cost_per_1k_output": 1.0, **fields}
        config = self.orc.catalogue.resolve(base)
        self.orc.add_model(config.replace(name=name, model_id=model_id, **fields))
        return name


@contextlib.contextmanager
def plain_service(sim: Any) -> Iterator[Service]:
    """The service with default settings over the three simulated models (oa, an, lo), on
    uvicorn in a thread: for test modules about what clients send through it."""
    import pytest

    from mmo_magic.service import create_app

    with pytest.MonkeyPatch.context() as env:
        env.setenv(OPENAI_KEY_ENV, "sk-test-openai-plain-0000000")
        env.setenv(ANTHROPIC_KEY_ENV, "sk-ant-test-plain-00000000")
        orc = mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:", cache=False)
        with orc, serving(create_app(orc, keys=[KEY])) as url:
            yield Service(url, orc)


def chat(model: str, messages: list[dict[str, Any]] = USER, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": messages, **fields}


def sse_data(lines: list[str]) -> list[str]:
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


# -- the shipped notebooks ------------------------------------------------------------------------

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_notebook(
    name: str, tmp_path: Path, *, store_widget_state: bool = False
) -> nbformat.NotebookNode:
    """Execute notebooks/``name`` top to bottom in a real kernel.

    Without saved widget state by default: what a saved notebook shows must not need it.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        store_widget_state=store_widget_state,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    return nb


def outputs(cell: nbformat.NotebookNode) -> str:
    """A cell's text: stream chunks joined as printed, then each display's plain text or markdown.

    HTML twins would only repeat the text; images are checked on their own.
    """
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        data = out.get("data", {})
        parts.extend(str(data[k]) + "\n" for k in ("text/plain", "text/markdown") if k in data)
    return "".join(parts)


# -- durability: full and read-only filesystems (issue 27) ----------------------------------------


@contextlib.contextmanager
def tiny_filesystem(where: Path, size: str = "64k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where``: a disk that fills up for real.

    Needs root (CAP_SYS_ADMIN): the test is skipped otherwise. ``RLIMIT_FSIZE`` would
    fail every file of the process alike, so it cannot show a fallback location working.
    """
    import pytest

    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True, text=True,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount(where: Path, options: str) -> None:
    """Remount the tiny filesystem at ``where`` (``"ro"``, ``"rw"``, ``"size=10m"``)."""
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def fill(where: Path) -> None:
    """Fill the filesystem at ``where`` to the last byte."""
    with contextlib.suppress(OSError), (where / "filler").open("wb") as out:
        while True:
            out.write(b"\0" * 4096)
            out.flush()
