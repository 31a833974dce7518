"""Which dates a store's data covers, and refusing evaluations that would read past it.

A rule run at a date after the data ends, or a KPI period before it starts, silently counts
zeros: a list of nobody, a history of zeros that every later pack charts. The store's
coverage is the span of its activity data (contacts, attendances, spells: what every
utilisation and cost feature reads; diagnoses and registers reach back further as history),
or of all its event tables when it has no activity.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from casefind.errors import UsageError

# Within a month after the data ends, an evaluation still sees nearly all of its windows: it
# is partly covered. Beyond that it sees nothing recent at all: it is outside the data.
_GRACE = dt.timedelta(days=31)
# An extract often ends a few days before its date (a weekend, a bank holiday, a reporting
# lag): up to a week after the last event still counts as covered.
_LAG = dt.timedelta(days=7)


class CoverageError(UsageError):
    """A date or period the store's data does not cover (exit code 2)."""


@dataclass(frozen=True)
class Coverage:
    first: dt.date | None
    last: dt.date | None

    @classmethod
    def of(cls, manifest: dict) -> Coverage:
        tables = manifest.get("tables", {})
        ranges = [tables["activity"]["date_range"]] if (tables.get("activity") or {}).get("date_range") else \
            [t["date_range"] for t in tables.values() if t.get("date_range")]
        if not ranges:
            return cls(None, None)
        return cls(min(dt.date.fromisoformat(r[0]) for r in ranges),
                   max(dt.date.fromisoformat(r[1]) for r in ranges))

    def __str__(self) -> str:
        return f"{self.first} to {self.last}" if self.first else "no dated events"


def check_span(cov: Coverage, first: dt.date, last: dt.date, *, what: str, option: str,
               allow_partial: bool, partial_hint: str | None = None) -> str | None:
    """Refuse (CoverageError) an evaluation reading ``first``..``last`` that lies outside the
    data; when only partly covered, refuse unless ``allow_partial``, then return a warning.
    ``partial_hint`` replaces the --allow-partial hint for a command that has no such option."""
    if cov.first is None:
        raise CoverageError(f"{what}: the store has no dated events to evaluate", option=option)
    if last < cov.first or first > cov.last + _GRACE:
        raise CoverageError(f"{what} is outside the store's data, which covers {cov}",
                            f"choose a date within {cov}", option=option)
    gaps = []
    if first < cov.first:
        gaps.append(f"it reads back to {first}, before the data starts on {cov.first}")
    if last > cov.last + _LAG:
        gaps.append(f"it runs to {last}, after the data ends on {cov.last}")
    if not gaps:
        return None
    message = f"{what} is only partly covered by the store's data ({cov}): {'; '.join(gaps)}"
    if not allow_partial:
        raise CoverageError(message, partial_hint or "counts over the uncovered days would be too low; pass "
                            "--allow-partial to run anyway (the run records that it was partial)", option=option)
    return message
