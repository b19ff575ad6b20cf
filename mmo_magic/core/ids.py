"""Ids for runs, groups and requests."""

from __future__ import annotations

import itertools
import os

__all__ = ["new_id"]


class _Ids:
    """Unique 32-hex-digit ids: a random per-process prefix and a counter.

    uuid4() reads os.urandom for every id, ~14 µs a call on a VM, and a call
    makes several ids; this reads it once per process (again after a fork).
    """

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFFFFFF:012x}"


new_id = _Ids()
