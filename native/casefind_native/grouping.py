"""Order event rows by patient, then date: the layout every kernel scans.

A counting sort by patient index (O(n)) followed by a stable sort of each patient's few
rows by date, in parallel over patients. Ties keep source order, so the store is
deterministic for a given input.
"""
from __future__ import annotations

import numba as nb
import numpy as np

_SMALL = 32  # segments up to this length use insertion sort


@nb.njit(cache=True)
def _counting_order(patient: np.ndarray, n_patients: int):
    counts = np.zeros(n_patients + 1, dtype=np.int64)
    for p in patient:
        counts[p + 1] += 1
    offsets = np.cumsum(counts)
    cursor = offsets[:-1].copy()
    order = np.empty(patient.shape[0], dtype=np.int64)
    for i in range(patient.shape[0]):
        p = patient[i]
        order[cursor[p]] = i
        cursor[p] += 1
    return order, offsets


@nb.njit(parallel=True, cache=True)
def _sort_segments_by_date(order: np.ndarray, offsets: np.ndarray, date: np.ndarray):
    n = offsets.shape[0] - 1
    for p in nb.prange(n):
        lo, hi = offsets[p], offsets[p + 1]
        if hi - lo <= 1:
            continue
        if hi - lo <= _SMALL:
            for i in range(lo + 1, hi):
                row = order[i]
                key = date[row]
                j = i - 1
                while j >= lo and date[order[j]] > key:
                    order[j + 1] = order[j]
                    j -= 1
                order[j + 1] = row
        else:
            seg = order[lo:hi].copy()
            keys = date[seg]
            idx = np.argsort(keys, kind="mergesort")
            for k in range(hi - lo):
                order[lo + k] = seg[idx[k]]


def group_by_patient(patient: np.ndarray, n_patients: int, date: np.ndarray | None = None):
    """Return (order, offsets): ``order`` permutes rows into patient-then-date order;
    rows of patient ``p`` are ``order[offsets[p]:offsets[p + 1]]``."""
    patient = np.ascontiguousarray(patient, dtype=np.int32)
    if patient.size and (patient.min() < 0 or patient.max() >= n_patients):
        raise ValueError("patient index out of range")
    order, offsets = _counting_order(patient, n_patients)
    if date is not None:
        _sort_segments_by_date(order, offsets, np.ascontiguousarray(date, dtype=np.int32))
    return order, offsets


@nb.njit(parallel=True, cache=True)
def _gather(values, order, out):
    for i in nb.prange(order.shape[0]):
        out[i] = values[order[i]]


def gather(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``values[order]`` in parallel (a random-access gather is memory-bound; two cores
    halve it on the store's tens of millions of rows)."""
    out = np.empty(order.shape[0], dtype=values.dtype)
    _gather(values, order, out)
    return out
