"""Where each patient's value stands among the population's: counts for percentile and top."""
from __future__ import annotations

import numba as nb
import numpy as np

_BITS = 11  # radix digit: 2,048 buckets stay in cache


@nb.njit(cache=True, nogil=True)
def standing(values, member, below, at_most):
    """Fill ``below[i]`` (members whose value is smaller than ``values[i]``) and ``at_most[i]``
    (members whose value is at most it); return the number of members. nan counts as the
    largest value and equal to itself, -0.0 equals 0.0 (numpy's sort order). An LSD radix
    sort of order-preserving integer keys, then one walk over runs of equal values."""
    n = values.shape[0]
    sign = np.uint64(1) << np.uint64(63)
    keys = np.empty(n, dtype=np.uint64)
    raw = values.view(np.uint64)
    for i in range(n):
        v = values[i]
        if v != v:
            keys[i] = ~np.uint64(0)
        elif v == 0.0:
            keys[i] = sign
        elif raw[i] & sign:
            keys[i] = ~raw[i]
        else:
            keys[i] = raw[i] | sign
    order = np.arange(n)
    spare = np.empty(n, dtype=np.int64)
    mask = np.uint64((1 << _BITS) - 1)
    counts = np.zeros(1 << _BITS, dtype=np.int64)
    for shift in range(0, 64, _BITS):
        s = np.uint64(shift)
        counts[:] = 0
        for i in range(n):
            counts[(keys[i] >> s) & mask] += 1
        if counts.max() == n:
            continue  # every key has the same digit here
        total = 0
        for j in range(counts.shape[0]):
            c = counts[j]
            counts[j] = total
            total += c
        for i in range(n):
            o = order[i]
            digit = (keys[o] >> s) & mask
            spare[counts[digit]] = o
            counts[digit] += 1
        order, spare = spare, order
    counted = 0
    i = 0
    while i < n:
        j = i
        inside = 0
        while j < n and keys[order[j]] == keys[order[i]]:
            inside += member[order[j]]
            j += 1
        for k in range(i, j):
            below[order[k]] = counted
            at_most[order[k]] = counted + inside
        counted += inside
        i = j
    return counted
