"""Dates as int32 day numbers (days since 1970-01-01, as Arrow's date32), and the sentinel
the store uses for a missing date."""
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
