"""Where a batch runs on Ray (``RayOptions``, from a checked ``BatchSpec``), and connecting."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..spec import RAY_INSTALL, require_ray

if TYPE_CHECKING:
    from ..spec import BatchSpec

__all__ = ["INSTALL", "RayOptions", "connect", "require_ray"]

INSTALL = RAY_INSTALL
_LOCAL_OBJECT_STORE = 256 * 1024**2  # a Ray started here: small, so it starts fast


@dataclass(frozen=True, slots=True)
class RayOptions:
    """Where a batch runs on Ray: ``address`` (None: the Ray already initialised in this
    process, else ``RAY_ADDRESS``, else a new local one), ``workers`` (None: one per
    ``cpus_per_worker`` CPUs of the cluster)."""

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: int = 1

    @classmethod
    def of(cls, spec: BatchSpec) -> RayOptions:
        """The options of ``spec`` (which checked them when it was made)."""
        return cls(spec.ray_address, spec.workers, spec.cpus_per_worker or 1)


def connect(options: RayOptions) -> None:
    """Use the Ray this process initialised, else connect (or start a local one)."""
    import ray

    if ray.is_initialized():
        return
    local: dict[str, Any] = {}
    if options.address is None and not os.environ.get("RAY_ADDRESS"):
        local = {"include_dashboard": False, "object_store_memory": _LOCAL_OBJECT_STORE}
    ray.init(address=options.address, logging_level=logging.WARNING, **local)
