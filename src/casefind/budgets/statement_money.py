"""Money as the budget statement prints it: whole pounds whose rows add up to the totals shown.

Why controlled rounding: rounding each row on its own can leave a table whose rows sum to a
pound or two more or less than its printed total, and a finance reader checks the sums. So
a total is rounded (half away from zero) and its rows are rounded to add up to it: each row
takes the whole pound just below or above its exact value, the rows with the largest
fractions taking the pound above (the largest remainder method). Every figure printed is
within £1 of its exact value. Variances are printed as printed budget minus printed actual,
so they add up too. Rates per person are shown to the penny and are not totalled.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

MISSING = "\u2013"


def whole(value: float) -> int:
    """``value`` to whole pounds, half away from zero on its decimal value (2.5 -> 3, -2.5 -> -3)."""
    return int(Decimal(repr(float(value))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def controlled(values: Sequence[float], total: int | None = None) -> list[int]:
    """``values`` in whole pounds summing to ``total`` (default: their sum, rounded).

    Each value goes to its floor, then the values with the largest fractions go up a pound
    until the sum is reached; a ``total`` further off than that moves every value evenly.
    """
    if not values:
        return []
    target = whole(math.fsum(values)) if total is None else int(total)
    out = [math.floor(v) for v in values]
    short = target - sum(out)
    order = sorted(range(len(values)), key=lambda i: (-(values[i] - out[i]), i))
    if short < 0:
        order.reverse()
    step = 1 if short > 0 else -1
    for k in range(abs(short)):
        out[order[k % len(order)]] += step
    return out


def pounds(value: int | float | None) -> str:
    """£1,234 (whole pounds; a minus sign before the £)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    n = whole(value)
    return f"{'-' if n < 0 else ''}\u00a3{abs(n):,}"


def pence(value: float | None) -> str:
    """£1,234.56, for rates per person (tariffs, means)."""
    if value is None or not math.isfinite(value):
        return MISSING
    cents = Decimal(repr(float(value))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{'-' if cents < 0 else ''}\u00a3{abs(cents):,.2f}"


def count(value: int | float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    return f"{whole(value):,}"


def percent(fraction: float | None, places: int = 1) -> str:
    if fraction is None or not math.isfinite(fraction):
        return MISSING
    return f"{fraction * 100:.{places}f}%"
