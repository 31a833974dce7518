"""Sums per group in one pass: what a KPI needs from each patient, added up per practice.

One loop gives the four additive pieces (people in the population, people with a value,
the sum and the sum of squares) where numpy would make four masked copies and four
bincounts; at a million patients and hundreds of measure-periods this is the KPI roll-up's
main cost.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def group_sums(group: np.ndarray, n_groups: int, mask: np.ndarray, value: np.ndarray, valid: np.ndarray):
    """(n, k, s, ss) per group over rows with ``mask``: count, count with ``valid``, and the
    sum and sum of squares of ``value`` over the valid ones."""
    n = np.zeros(n_groups)
    k = np.zeros(n_groups)
    s = np.zeros(n_groups)
    ss = np.zeros(n_groups)
    for i in range(group.shape[0]):
        if mask[i]:
            g = group[i]
            n[g] += 1.0
            if valid[i]:
                x = value[i]
                k[g] += 1.0
                s[g] += x
                ss[g] += x * x
    return n, k, s, ss


@nb.njit(cache=True)
def group_sums_into(out: np.ndarray, group: np.ndarray, mask: np.ndarray, value: np.ndarray, valid: np.ndarray):
    """``group_sums`` added to ``out`` (rows n, k, s, ss): patients taken chunk by chunk, in
    order, give each group the same additions in the same order as one pass, so the same sums."""
    for i in range(group.shape[0]):
        if mask[i]:
            g = group[i]
            out[0, g] += 1.0
            if valid[i]:
                x = value[i]
                out[1, g] += 1.0
                out[2, g] += x
                out[3, g] += x * x
