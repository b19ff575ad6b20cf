"""mmo_magic: multi-model LLM orchestration for Jupyter and plain Python.

    import mmo_magic as mmo
    orc = mmo.Orchestrator.from_config()
    print(orc.complete("Why is the sky blue?", model="sim-fast"))
    orc.runs.to_dataframe()

Importing this package loads no SDK, pandas or IPython: they are imported
where first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.attempts import Attempt
from .core.catalogue import PRICES_AS_OF
from .core.completion import CompletionRequest, CompletionResponse, Message, ToolCall
from .core.errors import (
    AllModelsFailedError,
    BudgetExceededError,
    CircuitOpenError,
    ConfigError,
    InvalidRequestError,
    MissingAPIKeyError,
    MMOError,
    NoModelAvailableError,
    ProviderError,
    StreamError,
    TemplateError,
    UnknownModelError,
)
from .core.models import Catalogue, ModelConfig
from .core.structured import Tool
from .notebook import cells as _cells  # noqa: F401  installs the reader of the running cell
from .orchestration.orchestrator import CompletionStream, Orchestrator
from .orchestration.reliability import CircuitBreaker, RetryPolicy
from .orchestration.session import get_orchestrator, use
from .storage.runlog import RunLog, RunRecord

if TYPE_CHECKING:
    from .evaluation import BatchResult
    from .orchestration.parallel import ConsensusResult, RaceResult
    from .orchestration.pipeline import Pipeline, PipelineResult, PipelineStep
    from .routing import (
        ComplexityRouter,
        CostOptimizedRouter,
        ModelRouter,
        RouteDecision,
        Router,
        RoutingRule,
        TaskRouter,
        evaluate_router,
        load_routing_prompts,
    )

from .core import __version__

# Loaded on first use: the routers compile their task patterns on import
# (~90 ms); races, judges and pipelines are not needed by every session.
_LAZY = {
    **dict.fromkeys(("ConsensusResult", "RaceResult"), "orchestration.parallel"),
    "BatchResult": "evaluation",
    **dict.fromkeys(("Pipeline", "PipelineResult", "PipelineStep"), "orchestration.pipeline"),
    **dict.fromkeys(
        (
            "ComplexityRouter",
            "CostOptimizedRouter",
            "ModelRouter",
            "RouteDecision",
            "Router",
            "RoutingRule",
            "TaskRouter",
            "evaluate_router",
            "load_routing_prompts",
        ),
        "routing",
    ),
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmo_magic' has no attribute {name!r}")



def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "PRICES_AS_OF",
    "AllModelsFailedError",
    "Attempt",
    "BatchResult",
    "BudgetExceededError",
    "Catalogue",
    "CircuitBreaker",
    "CircuitOpenError",
    "CompletionRequest",
    "CompletionResponse",
    "CompletionStream",
    "ComplexityRouter",
    "ConfigError",
    "ConsensusResult",
    "CostOptimizedRouter",
    "InvalidRequestError",
    "MMOError",
    "Message",
    "MissingAPIKeyError",
    "ModelConfig",
    "ModelRouter",
    "NoModelAvailableError",
    "Orchestrator",
    "Pipeline",
    "PipelineResult",
    "PipelineStep",
    "ProviderError",
    "RaceResult",
    "RetryPolicy",
    "RouteDecision",
    "Router",
    "RoutingRule",
    "RunLog",
    "RunRecord",
    "StreamError",
    "TaskRouter",
    "TemplateError",
    "Tool",
    "ToolCall",
    "UnknownModelError",
    "__version__",
    "evaluate_router",
    "get_orchestrator",
    "load_ipython_extension",
    "load_routing_prompts",
    "unload_ipython_extension",
    "use",
]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext mmo_magic``: register the magics (IPython is imported only now)."""
    from .notebook.magics import load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext mmo_magic``: remove every magic and setting this extension added."""
    from .notebook.magics import unload

    unload(ipython)
