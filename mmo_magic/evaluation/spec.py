"""What a batch is (``BatchSpec``: validated once, frozen) and what it runs on (``BatchContext``).

``BatchSpec`` holds every option of a batch; ``orc.batch(data, models=...,
**options)`` builds one, and every entry point (``run_batch``,
``arun_batch``, ``estimate_batch``, ``orc.batch``, ``orc.abatch``) takes one.
A bad option is a ConfigError before anything is read or sent.

``BatchContext`` is the call engine's part a batch uses: its ``complete``,
its run log (a ``RecordSink``), the catalogue and the background loop. The
Orchestrator hands it over; evaluation code never reaches into the façade.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..core.errors import ConfigError
from .limits import Limits

if TYPE_CHECKING:
    from ..core.loop import BackgroundLoop
    from ..core.models import Catalogue
    from ..orchestration.calls import Completer
    from ..orchestration.engine import CallEngine
    from ..storage.sinks import RecordSink

__all__ = [
    "DEFAULT_CONCURRENCY",
    "RAY_INSTALL",
    "BatchContext",
    "BatchSpec",
    "RunsBatches",
    "as_spec",
    "context_of",
    "require_ray",
]

Rerun = Literal["failed", "all"] | None
JudgeMode = Literal["pairwise", "grade"]
DEFAULT_CONCURRENCY = 16
RAY_INSTALL = "pip install 'mmo_magic[ray]'"


def require_ray() -> None:
    """ConfigError with the install command when Ray is not installed (Ray is not imported)."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(
            "engine='ray' needs Ray, which is not installed.",
            hint=f"Install it with: {RAY_INSTALL}",
        )


@dataclass(frozen=True)
class BatchSpec:
    """Every option of a batch, checked when made; see ``mmo_magic.evaluation``.

    ``data``: a DataFrame, a list of dicts, or a CSV / JSONL / Parquet path
    (read when the batch runs). ``prompt`` and ``system`` are templates over an
    item's columns. ``scorers`` check answers by code (``evaluation.scorers``);
    ``epochs`` asks each (item, model) that many times (``seed``, when given, is
    ``seed + epoch`` for each repeat); ``seed``, ``top_p``, ``stop`` and the
    penalties pass through to every call, as in ``orc.complete``. ``key`` names a
    column that identifies items (default: a hash of the rendered prompt).
    ``cache`` is off by default: a batch compares models. ``engine="ray"`` runs
    the calls on Ray workers: ``ray_address``, ``workers``, ``cpus_per_worker``.
    """

    data: Any
    models: Sequence[str]
    prompt: str = "{question}"
    system: str | None = None
    judges: Sequence[str] = ()
    judge_mode: JudgeMode = "pairwise"
    criteria: str | None = None
    reference_column: str | None = None
    scorers: Sequence[Any] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    top_p: float | None = None
    stop: str | Sequence[str] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    epochs: int = 1
    fallbacks: Sequence[str] | None = None
    cache: bool = False
    allow_unpriced: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    limits: Limits | Mapping[str, Any] | None = None
    budget: float | None = None
    rerun: Rerun = None
    key: str | None = None
    engine: Literal["ray", "local"] | None = None
    ray_address: str | None = None
    workers: int | None = None
    cpus_per_worker: int | None = None

    def __post_init__(self) -> None:
        self._check_engine()  # first: they say whether the rest can run at all
        models, judges = self.models, self.judges
        if isinstance(models, str) or not models:
            raise ConfigError("Give a list of model names, e.g. models=['gpt-4o-mini', 'haiku'].")
        if len(set(models)) != len(models):
            raise ConfigError("A model is listed twice in models=[...].")
        if self.judge_mode not in ("pairwise", "grade"):
            raise ConfigError(f"judge_mode must be 'pairwise' or 'grade', not {self.judge_mode!r}.")
        if self.rerun not in (None, "failed", "all"):
            raise ConfigError(f"rerun must be None, 'failed' or 'all', not {self.rerun!r}.")
        concurrency = self.concurrency
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ConfigError(f"concurrency must be a whole number >= 1, got {concurrency!r}.")
        budget = self.budget
        if budget is not None and (not math.isfinite(budget) or budget < 0):
            raise ConfigError(f"budget must be a finite number >= 0, got {budget!r}.")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ConfigError("The batch prompt must be a non-empty template string.")
        epochs = self.epochs
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ConfigError(f"epochs must be a whole number >= 1, got {epochs!r}.")
        if epochs > 1 and self.on_ray:
            raise ConfigError(
                "epochs > 1 runs on this process's loop only, not yet on Ray.",
                hint="Leave engine='ray' out, or run one epoch.",
            )
        seed = self.seed
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ConfigError(f"seed must be a whole number, got {seed!r}.")
        from .scorers import as_scorer

        scorers = tuple(as_scorer(s) for s in (self.scorers or ()))
        names = [s.name for s in scorers]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"Two scorers share a name ({', '.join(names)}).",
                hint="Give each its own: scorers.exact('reference', name='exact answer').",
            )
        object.__setattr__(self, "scorers", scorers)
        if isinstance(self.stop, list):
            object.__setattr__(self, "stop", tuple(self.stop))
        Limits.of(self.limits)  # checks every model's limits now; each run makes its own gates
        # Frozen values: a caller's list changed later cannot change the batch.
        object.__setattr__(self, "models", tuple(models))
        object.__setattr__(self, "judges", tuple(judges or ()))
        if self.fallbacks is not None:
            object.__setattr__(self, "fallbacks", tuple(self.fallbacks))

    def _check_engine(self) -> None:
        engine = self.engine
        if engine in (None, "local"):
            given = [
                name
                for name in ("ray_address", "workers", "cpus_per_worker")
                if getattr(self, name) is not None
            ]
            if given:
                raise ConfigError(
                    f"{', '.join(given)} only apply to engine='ray'.",
                    hint="Pass engine='ray' as well, or leave them out.",
                )
            return
        if engine != "ray":
            raise ConfigError(
                f"Unknown batch engine {engine!r}.",
                hint="Use engine=None (this process's event loop) or engine='ray'.",
            )
        for name in ("workers", "cpus_per_worker"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}.")
        if self.cache:
            raise ConfigError(
                "The response cache is a file of this machine, which Ray workers cannot share.",
                hint="Run the batch with cache=False (the default), or without engine='ray'.",
            )
        require_ray()

    @classmethod
    def of(
        cls, data: Any, models: Sequence[str], prompt: str = "{question}", **options: Any
    ) -> BatchSpec:
        """A spec from keyword options; a name that is no option is a ConfigError naming it."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            names = ", ".join(repr(n) for n in unknown)
            raise ConfigError(
                f"Unknown batch option{'s' * (len(unknown) > 1)} {names}.",
                hint=f"Valid options: {', '.join(OPTIONS)}.",
            )
        return cls(data, models, prompt, **options)

    def sampling(self) -> dict[str, Any]:
        """The sampling options given (stop, top_p, penalties; seed is per epoch)."""
        names = ("top_p", "stop", "frequency_penalty", "presence_penalty")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    @property
    def on_ray(self) -> bool:
        return self.engine == "ray"

    def replace(self, **changes: Any) -> BatchSpec:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)


# The options after data, models and prompt, in the order the docs list them.
OPTIONS = tuple(f.name for f in dataclasses.fields(BatchSpec))[3:]


@dataclass(frozen=True)
class BatchContext:
    """The call engine's part a batch runs on (the Orchestrator hands it over).

    ``complete`` makes every call (retries, fallbacks, recording), ``runs`` is where
    records go and resume reads from, ``catalogue`` resolves names, ``loop`` is the
    background loop. ``engine``: the call engine itself, needed only on Ray, where
    each worker builds its own from the same settings (retries, breaker, budget).
    """

    complete: Completer
    runs: RecordSink
    catalogue: Catalogue
    loop: BackgroundLoop
    engine: CallEngine | None = None

    @classmethod
    def of(cls, engine: CallEngine, loop: BackgroundLoop) -> BatchContext:
        return cls(engine.complete, engine.runs, engine.catalogue, loop, engine)


class RunsBatches(Protocol):
    """What hands a batch its context: the Orchestrator (``orc.batch_context()``)."""

    def batch_context(self) -> BatchContext: ...


def context_of(on: BatchContext | RunsBatches) -> BatchContext:
    """The context to run on: ``on`` itself, or the one an Orchestrator hands over."""
    return on if isinstance(on, BatchContext) else on.batch_context()


def as_spec(
    data: Any, models: Sequence[str] | None, prompt: str | None, options: Mapping[str, Any]
) -> BatchSpec:
    """``data`` if it is a BatchSpec (then nothing else may be given), else a spec of them."""
    if isinstance(data, BatchSpec):
        if models is not None or prompt is not None or options:
            raise ConfigError(
                "Pass a BatchSpec alone, or data with models and options, not both.",
                hint="Change a spec with spec.replace(option=...).",
            )
        return data
    if models is None:
        raise ConfigError("Give the models to compare, e.g. models=['gpt-4o-mini', 'haiku'].")
    return BatchSpec.of(data, models, "{question}" if prompt is None else prompt, **options)
