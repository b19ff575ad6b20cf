"""Several deployments of one model name: ``[server.deployments]`` in mmo.toml.

    [server.deployments]
    gpt-4o = ["gpt-4o-east", "gpt-4o-west"]     # configured models, each with its own
                                                 # base_url and key variable

A request naming ``gpt-4o`` goes to the deployment with the fewest requests in
flight through this gateway (ties in turn), among those whose circuit is not
open; it fails over to the other deployments (least busy first) before the
model's own fallbacks. Each deployment is a model of its own to the
orchestrator, so each has its own circuit breaker, retries and run records.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence

from ..orchestration.orchestrator import Orchestrator

__all__ = ["Deployments"]


class Deployments:
    """Chooses a deployment for a public model name, and counts what is in flight."""

    def __init__(self, orc: Orchestrator, table: Mapping[str, Sequence[str]]) -> None:
        self.orc = orc
        # Each member a configured model, by its own name (an unknown one fails at start).
        self.table = {
            name: tuple(orc.catalogue.resolve(m).name for m in members)
            for name, members in table.items()
        }
        self.in_flight: Counter[str] = Counter()
        self._turn = itertools.count()

    def __contains__(self, name: object) -> bool:
        return name in self.table

    def choose(self, name: str) -> tuple[str, tuple[str, ...]]:
        """(the deployment to call, the fallbacks to try after it) for ``name``."""
        members = self.table[name]
        breaker = self.orc.breaker
        turn = next(self._turn)
        # Closed circuits first, then by load; the turn breaks ties so equal ones alternate.
        ranked = sorted(
            range(len(members)),
            key=lambda i: (
                breaker.state(members[i]) == "open",
                self.in_flight[members[i]],
                (i - turn) % len(members),
            ),
        )
        chosen, *others = (members[i] for i in ranked)
        own = self.orc.catalogue.resolve(chosen).fallbacks
        fallbacks = tuple(dict.fromkeys([*others, *own]))
        return chosen, fallbacks

    def started(self, deployment: str) -> None:
        self.in_flight[deployment] += 1

    def finished(self, deployment: str) -> None:
        self.in_flight[deployment] -= 1
