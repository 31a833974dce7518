"""Each kernel runtime helper (casefind_native.runtime) against a numpy / Python reference,
one table of cases (after numbagg's test_grouped.py): the generated kernels call these on
every row, so a wrong one is wrong for every rule."""
from __future__ import annotations

import datetime as dt
import operator

import numpy as np
import pytest

from casefind.contract.dates import shift_date, to_day
from casefind_native import runtime as rt

nan = np.nan


def _rows_upto(dates, lo, hi, i, day):
    return lo + int(np.searchsorted(dates[lo:hi], day, side="right"))


def _bucket(d, bounds):
    n = len(bounds) - 1
    for i in range(n):
        if d > bounds[i + 1]:
            return n - 1 - i
    return 0


def _slope(y, rows):
    if (rows > 0).sum() < 2:
        return 0.0
    return float(np.polyfit(np.arange(len(y)), y, 1)[0])


def _weighted(stamp, weights, p):
    return int(weights[stamp == p].sum())


def _weighted_hierarchy(stamp, weights, p, above_ptr, above):
    on = stamp == p
    keep = [on[i] and not any(on[above[j]] for j in range(above_ptr[i], above_ptr[i + 1])) for i in range(len(on))]
    return int(weights[np.array(keep, bool)].sum())


def _finite(x):
    return x if np.isfinite(x) else nan


def _shift_day(day, months, days):
    return to_day(shift_date(dt.date(1970, 1, 1) + dt.timedelta(days=int(day)), months, 0)) + days


DATES = np.array([10, 12, 12, 15, 20, 31], dtype=np.int64)
STAMP = np.array([3, 1, 3, 3, 0], dtype=np.int64)
WEIGHTS = np.array([5, 7, 11, 13, 17], dtype=np.int64)
ABOVE_PTR = np.array([0, 1, 1, 2, 2, 2], dtype=np.int64)  # 0 is below 2; 2 is below 3
ABOVE = np.array([2, 3], dtype=np.int64)
BOUNDS = np.array([100, 70, 40, 10], dtype=np.int64)

CASES = [  # (runtime function, reference, arguments)
    *[(rt.rows_upto, _rows_upto, (DATES, 0, 6, start, day)) for start in (0, 3, 6) for day in (5, 12, 16, 31, 40)],
    (rt.rows_upto, _rows_upto, (DATES, 2, 5, 5, 12)),
    *[(rt.bucket, _bucket, (d, BOUNDS)) for d in (11, 40, 41, 70, 71, 100)],
    (rt.monthly_slope, _slope, (np.array([1.0, 2.0, 4.0]), np.array([1, 1, 1]))),
    (rt.monthly_slope, _slope, (np.array([0.0, 3.0, 0.0, 1.0]), np.array([0, 2, 0, 1]))),
    (rt.monthly_slope, _slope, (np.array([0.0, 5.0, 0.0]), np.array([0, 1, 0]))),
    *[(rt.count_unique, lambda v: len(set(v.tolist())), (v,)) for v in
      (np.array([], float), np.array([1.0, 1.0, 2.0]), np.arange(40.0) % 7, np.array([3.0] * 50))],
    *[(rt.weighted, _weighted, (STAMP, WEIGHTS, p)) for p in (0, 1, 3, 9)],
    *[(rt.weighted_hierarchy, _weighted_hierarchy, (STAMP, WEIGHTS, p, ABOVE_PTR, ABOVE)) for p in (0, 1, 3)],
    *[(f, lambda x, y, op=op: _finite(op(x, y)), (x, y)) for f, op in
      ((rt.add, operator.add), (rt.sub, operator.sub), (rt.mul, operator.mul))
      for x, y in ((1.5, 2.0), (nan, 1.0), (1e308, 1e308), (-3.0, 4.0))],
    *[(rt.div, lambda x, y: nan if y == 0 or y != y else _finite(x / y), (x, y))
      for x, y in ((1.0, 2.0), (1.0, 0.0), (nan, 1.0), (1.0, nan), (1e308, 1e-308))],
    *[(rt.whole, lambda r: r if -2.0 ** 63 <= r < 2.0 ** 63 else nan, (r,))
      for r in (5.0, 2.0 ** 63, -2.0 ** 63, -1e19)],
    *[(rt.differ, lambda a, b: a == a and b == b and a != b, (a, b)) for a, b in ((1.0, 2.0), (1.0, 1.0), (nan, 1.0))],
    *[(rt.in_sorted, lambda v, x: bool(x in v.tolist()), (np.array([1.0, 4.0, 9.0]), x))
      for x in (0.0, 1.0, 5.0, 9.0, 10.0, nan)],
    *[(rt.shift_day, _shift_day, (day, months, days))
      for day in (to_day(dt.date(2024, 1, 31)), to_day(dt.date(1969, 3, 31)))
      for months, days in ((0, 0), (1, 0), (-1, 0), (-13, 5), (25, -30))],
]


@pytest.mark.parametrize("func, reference, args", CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
def test_runtime_matches_reference(func, reference, args):
    got, want = func(*args), reference(*args)
    if isinstance(want, float) and np.isnan(want):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def _group(codes, days, member_sets, kinds, day):
    """A codelist group's outputs by its definition: per member, over the rows whose code
    its codelist holds, exists / count / last / first / days_since of the dated ones."""
    out, ok = [], []
    for members, k in zip(member_sets, kinds):
        hit = [d for c, d in zip(codes, days) if c in members]
        dated = [d for d in hit if d != rt.NULL_DAY]
        v = [int(bool(hit)), len(hit), dated[-1] if dated else 0, dated[0] if dated else 0,
             day - (dated[-1] if dated else rt.NULL_DAY)][k]
        out.append(v)
        ok.append(True if k <= rt.GROUP_COUNT else bool(dated))
    return out, ok


@pytest.mark.parametrize("codes, days", [
    ([], []), ([0, 2, 1, 2], [5, 6, 9, 12]), ([1, 1, 3], [rt.NULL_DAY, 4, 8]), ([2], [rt.NULL_DAY])])
def test_codelist_group_matches_its_definition(codes, days):
    member_sets = [{0, 2}, {1}, {2, 3}, {1, 2}, {0, 1, 2, 3}]
    kinds = np.array([0, 1, 2, 3, 4], dtype=np.int64)
    ptr = np.zeros(5, dtype=np.int64)
    ids = []
    for c in range(4):
        ids += [m for m, s in enumerate(member_sets) if c in s]
        ptr[c + 1] = len(ids)
    cnt, nd, first, last = (np.zeros(5, dtype=np.int64) for _ in range(4))
    touched = np.zeros(6, dtype=np.int64)
    for c, d in zip([3, 0], [2, 3]):  # an earlier patient's rows, reset before this one's
        rt.group_row(ptr, np.array(ids, dtype=np.int64), c, d, cnt, nd, first, last, touched)
    rt.group_reset(touched, cnt, nd)
    for c, d in zip(codes, days):
        rt.group_row(ptr, np.array(ids, dtype=np.int64), c, d, cnt, nd, first, last, touched)
    assert sorted(touched[1:touched[0] + 1]) == [m for m, s in enumerate(member_sets) if s & set(codes)]
    # out comes zeroed (the engine allocates it so); ok is read only for the kinds that can
    # be missing (last, first, days_since): an exists or a count always has a value
    out, ok = np.zeros((5, 1, 3), dtype=np.int64), np.full((5, 1, 3), True)
    rt.group_fill(kinds, np.array([20], dtype=np.int64), out, ok, 1, 2)
    rt.group_emit(kinds, touched, cnt, nd, first, last, 20, out, ok, 0, 1)
    want_out, want_ok = _group(codes, days, member_sets, kinds, 20)
    read = kinds > rt.GROUP_COUNT
    assert out[:, 0, 1].tolist() == want_out and ok[read, 0, 1].tolist() == [w for w, r in zip(want_ok, read) if r]
    assert (out[:, 0, 0] == 0).all() and (out[:, 0, 2] == 0).all()  # outside the work item: not written
    assert ok[:, 0, 0].all() and ok[:, 0, 2].all()


def test_a_sparse_group_records_each_touched_count_and_grows_its_buffer():
    """group_emit_sparse against its definition: every touched member's count at (period,
    patient position) appended as (member x periods + period, position, count), the
    records already there kept when the buffer doubles, untouched members not recorded."""
    rng = np.random.default_rng(5)
    nper, n_members = 3, 7
    buf, n, want = np.empty((3, 2), dtype=np.int64), 0, []  # two records' room: it must grow
    for q in range(40):
        for t in range(nper):
            touched = np.zeros(n_members + 1, dtype=np.int64)
            cnt = np.zeros(n_members, dtype=np.int64)
            for m in rng.choice(n_members, rng.integers(0, 4), replace=False):
                touched[0] += 1
                touched[touched[0]] = m
                cnt[m] = rng.integers(1, 9)
                want.append((m * nper + t, q, cnt[m]))
            buf, n = rt.group_emit_sparse(touched, cnt, buf, n, t, q, nper)
    assert n == len(want) > 40 and buf.shape[1] >= n
    assert list(map(tuple, buf[:, :n].T.tolist())) == want
