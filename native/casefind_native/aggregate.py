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


@nb.njit(cache=True, nogil=True)
def group_sums_into(out: np.ndarray, group: np.ndarray, mask: np.ndarray, value: np.ndarray, valid: np.ndarray):
    """``group_sums`` added to ``out`` (rows n, k, s, ss, s_err, ss_err). The sums are
    compensated (Neumaier): rows 4 and 5 carry what each addition rounded away, so ``s +
    s_err`` is the sum to far below a double's resolution, whatever order the patients come
    in. That is what lets shards' sums, added, give one store's sums (kpis/sharded.py)."""
    for i in range(group.shape[0]):
        if mask[i]:
            g = group[i]
            out[0, g] += 1.0
            if valid[i]:
                x = np.float64(value[i])  # counts may come as int64, flags as bool: no copy made to cast them
                out[1, g] += 1.0
                if x != 0.0:  # adding 0.0 changes no bit of a compensated sum (most values are 0)
                    _add_value(out, g, x)


@nb.njit(cache=True, nogil=True)
def block_sums_into(out: np.ndarray, group: np.ndarray, mask: np.ndarray, block: np.ndarray):
    """``group_sums_into`` for many values of the same patients at once: ``block`` (patients
    x values, every one valid: float64, or the int64 counts of a scan's value group) added
    to ``out`` (values x the six rows x groups). A KPI split
    by sixty providers is sixty values per patient, mostly zero; one call and a skipped zero
    (adding 0.0 changes no bit of a compensated sum) instead of sixty passes. A value at a
    time, its patients in order: each cell sees its additions in the order a column alone
    would, and a block laid out a value at a time (the native engine's, a transposed view)
    is read in order, without the copy a patient-major layout needs."""
    _add_people(out, group, mask)
    for j in range(block.shape[1]):
        cells = out[j]
        for i in range(group.shape[0]):
            if mask[i]:
                x = np.float64(block[i, j])  # a group's counts come as int64
                if x != 0.0:
                    _add_value(cells, group[i], x)


@nb.njit(cache=True, nogil=True)
def sparse_block_sums_into(out: np.ndarray, group: np.ndarray, mask: np.ndarray, at: np.ndarray,
                           member: np.ndarray, value: np.ndarray):
    """``block_sums_into`` for a block held as its values that are not 0: ``value[r]`` of
    member ``member[r]`` for patient position ``at[r]``, the records in patient order (a
    scan's sparse group of counts). Each cell sees its additions in the order the dense
    block gives them, so the sums are the same bits; what is not recorded is a 0, which
    changes no bit of a compensated sum."""
    _add_people(out, group, mask)
    for r in range(at.shape[0]):
        q = at[r]
        if mask[q]:
            x = np.float64(value[r])
            if x != 0.0:
                _add_value(out[member[r]], group[q], x)


@nb.njit(cache=True, inline="always")
def _add_people(out: np.ndarray, group: np.ndarray, mask: np.ndarray):
    """Rows n and k of every value of a block: the population's people per group, the same
    for every value (each has one for every patient)."""
    people = np.zeros(out.shape[2])
    for i in range(group.shape[0]):
        if mask[i]:
            people[group[i]] += 1.0
    for j in range(out.shape[0]):
        for g in range(out.shape[2]):
            out[j, 0, g] += people[g]
            out[j, 1, g] += people[g]


@nb.njit(cache=True, inline="always")
def _add_value(cells: np.ndarray, g: int, x: float):
    """One value of a block added to its group's sum and sum of squares (rows 2 and 3,
    their compensations in 4 and 5)."""
    _add_compensated(cells, 2, 4, g, x)
    _add_compensated(cells, 3, 5, g, x * x)


@nb.njit(cache=True, inline="always")
def _add_compensated(out: np.ndarray, row: int, err: int, g: int, x: float):
    a = out[row, g]
    t = a + x
    out[err, g] += (a - t) + x if abs(a) >= abs(x) else (x - t) + a
    out[row, g] = t


def add_compensated(hi: np.ndarray, lo: np.ndarray, other_hi: np.ndarray, other_lo: np.ndarray) -> None:
    """(hi, lo) += (other_hi, other_lo), in place: two compensated sums added (Knuth's
    two-sum on the leading parts, the errors carried in ``lo``)."""
    t = hi + other_hi
    b = t - hi
    lo += ((hi - (t - b)) + (other_hi - b)) + other_lo
    hi[...] = t


@nb.njit(cache=True, nogil=True)
def pairs_seen(offsets: np.ndarray, group_of_patient: np.ndarray, codes: np.ndarray, n_groups: int, n_codes: int):
    """(groups x codes) whether any row of a patient of group g has code c (>= 0), over a
    patient-sorted table (``offsets``): one pass over the codes, where numpy would gather
    each row's group and count every pair (which systems' patients each provider serves)."""
    seen = np.zeros((n_groups, n_codes), dtype=np.bool_)
    for p in range(offsets.shape[0] - 1):
        g = group_of_patient[p]
        for r in range(offsets[p], offsets[p + 1]):
            c = codes[r]
            if c >= 0:
                seen[g, c] = True
    return seen


@nb.njit(cache=True, nogil=True)
def most_days_after(later: np.ndarray, sort: np.ndarray, null: int, sort_null: int):
    """(the most days ``later`` falls after ``sort`` over the rows where ``later`` is
    recorded, 0 when none is; False when such a row has no ``sort``): one pass over two
    date columns, no temporaries (Store.days_after)."""
    most, seen = 0, False
    for i in range(later.shape[0]):
        if later[i] != null:
            if sort[i] == sort_null:
                return 0, False
            d = np.int64(later[i]) - np.int64(sort[i])
            if not seen or d > most:
                most, seen = d, True
    return most, True


@nb.njit(cache=True, nogil=True)
def band_codes(values: np.ndarray, lows: np.ndarray, highs: np.ndarray, none: int) -> np.ndarray:
    """Each value's band: the last i with lows[i] <= value <= highs[i], else ``none`` (nan
    is in none): a KPI's age bands, one pass instead of two comparisons per band."""
    out = np.empty(values.shape[0], dtype=np.int64)
    for j in range(values.shape[0]):
        code = none
        for i in range(lows.shape[0] - 1, -1, -1):  # the last band that holds it
            if lows[i] <= values[j] <= highs[i]:
                code = i
                break
        out[j] = code
    return out
