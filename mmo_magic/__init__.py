"""mmo_magic: multi-model LLM orchestration for Jupyter and plain Python.

    import mmo_magic as mmo
    orc = mmo.Orchestrator.from_config()
    print(orc.complete("Why is the sky blue?", model="sim-fast"))
    orc.runs.to_dataframe()

Importing this package loads no SDK, pandas or IPython: they are imported
where first used.
"""

from __future__ import annotations

from .catalogue import PRICES_AS_OF
from .errors import (
    AllModelsFailedError,
    BudgetExceededError,
    ConfigError,
    InvalidRequestError,
    MissingAPIKeyError,
    MMOError,
    ProviderError,
    StreamError,
    TemplateError,
    UnknownModelError,
)
from .models import Catalogue, ModelConfig
from .orchestrator import CompletionStream, Orchestrator
from .parallel import ConsensusResult, RaceResult
from .pipeline import Pipeline, PipelineResult, PipelineStep
from .reliability import CircuitBreaker, RetryPolicy
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
from .runlog import RunLog, RunRecord
from .shared import get_orchestrator, use
from .types import Attempt, CompletionRequest, CompletionResponse, Message

__version__ = "0.1.0"

__all__ = [
    "PRICES_AS_OF",
    "AllModelsFailedError",
    "Attempt",
    "BudgetExceededError",
    "Catalogue",
    "CircuitBreaker",
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
    from .magics import load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext mmo_magic``: remove every magic and setting this extension added."""
    from .magics import unload

    unload(ipython)
