"""No API key in any exception the library raises: its chain, args, attributes, tracebacks.

The simulated provider echoes the request's key in its error body (``echo_key=1``),
as some real providers do; the SDK exceptions then carry it in their message and
body, and always in their request's headers.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import traceback
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import mmo_magic as mmo

CANARIES = {
    "MMO_CANARY_OPENAI_KEY": "sk-canary-openai-5f3a9c1e7d2b",
    "MMO_CANARY_ANTHROPIC_KEY": "sk-ant-canary-8e1d4b6f0a3c",
    "MMO_CANARY_LOCAL_KEY": "canary-local-key-3c9e7a51",  # no key shape: found by its variable
}
PROVIDERS = {"openai": "MMO_CANARY_OPENAI_KEY", "anthropic": "MMO_CANARY_ANTHROPIC_KEY",
             "local": "MMO_CANARY_LOCAL_KEY"}  # fmt: skip


@pytest.fixture
def canaries(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    return CANARIES


def echoing(sim, fail: str = "401") -> list[mmo.ModelConfig]:  # type: ignore[no-untyped-def]
    """One model per provider whose errors quote the key it was sent."""
    return [
        mmo.ModelConfig(
            provider, f"sim-fast?fail={fail}&echo_key=1", name=f"leaky-{provider}",
            base_url=sim.anthropic_base_url if provider == "anthropic" else sim.openai_base_url,
            api_key_env=env, max_retries=0,
        )
        for provider, env in PROVIDERS.items()
    ]  # fmt: skip


def chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending = [exc]
    while pending:
        e = pending.pop()
        if id(e) not in seen:
            seen.add(id(e))
            yield e
            pending += [c for c in (e.__cause__, e.__context__) if c is not None]


def texts(value: Any, depth: int = 0) -> Iterator[str]:
    """Every text inside ``value``, following containers, dataclasses, objects and exceptions."""
    if depth > 8:
        return
    if isinstance(value, str | bytes):
        yield value if isinstance(value, str) else value.decode("latin-1")
        return
    if isinstance(value, BaseException):
        yield from texts(value.args, depth + 1)
        yield from texts(vars(value), depth + 1)
        for e in (value.__cause__, value.__context__):
            if e is not None:
                yield from texts(e, depth + 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from texts(k, depth + 1)
            yield from texts(v, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from texts(v, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from texts(getattr(value, f.name), depth + 1)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        yield repr(value)
        yield from texts(vars(value), depth + 1)
    elif value is not None:
        yield repr(value)


def assert_clean(exc: BaseException, secrets: dict[str, str]) -> None:
    formatted = "".join(traceback.format_exception(exc))
    for value in secrets.values():
        assert value not in formatted, formatted
        for e in chain(exc):
            leaked = [t for t in texts(e) if value in t]
            assert not leaked, f"{type(e).__name__} carries a key: {leaked[:2]}"


def test_the_sim_really_echoes_the_key(sim, canaries):
    """The premise: without the scrub the SDK exception would carry the key."""
    import openai

    client = openai.OpenAI(api_key=canaries["MMO_CANARY_OPENAI_KEY"], base_url=sim.openai_base_url)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="sim-fast?fail=401&echo_key=1", messages=[
            {"role": "user", "content": "hi"}])  # fmt: skip
    assert canaries["MMO_CANARY_OPENAI_KEY"] in str(info.value)
    assert canaries["MMO_CANARY_OPENAI_KEY"] in "".join(texts(info.value))


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("fail", ["401", "400", "429"])
def test_no_key_in_the_chain_of_a_failed_call(sim, canaries, provider, fail):
    orc = mmo.Orchestrator(echoing(sim, fail), runlog=":memory:", cache=False)
    with orc, pytest.raises(mmo.ProviderError) as info:
        orc.complete("hi", model=f"leaky-{provider}")
    sdk = info.value.__cause__
    # What is left is still useful: the SDK's type and its (redacted) message.
    assert sdk is not None and type(sdk).__module__.split(".")[0] in ("openai", "anthropic")
    assert "***" in str(sdk)
    assert_clean(info.value, canaries)


def test_no_key_when_every_model_failed(sim, canaries):
    models = echoing(sim)
    chained = models[0].replace(fallbacks=tuple(m.name for m in models[1:]))
    with mmo.Orchestrator([chained, *models[1:]], runlog=":memory:", cache=False) as orc:
        with pytest.raises(mmo.AllModelsFailedError) as info:
            orc.complete("hi", model=chained.name)
        assert_clean(info.value, canaries)
        with pytest.raises(mmo.AllModelsFailedError) as raced:
            orc.race("hi", models=[m.name for m in models])
        assert_clean(raced.value, canaries)


def test_no_key_when_the_connection_is_refused(canaries):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = mmo.ModelConfig(
        "openai", "gpt-x", name="nowhere", max_retries=0,
        base_url=f"http://127.0.0.1:{port}/v1", api_key_env="MMO_CANARY_OPENAI_KEY",
    )  # fmt: skip
    orc = mmo.Orchestrator([model], runlog=":memory:", cache=False)
    with orc, pytest.raises(mmo.ProviderError, match="could not connect") as info:
        orc.complete("hi", model="nowhere")
    assert_clean(info.value, canaries)


def test_ipython_traceback_of_a_failing_cell_has_no_key(sim, canaries, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        with mmo.Orchestrator(echoing(sim), runlog=":memory:", cache=False) as orc:
            shell.user_ns["orc"] = orc
            for provider in PROVIDERS:
                result = shell.run_cell(f"orc.complete('hi', model='leaky-{provider}')")
                assert isinstance(result.error_in_exec, mmo.ProviderError)
    finally:
        InteractiveShell.clear_instance()
    shown = capsys.readouterr()
    rendered = shown.out + shown.err
    assert rendered.count("ProviderError") >= 3, rendered  # the traceback was rendered
    assert "AuthenticationError" in rendered  # with the SDK's exception, redacted
    for value in canaries.values():
        assert value not in rendered


def test_saved_notebook_of_a_failing_cell_has_no_key(sim, canaries, tmp_path):
    setup = (
        "import mmo_magic as mmo\n"
        f"models = [mmo.ModelConfig(p, 'sim-fast?fail=401&echo_key=1', name='leaky-' + p,"
        f" max_retries=0, api_key_env=env, base_url={sim.anthropic_base_url!r} if p == 'anthropic'"
        f" else {sim.openai_base_url!r}) for p, env in {PROVIDERS!r}.items()]\n"
        "orc = mmo.Orchestrator(models, runlog=':memory:', cache=False)"
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(setup)] + [
        nbformat.v4.new_code_cell(f"orc.complete('hi', model='leaky-{p}')") for p in PROVIDERS
    ]
    client = NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True)
    client.execute(cwd=str(tmp_path))
    path = tmp_path / "failing.ipynb"
    nbformat.write(nb, path)
    saved = path.read_text()
    errors = [o for c in nb.cells[1:] for o in c.outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == ["ProviderError"] * 3, json.dumps(nb.cells[1].outputs)
    assert "AuthenticationError" in saved
    for value in canaries.values():
        assert value not in saved
