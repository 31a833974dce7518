"""Small helpers the generated kernels call (numba-compiled, numpy only)."""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def rows_upto(dates, lo, hi, i, day):
    """The index just past the last of rows lo..hi-1 (sorted by date) dated on or before
    ``day``, found by walking from index ``i``: kernels start at the end of the patient's
    rows, then from the previous (later) bound, so the walk only passes rows a window holds."""
    while i > lo and dates[i - 1] > day:
        i -= 1
    while i < hi and dates[i] <= day:
        i += 1
    return i


@nb.njit(cache=True, inline="always")
def bucket(d, bounds):
    """Index (0 = oldest) of the monthly bucket holding day ``d``; ``bounds`` are
    [D, D - 1 month, ..., D - n months], bucket i from the end being (bounds[i+1], bounds[i]]."""
    n = bounds.shape[0] - 1
    for i in range(n):
        if d > bounds[i + 1]:
            return n - 1 - i
    return 0


@nb.njit(cache=True)
def monthly_slope(y, rows):
    """Least-squares slope of y over 0..n-1 per month; 0 when fewer than two buckets have rows."""
    n = y.shape[0]
    busy = 0
    for i in range(n):
        if rows[i] > 0:
            busy += 1
    if busy < 2:
        return 0.0
    mx = (n - 1) / 2.0
    num = 0.0
    den = 0.0
    for i in range(n):
        num += (i - mx) * y[i]
        den += (i - mx) * (i - mx)
    return num / den


@nb.njit(cache=True)
def count_unique(values):
    n = values.shape[0]
    if n <= 32:  # a patient's few values: compare pairwise, no sort (the common case)
        k = 0
        for i in range(n):
            seen = False
            for j in range(i):
                if values[j] == values[i]:
                    seen = True
                    break
            if not seen:
                k += 1
        return k
    s = np.sort(values)
    k = 1
    for i in range(1, s.shape[0]):
        if s[i] != s[i - 1]:
            k += 1
    return k


@nb.njit(cache=True)
def weighted(stamp, weights, p):
    """Sum of the weights of the categories stamped with patient ``p``, in category order."""
    total = 0.0
    for i in range(stamp.shape[0]):
        if stamp[i] == p:
            total += weights[i]
    return total
