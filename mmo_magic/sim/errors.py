"""The simulated provider's one error: a request the real API would refuse with a 400."""

from __future__ import annotations

__all__ = ["BadRequest"]


class BadRequest(ValueError):
    """The request body is not something this provider would accept."""
