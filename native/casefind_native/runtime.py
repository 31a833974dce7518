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
    """Sum of the (whole-number, scaled) weights of the categories stamped with patient
    ``p``: exact in 64 bits, whatever the order."""
    total = 0
    for i in range(stamp.shape[0]):
        if stamp[i] == p:
            total += weights[i]
    return total


@nb.njit(cache=True)
def weighted_hierarchy(stamp, weights, p, above_ptr, above):
    """``weighted``, leaving out each category that one of the categories above it (CSR
    ``above_ptr``/``above``) is also stamped with patient ``p``: only the higher counts."""
    total = 0
    for i in range(stamp.shape[0]):
        if stamp[i] == p:
            counted = True
            for j in range(above_ptr[i], above_ptr[i + 1]):
                if stamp[above[j]] == p:
                    counted = False
                    break
            if counted:
                total += weights[i]
    return total


# --- codelist groups: many slots, each one codelist, one lookup per row ---------------------
# A group's member m counts its rows (cnt), those with a date (nd), and keeps the first and
# last of those dates; what it outputs is its kind: exists, count, last, first, days_since.
GROUP_EXISTS, GROUP_COUNT, GROUP_LAST, GROUP_FIRST, GROUP_DAYS_SINCE = 0, 1, 2, 3, 4
NULL_DAY = -2147483648


@nb.njit(cache=True, nogil=True, inline="always")
def group_row(ptr, members, code, day, cnt, nd, first, last, touched):
    """One row with code index ``code`` (>= 0) dated ``day``: every member whose codelist
    holds the code (CSR ``ptr``/``members``) counts it. A member's first row this patient
    and period puts it on ``touched`` (its count in ``touched[0]``, members after)."""
    for j in range(ptr[code], ptr[code + 1]):
        m = members[j]
        if cnt[m] == 0:
            touched[0] += 1
            touched[touched[0]] = m
        cnt[m] += 1
        if day != NULL_DAY:
            if nd[m] == 0:
                first[m] = day
            last[m] = day
            nd[m] += 1


@nb.njit(cache=True, nogil=True)
def group_reset(touched, cnt, nd):
    """Before a patient and period: the members the last one touched back to no rows (the
    rest are still zero), so a group of sixty costs what its rows touch, not sixty."""
    for i in range(1, touched[0] + 1):
        cnt[touched[i]] = 0
        nd[touched[i]] = 0
    touched[0] = 0


@nb.njit(cache=True, nogil=True)
def group_fill(kind, days, out, ok, q0, q1):
    """Every member's output for patients ``q0 <= q < q1`` as if it had no rows (what
    group_emit writes for a member untouched), before the work item's patients: then only
    the touched members are written per patient and period. ``out`` comes zeroed, so only
    days_since's (days since no row) is written; ``ok`` only for the kinds that can be
    missing (an exists or a count always has a value: the engine reads no ``ok`` for it).
    A KPI split by sixty providers has hundreds of count members: writing each one's zeros
    for every patient and period was most of the activity scan."""
    for m in range(kind.shape[0]):
        k = kind[m]
        if k <= GROUP_COUNT:
            continue
        for t in range(out.shape[1]):
            none = days[t] - NULL_DAY if k == GROUP_DAYS_SINCE else 0
            for q in range(q0, q1):
                if none:
                    out[m, t, q] = none
                ok[m, t, q] = False


@nb.njit(cache=True, nogil=True)
def group_emit(kind, touched, cnt, nd, first, last, day, out, ok, t, q):
    """The touched members' outputs at period ``t``, patient position ``q`` (``day``: the
    period's date, for days_since); group_fill wrote the others'."""
    for i in range(1, touched[0] + 1):
        m = touched[i]
        k, c, d = kind[m], cnt[m], nd[m]
        if k == GROUP_EXISTS:
            out[m, t, q] = 1 if c > 0 else 0
        elif k == GROUP_COUNT:
            out[m, t, q] = c
        else:
            ok[m, t, q] = d > 0
            if k == GROUP_LAST:
                out[m, t, q] = last[m] if d else 0
            elif k == GROUP_FIRST:
                out[m, t, q] = first[m] if d else 0
            else:
                out[m, t, q] = day - (last[m] if d else NULL_DAY)


SPARSE_START = 4096  # records a work item's sparse group starts with (it doubles when full)


@nb.njit(cache=True, nogil=True)
def group_emit_sparse(touched, cnt, buf, n, t, q, nper):
    """group_emit for a group of counts kept sparse: each touched member's count at period
    ``t``, patient position ``q`` appended to ``buf`` (rows: member x nper + t, q, count)
    after its ``n`` records, the buffer doubled when full. Returns the buffer and its
    length. Untouched members (most providers, for most patients and periods) cost nothing:
    a count is 0 where no record is."""
    need = n + touched[0]
    if need > buf.shape[1]:
        bigger = np.empty((3, max(2 * buf.shape[1], need)), dtype=np.int64)
        bigger[:, :n] = buf[:, :n]
        buf = bigger
    for i in range(1, touched[0] + 1):
        m = touched[i]
        buf[0, n] = m * nper + t
        buf[1, n] = q
        buf[2, n] = cnt[m]
        n += 1
    return buf, n


# --- per-row values (a filter or value= computed on each event row) -------------------------
# Arithmetic on row values is done in float64 with nan for a missing value, as the reference
# engine's SQL defines it: a result that is not finite (or, for whole numbers, beyond 64 bits)
# is missing, and so is a division by zero. nan propagates, so a missing operand needs no test.

TWO_63 = 9223372036854775808.0


@nb.njit(cache=True, inline="always")
def finite(r):
    return r if np.isfinite(r) else np.nan


@nb.njit(cache=True, inline="always")
def add(x, y):
    return finite(x + y)


@nb.njit(cache=True, inline="always")
def sub(x, y):
    return finite(x - y)


@nb.njit(cache=True, inline="always")
def mul(x, y):
    return finite(x * y)


@nb.njit(cache=True, inline="always")
def div(x, y):
    if y == 0 or y != y:
        return np.nan
    return finite(x / y)


@nb.njit(cache=True, inline="always")
def whole(r):
    """A whole-number result: missing beyond 64 bits."""
    if r >= -TWO_63 and r < TWO_63:
        return r
    return np.nan


@nb.njit(cache=True, inline="always")
def differ(a, b):
    """``a != b`` where either may be nan (missing): false then, as for every comparison."""
    return a == a and b == b and a != b


@nb.njit(cache=True)
def in_sorted(values, x):
    """Whether ``x`` is one of the sorted ``values`` (binary search; nan is never found)."""
    lo, hi = 0, values.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo < values.shape[0] and values[lo] == x


@nb.njit(cache=True)
def shift_day(day, months, days):
    """A day number moved by calendar months (the day clamped to the month's end) and days,
    as the engines move per-patient dates (H. Hinnant's civil calendar algorithms)."""
    if months != 0:
        z = day + 719468
        era = (z if z >= 0 else z - 146096) // 146097
        doe = z - era * 146097
        yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
        doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
        mp = (5 * doy + 2) // 153
        d = doy - (153 * mp + 2) // 5 + 1
        m = mp + 3 if mp < 10 else mp - 9
        y = yoe + era * 400 + (1 if m <= 2 else 0)
        total = y * 12 + (m - 1) + months
        y, m = total // 12, total % 12 + 1
        last = 31
        if m == 4 or m == 6 or m == 9 or m == 11:
            last = 30
        elif m == 2:
            last = 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
        d = min(d, last)
        y -= 1 if m <= 2 else 0
        era = (y if y >= 0 else y - 399) // 400
        yoe = y - era * 400
        mp = m - 3 if m > 2 else m + 9
        doy = (153 * mp + 2) // 5 + d - 1
        doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
        day = era * 146097 + doe - 719468
    return day + days
