"""Where each patient's value stands among the population's: counts for percentile and top."""
from __future__ import annotations

import numpy as np


def standing(values, member, below, at_most):
    """Fill ``below[i]`` (members whose value is smaller than ``values[i]``) and ``at_most[i]``
    (members whose value is at most it); return the number of members. nan counts as the
    largest value and equal to itself, -0.0 equals 0.0 (numpy's sort order). One sort, then
    members counted per run of equal values. numpy, not Numba: a first run in a fresh
    process would spend about two seconds compiling a sort that numpy already has."""
    n = values.shape[0]
    if n == 0:
        return 0
    order = np.argsort(values)
    s = values[order]
    same = (s[1:] == s[:-1]) | (np.isnan(s[1:]) & np.isnan(s[:-1]))
    run = np.empty(n, dtype=np.int64)
    run[0] = 0
    np.cumsum(~same, out=run[1:])
    inside = np.bincount(run, weights=member[order]).astype(np.int64)
    upto = np.cumsum(inside)
    below[order] = (upto - inside)[run]
    at_most[order] = upto[run]
    return int(upto[-1])
