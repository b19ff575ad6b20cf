"""Client keys with identities (``storage.keys``) at the gateway: what a key may name, its
requests and tokens per minute, its budget, and what it spent.

The gate (``auth.Gate``) finds the key a request carries and leaves it in the
request's state; keys from ``MMO_SERVER_KEYS`` have no identity and no limits
(the simple path), and are the administrators of the others.

- A model outside a key's allowlist is an unknown model to that key (404, with
  suggestions drawn only from what it may use): it learns nothing of the rest,
  and ``/v1/models`` lists only what it may use.
- Requests per minute are counted when a request is admitted, tokens per minute
  when its answers come back, in a sliding minute per process.
- Each request's worst case (``costs``) is held against the key's budget before it
  is sent, with the spend and the other holds of the current period, atomically
  in the store (across gateways sharing it); answers are charged as they come,
  and the hold ends with the request: the spend never exceeds the budget.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import Request

from ..core.completion import CompletionResponse
from ..core.errors import InvalidRequestError, UnknownModelError
from ..storage.keys import ClientKey, KeyStore, period_start
from .auth import CLIENT_STATE
from .errors import ClientLimitError

__all__ = ["Clients", "client_of"]

_WINDOW_S = 60.0
_HOLDS = "budget_holds"  # request state: the holds on the key's budget


def client_of(request: Request) -> ClientKey | None:
    """The key's identity for this request; None for a server key (or no key at all)."""
    key: ClientKey | None = request.scope.get("state", {}).get(CLIENT_STATE)
    return key


class Clients:
    """Admission and charging for keys with identities."""

    def __init__(self, store: KeyStore | None) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, deque[tuple[float, int]]] = {}
        # Each key's tokens in its window, kept as entries come and go: summing the window
        # on every request cost time in proportion to the key's traffic.
        self._token_sums: dict[str, int] = {}

    def admit(
        self,
        request: Request,
        models: Iterable[str],
        known: Callable[[], Iterable[str]],
        served: Callable[[str], bool] = lambda name: True,
        cost: Callable[[], float | None] = lambda: 0.0,
    ) -> None:
        """Let the request's key call ``models``, or raise the 404 or 429 that says why not.

        ``known``: every name this server serves (for the 404's suggestions, filtered);
        ``served``: whether the server serves a name at all (``[server] models``);
        ``cost``: the request's worst case in USD (None: unbounded), held against a budget
        until the request ends (``release``).
        """
        key = client_of(request)
        for model in models:
            if not served(model) or (key is not None and not key.allows(model)):
                allowed = [k for k in known() if key is None or key.allows(k)]
                raise UnknownModelError(model, allowed)
        if key is None:
            return
        now = time.monotonic()
        with self._lock:
            if key.requests_per_minute is not None:
                times = self._requests.setdefault(key.name, deque())
                while times and times[0] <= now - _WINDOW_S:
                    times.popleft()
                if len(times) >= key.requests_per_minute:
                    wait = times[0] + _WINDOW_S - now
                    raise ClientLimitError(
                        f"Key {key.name!r} is over its limit of {key.requests_per_minute} "
                        f"requests per minute; retry in {wait:.0f} s.",
                        code="requests_per_minute", retry_after_s=wait,
                    )  # fmt: skip
                times.append(now)
            if key.tokens_per_minute is not None:
                used = self._tokens.setdefault(key.name, deque())
                while used and used[0][0] <= now - _WINDOW_S:
                    self._token_sums[key.name] -= used.popleft()[1]
                if self._token_sums.get(key.name, 0) >= key.tokens_per_minute:
                    wait = used[0][0] + _WINDOW_S - now
                    raise ClientLimitError(
                        f"Key {key.name!r} is over its limit of {key.tokens_per_minute} "
                        f"tokens per minute; retry in {wait:.0f} s.",
                        code="tokens_per_minute", retry_after_s=wait,
                    )  # fmt: skip
        if key.budget_usd is not None and self.store is not None:
            self._hold(request, key, cost())

    def _hold(self, request: Request, key: ClientKey, worst: float | None) -> None:
        """Hold the request's worst case against the key's budget, or raise why not."""
        assert self.store is not None and key.budget_usd is not None
        if worst is None:
            raise InvalidRequestError(
                f"Key {key.name!r} has a budget, and a model this request could reach has no "
                "price, so the budget cannot bound what it costs.",
                hint="Name a priced model, or ask the administrator for a key without a budget.",
                param="model",
            )
        since = period_start(key.budget_period)
        hold = self.store.hold(key.name, worst, since, key.budget_usd)
        if hold is None:
            spent = self.store.spent(key.name, since)
            per = "in total" if key.budget_period == "total" else f"per {key.budget_period}"
            raise ClientLimitError(
                f"Key {key.name!r} has spent ${spent:.4f} of its budget of "
                f"${key.budget_usd:g} {per}, and this request could cost up to "
                f"${worst:.4f} with what is under way; it is refused.",
                code="budget_exceeded",
            )
        request.scope.setdefault("state", {}).setdefault(_HOLDS, []).append(hold)

    def release(self, scope: Any) -> None:
        """End the request's holds (called once its response is sent)."""
        if self.store is None:
            return
        for hold in scope.get("state", {}).get(_HOLDS, ()):
            self.store.release(hold)

    def charge(self, request: Request, answers: Iterable[CompletionResponse | None]) -> None:
        """Charge the answers' cost and tokens to the request's key, and end its holds with
        the same transaction: every path answers a request once (a stream at its end), so
        nothing is charged to it after this."""
        key = client_of(request)
        if key is None or self.store is None:
            return
        charges = []
        for r in answers:
            if r is None:
                continue
            tokens = (r.input_tokens or 0) + (r.output_tokens or 0)
            charges.append((r.model, r.cost, tokens))
            if key.tokens_per_minute is not None:
                self._count_tokens(key.name, tokens)
        state = request.scope.get("state", {})
        if charges or state.get(_HOLDS):
            self.store.settle(key.name, charges, state.get(_HOLDS, ()))
        # Ended with the charge, not at ``release``; a settle that failed (a locked or full
        # store) leaves them for ``release`` to end.
        state.pop(_HOLDS, None)

    def charge_usage(self, request: Request, model: str, usd: float | None, tokens: int) -> None:
        """Charge what a call that is no completion (embeddings) cost to the request's key."""
        key = client_of(request)
        if key is None or self.store is None:
            return
        self.store.charge(key.name, model, usd, tokens)
        if key.tokens_per_minute is not None:
            self._count_tokens(key.name, tokens)

    def _count_tokens(self, name: str, tokens: int) -> None:
        with self._lock:
            self._tokens.setdefault(name, deque()).append((time.monotonic(), tokens))
            self._token_sums[name] = self._token_sums.get(name, 0) + tokens

    def visible(self, request: Request, names: Iterable[str]) -> set[str]:
        key = client_of(request)
        return {n for n in names if key is None or key.allows(n)}

    def is_admin(self, request: Request) -> bool:
        key = client_of(request)
        return key is None or key.admin
