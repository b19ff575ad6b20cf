"""Amounts of money written for people (footers, budgets, route decisions, reports).

Its own module so that the response types and the pricing estimates can both
use it without importing each other.
"""

from __future__ import annotations

import math

__all__ = ["format_usd"]

_SMALLEST_USD = 1e-8  # 8 decimals: below this an amount would print as $0.00000000


def format_usd(value: float | None) -> str:
    """An amount of USD for people: three significant digits, at least the cents.

    ``$0.000412`` (one call), ``$0.05``, ``$5.00``, ``$1,234.50``: never scientific
    notation, and zeros after the cents are dropped. A positive amount too small
    for 8 decimals is ``<$0.00000001``, so it never reads as free. None (an
    unpriced model, an unknown usage) is ``cost n/a``.
    """
    if value is None:
        return "cost n/a"
    if not math.isfinite(value):
        return f"${value}"
    sign, size = ("-" if value < 0 else ""), abs(value)
    if size == 0:
        return "$0.00"
    if size < _SMALLEST_USD:
        return f"{sign}<${_SMALLEST_USD:.8f}"
    decimals = min(8, max(2, 2 - math.floor(math.log10(size))))
    whole, _, fraction = f"{size:,.{decimals}f}".partition(".")
    return f"{sign}${whole}.{fraction[:2]}{fraction[2:].rstrip('0')}"
