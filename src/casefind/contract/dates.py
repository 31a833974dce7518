"""Dates as int32 day numbers (days since 1970-01-01, as Arrow's date32), the sentinel the
store uses for a missing date, and the one calendar arithmetic every part uses: months added
with the day clamped to the month's end (31 March - 1 month = 28 February, as DuckDB does),
for one date (``shift_date``) or an array of day numbers (``shift_days``)."""
from __future__ import annotations

import datetime as dt

import numpy as np

EPOCH = dt.date(1970, 1, 1)
NULL_DAY = np.int32(np.iinfo(np.int32).min)  # a missing date in the store's int32 columns


def to_day(d: dt.date | str) -> int:
    if isinstance(d, str):
        d = dt.date.fromisoformat(d)
    return (d - EPOCH).days


def from_day(n: int) -> dt.date | None:
    return None if int(n) == int(NULL_DAY) else EPOCH + dt.timedelta(days=int(n))


def shift_date(d: dt.date, months: int = 0, days: int = 0) -> dt.date:
    """Calendar month arithmetic, the day clamped to the month's end (as DuckDB does)."""
    if months:
        m = d.month - 1 + months
        y, m = d.year + m // 12, m % 12 + 1
        last = (dt.date(y + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1)).day
        d = dt.date(y, m, min(d.day, last))
    return d + dt.timedelta(days=days)


def _civil(days: np.ndarray):
    """Year, month and day of day numbers (days since 1970-01-01), in integer arithmetic
    (the proleptic Gregorian calendar; H. Hinnant's civil_from_days)."""
    z = days.astype(np.int64) + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    return yoe + era * 400 + (m <= 2), m, day


def ymd(days: np.ndarray):
    """Year, month and day of day numbers. Many patients, few distinct days (a century is
    36,525): the calendar of the days' range, then a look-up per patient."""
    if len(days) < 4096:
        return _civil(days)
    first, last = int(days.min()), int(days.max())
    if last - first >= len(days):
        return _civil(days)
    at = days.astype(np.intp) - first
    return tuple(part[at] for part in _civil(np.arange(first, last + 1)))


def shift_days(days: np.ndarray, months: int, extra_days: int) -> np.ndarray:
    """Per-patient calendar arithmetic, the day clamped to the month's end."""
    out = days.astype(np.int64)
    if months:
        y, m, d = ymd(days)
        total = (y * 12 + (m - 1)) + months
        ny, nm = total // 12, total % 12 + 1
        first = (np.array((ny - 1970) * 12 + (nm - 1), dtype="datetime64[M]")).astype("datetime64[D]")
        next_first = (np.array((ny - 1970) * 12 + nm, dtype="datetime64[M]")).astype("datetime64[D]")
        last = (next_first - first).astype(np.int64)
        out = first.astype(np.int64) + np.minimum(d, last) - 1
    return out + extra_days
