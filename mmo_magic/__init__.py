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
from .core.completion import CompletionRequest, CompletionResponse, Message, StreamEnd, ToolCall
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
    StructuredOutputError,
    TemplateError,
    UnknownModelError,
    VerdictError,
)
from .core.loop import use_running_loop
from .core.models import Catalogue, ModelConfig
from .core.structured import Tool
from .notebook import cells as _cells  # noqa: F401  installs the reader of the running cell
from .orchestration.orchestrator import CompletionStream, Orchestrator
from .orchestration.reliability import CircuitBreaker, RetryPolicy
from .orchestration.session import get_orchestrator, use
from .storage.runlog import RunLog, RunRecord

if TYPE_CHECKING:
    from .core.embeddings import EmbeddingResponse
    from .core.local_model import missing_reason as embedded_missing_reason
    from .core.parts import Document, Image, Part
    from .evaluation import (
        BatchResult,
        BatchSpec,
        arun_batch,
        estimate_batch,
        eval_questions,
        load_batch,
        run_batch,
        scorers,
    )
    from .evaluation.learning import learn_router
    from .orchestration.parallel import ConsensusResult, RaceResult
    from .orchestration.pipeline import Pipeline, PipelineResult, PipelineStep, research_pipeline
    from .providers.function import register_function, unregister_function
    from .routing import (
        ComplexityRouter,
        CostOptimizedRouter,
        RouteDecision,
        Router,
        RoutingRule,
        RulesRouter,
        TaskRouter,
        evaluate_router,
        load_routing_prompts,
    )
    from .routing.learned import LearnedRouter, LearnedRouting, load_router

# Loaded on first use: the routers load their models and data on import; races,
# judges, pipelines and batches are not needed by every session.
_LAZY = {
    **dict.fromkeys(("ConsensusResult", "RaceResult"), "orchestration.parallel"),
    **dict.fromkeys(
        (
            "BatchResult",
            "BatchSpec",
            "arun_batch",
            "estimate_batch",
            "eval_questions",
            "load_batch",
            "run_batch",
            "scorers",
        ),
        "evaluation",
    ),
    "learn_router": "evaluation.learning",
    **dict.fromkeys(("Document", "Image", "Part"), "core.parts"),
    "EmbeddingResponse": "core.embeddings",
    **dict.fromkeys(
        ("Pipeline", "PipelineResult", "PipelineStep", "research_pipeline"),
        "orchestration.pipeline",
    ),
    **dict.fromkeys(("register_function", "unregister_function"), "providers.function"),
    **dict.fromkeys(
        (
            "ComplexityRouter",
            "CostOptimizedRouter",
            "RouteDecision",
            "Router",
            "RoutingRule",
            "RulesRouter",
            "TaskRouter",
            "evaluate_router",
            "load_routing_prompts",
        ),
        "routing",
    ),
    **dict.fromkeys(("LearnedRouter", "LearnedRouting", "load_router"), "routing.learned"),
}
# Public names whose home calls them something else.
_RENAMED = {
    "embedded_missing_reason": ("core.local_model", "missing_reason"),
    "__version__": ("core", "__version__"),
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY or name in _RENAMED:
        module, attribute = _RENAMED.get(name, (_LAZY.get(name, ""), name))
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmo_magic' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_RENAMED})


__all__ = [
    "PRICES_AS_OF",
    "AllModelsFailedError",
    "Attempt",
    "BatchResult",
    "BatchSpec",
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
    "Document",
    "EmbeddingResponse",
    "Image",
    "InvalidRequestError",
    "LearnedRouter",
    "LearnedRouting",
    "MMOError",
    "Message",
    "MissingAPIKeyError",
    "ModelConfig",
    "NoModelAvailableError",
    "Orchestrator",
    "Part",
    "Pipeline",
    "PipelineResult",
    "PipelineStep",
    "ProviderError",
    "RaceResult",
    "RetryPolicy",
    "RouteDecision",
    "Router",
    "RoutingRule",
    "RulesRouter",
    "RunLog",
    "RunRecord",
    "StreamEnd",
    "StreamError",
    "StructuredOutputError",
    "TaskRouter",
    "TemplateError",
    "Tool",
    "ToolCall",
    "UnknownModelError",
    "VerdictError",
    "__version__",
    "arun_batch",
    "embedded_missing_reason",
    "estimate_batch",
    "eval_questions",
    "evaluate_router",
    "get_orchestrator",
    "learn_router",
    "load_batch",
    "load_ipython_extension",
    "load_router",
    "load_routing_prompts",
    "register_function",
    "research_pipeline",
    "run_batch",
    "scorers",
    "unload_ipython_extension",
    "unregister_function",
    "use",
    "use_running_loop",
]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext mmo_magic``: register the magics (IPython is imported only now)."""
    from .notebook.magics import load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext mmo_magic``: remove every magic and setting this extension added."""
    from .notebook.magics import unload

    unload(ipython)
