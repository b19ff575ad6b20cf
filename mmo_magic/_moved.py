"""Old import paths, kept working for one release after the move into layers.

``import mmo_magic.server`` (and every other path below) gives the module that
now holds that code: the same module object, so patching through either name
patches both. Each old path warns once with its new name, except the two that
stay public: ``mmo_magic.pipeline`` (``mmo.pipeline.research_pipeline``) and
``mmo_magic.routing`` (a package of its own).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import CodeType, ModuleType

__all__ = ["MOVED_MODULES", "install_moved_module_finder"]

_PACKAGE = __name__.rpartition(".")[0]

# old name (under mmo_magic) -> new name (under mmo_magic)
MOVED_MODULES = {
    "budget": "orchestration.budget",
    "cache": "storage.cache",
    "catalogue": "core.catalogue",
    "clients": "providers",
    "clients.anthropic": "providers.anthropic",
    "clients.base": "providers.base",
    "clients.embedded": "providers.embedded",
    "clients.openai": "providers.openai",
    "clients.sim": "providers.sim",
    "config": "core.config",
    "errors": "core.errors",
    "judges": "orchestration.judges",
    "loop": "core.loop",
    "magics": "notebook.magics",
    "models": "core.models",
    "orchestrator": "orchestration.orchestrator",
    "parallel": "orchestration.parallel",
    "pipeline": "orchestration.pipeline",
    "reliability": "orchestration.reliability",
    "runlog": "storage.runlog",
    "secrets": "core.redaction",
    "server": "service",
    "shared": "orchestration.session",
    "templates": "core.templates",
    "tokens": "core.pricing",
    "types": "core.completion",
    "widgets": "notebook.widgets",
}
_STILL_PUBLIC = {"pipeline"}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``mmo_magic.<old>`` and hands back the module now at its new path."""

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, old = fullname.partition(".")
        if package != _PACKAGE or old not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        old = spec.name.partition(".")[2]
        new = f"{_PACKAGE}.{MOVED_MODULES[old]}"
        if old not in _STILL_PUBLIC:
            warnings.warn(
                f"{spec.name} moved to {new}; the old path goes in the next release.",
                DeprecationWarning,
                stacklevel=2,
            )
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported at its new path."""

    def get_code(self, fullname: str) -> CodeType | None:
        """For ``python -m mmo_magic.<old>``: the code ``-m`` would run at the new path."""
        new = f"{_PACKAGE}.{MOVED_MODULES[fullname.partition('.')[2]]}"
        spec = importlib.util.find_spec(new)
        if spec is not None and spec.submodule_search_locations is not None:  # a package
            spec = importlib.util.find_spec(f"{new}.__main__")
        if spec is None or not isinstance(spec.loader, importlib.abc.InspectLoader):
            return None
        return spec.loader.get_code(spec.name)


def install_moved_module_finder() -> None:
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
