"""The core: types, errors, model configuration and catalogue, settings, pricing, templates,
redaction, ids and the background loop. It imports nothing else of the package."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # ``__version__`` is read from the installed package's metadata (one version:
    # pyproject's) on first use: importlib.metadata costs ~20 ms to import.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("mmo_magic")
        except PackageNotFoundError:  # a source tree on sys.path, never installed
            value = "0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
