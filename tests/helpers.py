"""Helpers shared by the test modules: import them from here (``from helpers import ...``).

Fixtures live in ``conftest.py``; everything a test module imports by name lives
here, once: the simulated models, the gateway on a free port, the tool and
sampling examples, and running the shipped notebooks in a real kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
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


@contextlib.asynccontextmanager
async def forward_proxy() -> AsyncIterator[tuple[str, list[str]]]:
    """A plain-HTTP forward proxy on 127.0.0.1, as ``HTTP_PROXY`` names one: yields its URL
    and the request targets it relayed (absolute URLs). One request a connection, sent on
    to the origin with ``Connection: close`` and its answer relayed until the origin closes."""
    seen: list[str] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, _, rest = head.partition(b"\r\n")
            method, target, version = line.split(b" ", 2)
            seen.append(target.decode())
            url = urllib.parse.urlsplit(target.decode())
            headers = [h for h in rest.split(b"\r\n") if h]
            length = next((int(h.split(b":", 1)[1]) for h in headers
                           if h.lower().startswith(b"content-length:")), 0)  # fmt: skip
            body = await reader.readexactly(length)
            kept = b"".join(h + b"\r\n" for h in headers
                            if not h.lower().startswith((b"connection:", b"proxy-")))  # fmt: skip
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            origin_reader, origin_writer = await asyncio.open_connection(url.hostname, url.port)
            origin_writer.write(b"%s %s %s\r\n%sConnection: close\r\n\r\n%s"
                                % (method, path.encode(), version, kept, body))  # fmt: skip
            while data := await origin_reader.read(65536):
                writer.write(data)
                await writer.drain()
            origin_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


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


# -- learned routing: a synthetic world with known truth ------------------------------------------
# Six kinds of prompt, generated from templates (no benchmark set), and three models whose
# true mean grade (1-10) on each kind and price per call are set here. Judges grade the
# true score plus Gaussian noise, rounded to whole grades; an item also has a difficulty
# shared by the models. Routing can only win by telling the kinds apart from the prompts.

_SLOTS = {
    "lang": ["Python", "JavaScript", "Rust", "Go", "Java", "C++", "TypeScript", "SQL"],
    "thing": ["list", "string", "dictionary", "binary tree", "graph", "matrix", "queue",
              "linked list", "CSV file", "JSON document", "date range", "set of intervals"],
    "topic": ["a library", "a bakery", "a hospital", "a school", "a bank", "a train station",
              "a museum", "a football club", "a bookshop", "a farm", "a hotel", "a pharmacy"],
    "person": ["a pirate captain", "a medieval knight", "a detective", "a space explorer",
               "a grumpy wizard", "a tour guide", "a chef", "a time traveller", "a robot butler"],
    "field": ["name", "date", "price", "email address", "phone number", "city", "order number"],
    "event": ["the French Revolution", "the Moon landing", "the fall of Rome", "the printing press",
              "the Silk Road", "the Industrial Revolution", "the Renaissance", "the Cold War"],
}  # fmt: skip

WORLD_TEMPLATES = {
    "coding": [
        "Write a {lang} function that sorts a {thing} without using the built-in sort.",
        "Fix the bug in this {lang} code that reverses a {thing}: it fails on empty input.",
        "Implement a {lang} class that caches lookups in a {thing} with an LRU policy.",
        "How do I parse a {thing} in {lang} and handle malformed input gracefully?",
        "Refactor this {lang} loop over a {thing} into a generator and explain the speed-up.",
        "Write unit tests in {lang} for a function that merges two {thing}s.",
    ],
    "math": [
        "Solve for x: {a}x + {b} = {c}x - {d}. Show each step.",
        "What is the derivative of x^{a} * sin({b}x)? Simplify the result.",
        "A train travels {a}0 km in {b} hours, then {c}0 km in {d} hours. Average speed?",
        "Prove that the sum of the first {a} odd numbers is a perfect square.",
        "Compute the integral of {a}x^2 + {b}x from 0 to {c}.",
        "How many ways can {a} people sit around a round table if {b} must sit together?",
    ],
    "writing": [
        "Write a short story about {topic} on the day everything went wrong.",
        "Draft a persuasive essay arguing that {topic} should open on Sundays.",
        "Compose a poem about the quiet mornings at {topic}.",
        "Write a heartfelt speech for the retirement of the oldest employee at {topic}.",
        "Write a blog post describing a week behind the scenes at {topic}.",
        "Write the opening chapter of a mystery novel set in {topic}.",
    ],
    "extraction": [
        "Extract the {field} and the {field2} from this text: 'Invoice {a}{b} from {topic}.'",
        "From the email below, pull out every {field} and return them as JSON.",
        "List each {field} mentioned in this receipt from {topic}, one per line.",
        "Return a table of {field} and {field2} from the following customer records.",
        "Find the {field} in this message from {topic} and give only that value.",
        "Parse the {field} out of these log lines and output them as a CSV column.",
    ],
    "roleplay": [
        "Pretend you are {person} and greet a new visitor to {topic}.",
        "Stay in character as {person} and explain why you are late.",
        "You are {person}. Describe your morning routine in your own voice.",
        "Act as {person} giving directions to {topic}.",
        "Role-play {person} complaining about the food at {topic}.",
        "Imagine you are {person} and answer questions from a curious child.",
    ],
    "trivia": [
        "When did {event} happen and why did it matter?",
        "Who were the key figures of {event}?",
        "Give me three surprising facts about {event}.",
        "What caused {event}, in two sentences?",
        "How is {event} remembered today?",
        "Summarise the consequences of {event} for ordinary people.",
    ],
}

# True mean grade of each model on each kind of prompt, and its price per call (USD).
WORLD_GRADES = {
    "small": {"coding": 3.0, "math": 2.5, "writing": 6.0, "extraction": 8.3, "roleplay": 8.0,
              "trivia": 7.0},
    "medium": {"coding": 8.0, "math": 5.0, "writing": 8.2, "extraction": 8.4, "roleplay": 8.0,
               "trivia": 8.2},
    "large": {"coding": 8.5, "math": 8.6, "writing": 8.5, "extraction": 8.5, "roleplay": 8.3,
              "trivia": 8.5},
}  # fmt: skip
WORLD_PRICES = {"small": 0.0002, "medium": 0.002, "large": 0.02}


@dataclass
class World:
    """Items of the synthetic world: prompt, kind, true grades, judges' grades, cost."""

    prompts: list[str]
    kinds: list[str]
    truth: list[dict[str, float]]
    grades: list[dict[str, list[float]]]
    costs: list[dict[str, float]]
    models: tuple[str, ...]

    def quality(self) -> list[list[float]]:
        """Per item and model: the judges' mean grade scaled to [0, 1]."""
        return [[(sum(g[m]) / len(g[m]) - 1) / 9 for m in self.models] for g in self.grades]

    def cost(self) -> list[list[float]]:
        return [[c[m] for m in self.models] for c in self.costs]

    def evidence(self) -> Any:
        from mmo_magic.routing.learned import RoutingEvidence

        return RoutingEvidence(
            self.prompts, list(self.models), self.quality(), self.cost(), source="synthetic"
        )


def make_world(
    n: int,
    seed: int,
    models: tuple[str, ...] = ("small", "medium", "large"),
    *,
    judges: int = 2,
    noise: float = 1.0,
    grades: dict[str, dict[str, float]] | None = None,
) -> World:
    """``n`` items of the synthetic world, reproducible from ``seed``."""
    import random

    rng = random.Random(seed)
    table = grades or WORLD_GRADES
    kinds = list(WORLD_TEMPLATES)
    world = World([], [], [], [], [], models)
    for _ in range(n):
        kind = rng.choice(kinds)
        field, field2 = rng.sample(_SLOTS["field"], 2)
        values = {k: rng.choice(v) for k, v in _SLOTS.items() if k != "field"}
        numbers = {k: rng.randint(2, 9) for k in "abcd"}
        prompt = rng.choice(WORLD_TEMPLATES[kind]).format(
            **values, **numbers, field=field, field2=field2
        )
        shift = rng.gauss(0, 0.4)  # the item's difficulty, shared by the models
        true = {m: min(10.0, max(1.0, table[m][kind] + shift)) for m in models}
        judged = {
            m: [float(min(10, max(1, round(true[m] + rng.gauss(0, noise))))) for _ in range(judges)]
            for m in models
        }
        length = rng.uniform(0.7, 1.3)  # the answer's length drives its measured cost
        world.prompts.append(prompt)
        world.kinds.append(kind)
        world.truth.append(true)
        world.grades.append(judged)
        world.costs.append({m: WORLD_PRICES[m] * length for m in models})
    return world


# -- request arrivals at the sim (evaluation: judges inside their rate limits) ---------------------


@contextlib.contextmanager
def arrivals(sim: Any, model: str) -> Iterator[list[float]]:
    """Times (time.monotonic) at which requests for ``model`` (the name sent, options
    included) reached the sim, polled every 2 ms while the block runs."""
    times: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        seen = sim.request_count(model)
        while not stop.is_set():
            count = sim.request_count(model)
            times.extend([time.monotonic()] * (count - seen))
            seen = count
            time.sleep(0.002)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield times
    finally:
        time.sleep(0.05)  # the last arrivals
        stop.set()
        thread.join()


# -- the magics in a real IPython shell ----------------------------------------------------------


@contextlib.contextmanager
def magic_shell(orc: mmo.Orchestrator) -> Iterator[Any]:
    """A real ``InteractiveShell`` with ``%load_ext mmo_magic`` run over ``orc``, as a terminal
    IPython has it (no kernel); unloaded and cleared afterwards."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    mmo.use(orc)
    shell.run_line_magic("load_ext", "mmo_magic")
    try:
        yield shell
    finally:
        shell.run_line_magic("unload_ext", "mmo_magic")
        mmo.use(None)
        InteractiveShell.clear_instance()
