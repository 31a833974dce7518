"""The span of dates a plan reads: from the earliest start of a bounded window (``within=``,
``between=``, a trend's months, at any ``at`` date) to its latest evaluation date. Windows
that reach back for ever (``ever``, ``active``) read history, not the data's coverage."""
from __future__ import annotations

import datetime as dt

from casefind.contract.dates import shift_date
from casefind.plan import Plan


def _window_start(slot) -> dt.date | None:
    """The earliest date the slot's window reads (a trend's window is its months); None
    when it reaches back for ever."""
    window = slot.node.window
    if window.kind != "range":
        return None
    months, days = window.start
    return shift_date(slot.as_of, -months, -days)


def read_span(plan: Plan) -> tuple[dt.date, dt.date]:
    """(earliest date a bounded window reads, latest evaluation date); the plan's as_of for
    both when no window is bounded."""
    slots = [s for table_slots in plan.scans.values() for s in table_slots]
    starts = [d for d in map(_window_start, slots) if d is not None]
    ends = [s.as_of for s in slots]
    return (min(starts, default=plan.as_of), max(ends + [plan.as_of]))
