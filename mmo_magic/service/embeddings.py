"""``POST /v1/embeddings``: OpenAI's embeddings endpoint over ``Orchestrator.aembed``.

``input`` is a text or a list of texts; ``encoding_format`` "float" or
"base64" (little-endian float32, what the openai SDK asks for by default).
Token-id inputs and ``dimensions`` are refused by name, as is any unknown
field. Each batch request is in the run log (kind "embed").
"""

from __future__ import annotations

import base64
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..core.embeddings import EmbeddingResponse
from ..core.errors import InvalidRequestError
from .responses import check_refused

__all__ = ["EmbeddingsRequest", "embedding_texts", "embeddings_object"]

REFUSED: dict[str, tuple[object, ...]] = {
    "dimensions": (None,),  # shortened vectors: not in the unified interface
    "user": (None,),  # not sent with embeddings by the unified interface
}


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    input: str | list[Any]
    encoding_format: str = "float"


def embedding_texts(body: EmbeddingsRequest) -> list[str]:
    """The texts to embed; refusals as 400s naming the parameter."""
    check_refused(body.model_extra or {}, REFUSED, "This is the embeddings API.")
    if body.encoding_format not in ("float", "base64"):
        raise InvalidRequestError(
            f"encoding_format must be 'float' or 'base64', not {body.encoding_format[:40]!r}.",
            param="encoding_format",
        )
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequestError(
            "input must be a text or a non-empty list of texts (token ids are not supported).",
            param="input",
        )
    return texts


def embeddings_object(r: EmbeddingResponse, encoding_format: str) -> dict[str, Any]:
    import numpy as np

    vectors = np.asarray(r.vectors, dtype="<f4")
    data = []
    for i, row in enumerate(vectors):
        embedding: Any = (
            base64.b64encode(row.tobytes()).decode() if encoding_format == "base64"
            else [float(x) for x in row]
        )  # fmt: skip
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = r.input_tokens
    usage = None if tokens is None else {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": r.model, "usage": usage,
            "mmo": {"cost": r.cost, "provider": r.provider, "latency_ms": r.latency_ms,
                    "run_ids": r.run_ids, "tokens_estimated": r.tokens_estimated}}  # fmt: skip
