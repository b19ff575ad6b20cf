"""``POST /v1/completions``: OpenAI's legacy text completions, mapped to chat.

The prompt becomes one user message, so any configured model (or router)
answers; the answer comes back as ``text_completion`` choices, streamed or
not. The sampling parameters, ``max_tokens``, ``n`` and ``user`` go on as
for chat; what has no meaning over chat (``suffix``, ``echo``, ``best_of``
> 1, ``logprobs``) and several prompts in one request are refused by name.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..core.completion import CompletionResponse
from ..core.errors import InvalidRequestError
from ..orchestration.orchestrator import AsyncCompletionStream
from ..storage.runlog import new_id
from .responses import check_refused
from .schemas import MAX_CHOICES, details_out, finish_reason, summed_usage
from .streaming import sse

__all__ = ["LegacyRequest", "LegacyWire", "legacy_object", "request_options"]

REFUSED: dict[str, tuple[object, ...]] = {
    "suffix": (None, ""),  # text after the insertion: chat has no fill-in-the-middle
    "echo": (None, False),
    "best_of": (None, 1),
    "logprobs": (None, 0),
}
_DONE = "data: [DONE]\n\n"


class LegacyRequest(BaseModel):
    """OpenAI's ``completions.create`` body; other fields are checked against ``REFUSED``."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    prompt: str | list[str]
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    seed: int | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None


def request_options(body: LegacyRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the orchestrator's messages, its options) for ``body``."""
    check_refused(body.model_extra or {}, REFUSED, "This is the legacy completions API.")
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise InvalidRequestError(
                f"prompt holds {len(prompt)} prompts; this server answers one per request. "
                "Send one request per prompt.",
                param="prompt",
            )
        prompt = prompt[0]
    if body.n and body.n > 1 and body.stream:
        raise InvalidRequestError(
            f"n={body.n} with stream=true is not supported by this server. Leave n out.",
            param="n",
        )
    options: dict[str, Any] = {"max_tokens": body.max_tokens, "temperature": body.temperature}
    for name in ("top_p", "stop", "seed", "frequency_penalty", "presence_penalty",
                 "logit_bias", "user"):  # fmt: skip
        if (value := getattr(body, name)) is not None:
            options[name] = value
    return [{"role": "user", "content": prompt}], options


def legacy_object(answers: list[CompletionResponse], scrub: Callable[[str], str]) -> dict[str, Any]:
    first = answers[0]
    usage = summed_usage(answers)
    return {
        "id": f"cmpl-{first.run_id or new_id()}", "object": "text_completion",
        "created": int(time.time()), "model": first.model,
        "choices": [
            {"text": r.content, "index": i, "logprobs": None, "finish_reason": finish_reason(r)}
            for i, r in enumerate(answers)
        ],
        "usage": usage and usage.model_dump(), "mmo": details_out(first, scrub).model_dump(),
    }  # fmt: skip


class LegacyWire:
    """``text_completion`` chunks, then ``[DONE]`` (``streaming.StreamWire``)."""

    def __init__(self, requested: str, include_usage: bool, scrub: Callable[[str], str]) -> None:
        self.requested = requested
        self.include_usage = include_usage
        self.scrub = scrub

    async def events(
        self, stream: AsyncCompletionStream, texts: AsyncIterator[str], first: str | None
    ) -> AsyncIterator[str]:
        head = {"id": f"cmpl-{new_id()}", "object": "text_completion",
                "created": int(time.time()), "model": self.requested}  # fmt: skip

        def chunk(text: str, finish: str | None = None, **more: Any) -> str:
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
            return sse({**head, "choices": [choice], **more})

        text = first
        while text is not None:
            yield chunk(text)
            text = await anext(texts, None)
        r = stream.response
        assert r is not None  # set when the texts run out
        head["model"] = r.model
        yield chunk("", finish_reason(r), mmo=details_out(r, self.scrub).model_dump())
        if self.include_usage:
            usage = summed_usage([r])
            yield sse({**head, "choices": [], "usage": usage and usage.model_dump()})
        yield _DONE

    def failed(self, error: JSONResponse) -> str:
        return f"data: {bytes(error.body).decode()}\n\n{_DONE}"
