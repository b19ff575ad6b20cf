"""Embeddings: what ``Orchestrator.embed`` returns, and what a client hands back per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .errors import InvalidRequestError
from .money import format_usd

__all__ = ["EmbeddingBatch", "EmbeddingResponse", "embedding_texts"]


class EmbeddingBatch(NamedTuple):
    """One request's answer from a client: a vector per text, and the input tokens it
    reported (None: not reported; the caller counts them, marked estimated)."""

    vectors: list[list[float]]
    input_tokens: int | None


@dataclass(slots=True)
class EmbeddingResponse:
    """Vectors for ``texts``, one row per text in order (``vectors``: a numpy float32 array of
    shape (len(texts), dimensions)), with usage and cost summed over the batches sent.

    ``cost`` is None when the model is unpriced or a batch's usage is unknown (missing,
    never 0). ``run_ids`` are the run records, one per batch request.
    """

    vectors: Any
    model: str
    provider: str
    input_tokens: int | None = None
    cost: float | None = None
    latency_ms: float | None = None
    tokens_estimated: bool = False
    batches: int = 0
    run_ids: list[str] = field(default_factory=list)
    group_id: str | None = None

    @property
    def dimensions(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def __getitem__(self, index: Any) -> Any:
        return self.vectors[index]

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        return self.vectors if dtype is None else self.vectors.astype(dtype)

    def footer(self) -> str:
        approx = "~" if self.tokens_estimated else ""
        tokens = f"{approx}{self.input_tokens} tokens" if self.input_tokens is not None else "?"
        return (f"{self.model} · {len(self)} x {self.dimensions} · {tokens} · "
                f"{self.batches} request(s) · {format_usd(self.cost)}")  # fmt: skip

    def __repr__(self) -> str:
        return f"EmbeddingResponse({self.footer()})"


def embedding_texts(texts: object) -> list[str]:
    """``texts`` as a list of strings (a lone string is one text), or InvalidRequestError."""
    items = [texts] if isinstance(texts, str) else texts
    if not isinstance(items, Sequence) or not items:
        raise InvalidRequestError(
            f"embed needs a text or a non-empty list of texts, got {texts!r:.60}.",
            hint='For example orc.embed(["first text", "second text"]).',
        )
    out = list(items)
    for i, text in enumerate(out):
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequestError(
                f"Text {i} to embed must be a non-empty string, got {text!r:.60}.",
                hint="Drop empty texts before embedding (their vectors mean nothing).",
            )
    return out
