"""The in-process test double: a model backed by a Python function, via the real Orchestrator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

import mmo_magic as mmo
from mmo_magic.core.completion import CompletionRequest, StreamEnd
from mmo_magic.providers import register_function, unregister_function


@pytest.fixture
def functions() -> Iterator[dict[str, object]]:
    def shout(request: CompletionRequest) -> str:
        return request.prompt_text.upper()

    def pieces(request: CompletionRequest) -> Iterator[str]:
        yield from ("one ", "two ", "three")

    async def slowly(request: CompletionRequest) -> AsyncIterator[object]:
        yield "counted "
        yield "by me"
        yield StreamEnd("length", input_tokens=7, output_tokens=2)

    def broken(request: CompletionRequest) -> str:
        raise RuntimeError("the function fell over")

    table = {"shout": shout, "pieces": pieces, "slowly": slowly, "broken": broken}
    for name, function in table.items():
        register_function(name, function)  # type: ignore[arg-type]
    yield table
    for name in table:
        unregister_function(name)


@pytest.fixture
def orc(functions: dict[str, object]) -> Iterator[mmo.Orchestrator]:
    models = [mmo.ModelConfig("function", name, max_retries=0) for name in functions]
    with mmo.Orchestrator(models, default_model="shout", runlog=":memory:", cache=False) as o:
        yield o


def test_a_function_answers_like_any_model(orc: mmo.Orchestrator) -> None:
    r = orc.complete("hello there")
    assert (r.status, r.model, r.provider, r.content) == ("ok", "shout", "function", "HELLO THERE")
    assert (r.input_tokens, r.output_tokens) == (2, 2)
    assert orc.runs.records()[-1].response == "HELLO THERE"


def test_yielded_pieces_stream_as_deltas(orc: mmo.Orchestrator) -> None:
    assert list(orc.stream("count", model="pieces")) == ["one ", "two ", "three"]


def test_an_async_function_may_set_its_own_finish_and_usage(orc: mmo.Orchestrator) -> None:
    r = orc.complete("x", model="slowly")
    assert (r.content, r.finish_reason, r.input_tokens, r.output_tokens) == (
        "counted by me", "length", 7, 2,
    )  # fmt: skip


def test_a_failing_function_is_a_recorded_provider_error(orc: mmo.Orchestrator) -> None:
    with pytest.raises(mmo.MMOError, match="the function fell over"):
        orc.complete("x", model="broken")
    record = orc.runs.records()[-1]
    assert (record.model, record.status) == ("broken", "error")
    assert "the function fell over" in (record.error or "")


def test_an_unregistered_function_says_how_to_register_it() -> None:
    with (
        mmo.Orchestrator(
            [mmo.ModelConfig("function", "nobody")], runlog=":memory:", cache=False
        ) as o,
        pytest.raises(mmo.ConfigError) as caught,
    ):
        o.complete("x", model="nobody")
    assert "register_function('nobody'" in caught.value.hint
