"""Embedding texts through the call engine: batched, within the model's concurrency slots, its
rate limits and the budget, every request recorded in the run log like any call (kind
"embed").

``embed`` splits the texts into batches of ``batch_size`` and sends the batches at once;
the engine's slots (the model's ``max_concurrency``, then its provider's at its host) bound
how many are in flight. The vectors come back in the texts' order as one numpy array.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..core.cells import current_cell
from ..core.embeddings import EmbeddingBatch, EmbeddingResponse
from ..core.errors import InvalidRequestError, MMOError, UnknownModelError
from ..core.ids import new_id
from ..core.models import Catalogue, ModelConfig
from ..storage.runlog import RunRecord

if TYPE_CHECKING:
    from .engine import CallEngine

__all__ = ["DEFAULT_BATCH_SIZE", "embed", "embedding_model"]

DEFAULT_BATCH_SIZE = 128  # texts per request (OpenAI takes up to 2,048; smaller spreads work)


async def embed(
    engine: CallEngine[Any],
    config: ModelConfig,
    texts: list[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    budget: float | None = None,
    allow_unpriced: bool | None = None,
) -> EmbeddingResponse:
    """Vectors for ``texts`` from ``config``; one run record per batch request.

    A failed batch fails the call (after its record is written); the others still run to
    their end and are recorded, so their cost shows in the log.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidRequestError(f"batch_size must be a whole number >= 1, got {batch_size!r}.")
    client = engine._client(config)
    group = new_id()
    cell = current_cell()
    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    unpriced_ok = engine.allow_unpriced if allow_unpriced is None else allow_unpriced

    async def one(batch: list[str]) -> tuple[EmbeddingBatch, RunRecord]:
        record = RunRecord(
            kind="embed", group_id=group, requested_model=config.name, model=config.name,
            provider=config.provider, status="error", prompt=batch[0],
            step=f"{len(batch)} texts", cell=cell, session_id=_session(),
        )  # fmt: skip
        reservation = None
        started = 0.0
        try:
            if engine.budget.limit is not None or budget is not None:
                estimate = config.cost(_count(batch, config), 0)
                reservation = await engine.budget.aauthorize(
                    config, estimate, call_limit=budget, allow_unpriced=unpriced_ok
                )
            await _paced(engine, config, _count(batch, config))
            async with engine._slots(config):
                record.started_at = datetime.now(UTC)
                started = time.perf_counter()
                result = await client.embed(batch)
            record.latency_ms = (time.perf_counter() - started) * 1000
            if result.input_tokens is None:
                record.input_tokens, record.tokens_estimated = _count(batch, config), True
            else:
                record.input_tokens = result.input_tokens
            record.output_tokens = 0
            record.cost = config.cost(record.input_tokens, 0)
            record.status = "ok"
            return result, record
        except asyncio.CancelledError:
            record.status = "cancelled"
            raise
        except MMOError as exc:
            record.error_type, record.error = type(exc).__name__, str(exc)
            if started:
                record.latency_ms = (time.perf_counter() - started) * 1000
            raise
        finally:
            record.finished_at = datetime.now(UTC)
            engine.budget.settle(reservation, record.cost)
            committed = engine.runs.add(record)
            if not committed.done():
                await asyncio.wrap_future(committed)

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one(b) for b in batches), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return _response(config, outcomes, group, (time.perf_counter() - started) * 1000)  # type: ignore[arg-type]


def embedding_model(catalogue: Catalogue, name: str | None) -> ModelConfig:
    """The model ``name`` names: one of the orchestrator's (any OpenAI-compatible, local or
    simulated model may embed), else a built-in embedding model; None: the first available
    of DEFAULT_EMBEDDING_PREFERENCE. A chat-only OpenAI or Anthropic model is refused."""
    from ..core.catalogue import DEFAULT_EMBEDDING_PREFERENCE, builtin_embedding_models

    builtin = Catalogue.of(builtin_embedding_models())
    if name is None:
        found = [m for m in (builtin.resolve(n) for n in DEFAULT_EMBEDDING_PREFERENCE)
                 if m.available]  # fmt: skip
        config = found[0] if found else builtin.resolve(DEFAULT_EMBEDDING_PREFERENCE[-1])
    elif name in catalogue:
        config = catalogue.resolve(name)
    elif name in builtin:
        config = builtin.resolve(name)
    else:
        raise UnknownModelError(name, [*catalogue.names(), *builtin.names()])
    if not config.embedding and config.provider == "openai" and config.base_url is None:
        raise InvalidRequestError(
            f"Model {config.name!r} is a chat model, not an embedding model.",
            hint="Embed with text-embedding-3-small or text-embedding-3-large "
            "(or smollm2-embed offline).",
        )
    return config


def _response(
    config: ModelConfig,
    outcomes: list[tuple[EmbeddingBatch, RunRecord]],
    group: str,
    latency_ms: float,
) -> EmbeddingResponse:
    import numpy as np

    vectors = [v for result, _ in outcomes for v in result.vectors]
    if len({len(v) for v in vectors}) > 1:
        raise InvalidRequestError(f"model {config.name!r} returned vectors of different sizes.")
    records = [record for _, record in outcomes]
    tokens = [r.input_tokens for r in records]
    costs = [r.cost for r in records]
    return EmbeddingResponse(
        vectors=np.asarray(vectors, dtype=np.float32),
        model=config.name,
        provider=config.provider,
        input_tokens=None if None in tokens else sum(t or 0 for t in tokens),
        cost=None if None in costs else sum(c or 0.0 for c in costs),
        latency_ms=latency_ms,
        tokens_estimated=any(r.tokens_estimated for r in records),
        batches=len(records),
        run_ids=[r.run_id for r in records],
        group_id=group,
    )


# Per engine and model: when the next request may start under the model's rate limits.
_next_start: weakref.WeakKeyDictionary[Any, dict[str, float]] = weakref.WeakKeyDictionary()


async def _paced(engine: CallEngine[Any], config: ModelConfig, tokens: int) -> None:
    """Wait for this request's turn under ``requests_per_minute`` and ``tokens_per_minute``.

    Requests are spaced evenly (60 / rpm s apart, or tokens x 60 / tpm for their tokens),
    shared by every embed call of this orchestrator to the model, so a large embedding job
    stays within a provider's rate limits from its first request on.
    """
    rpm, tpm = config.requests_per_minute, config.tokens_per_minute
    if rpm is None and tpm is None:
        return
    gap = max(60 / rpm if rpm else 0.0, tokens * 60 / tpm if tpm else 0.0)
    loop = asyncio.get_running_loop()
    starts = _next_start.setdefault(engine, {})
    now = loop.time()
    start = max(now, starts.get(config.name, now))
    starts[config.name] = start + gap  # claimed at once: callers queue in arrival order
    if start > now:
        await asyncio.sleep(start - now)


def _count(batch: list[str], config: ModelConfig) -> int:
    from ..core.pricing import count_tokens

    return sum(count_tokens(t, config.model_id) for t in batch)


def _session() -> str:
    from .engine import SESSION_ID

    return SESSION_ID
