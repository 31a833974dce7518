"""Reporting periods: calendar months (2026-10), quarters (2026-Q3) and rolling years
(12m-to-2026-10, the 12 months to the end of October 2026), and ranges of them.

A period is evaluated at its last day: ``within=period`` in a KPI is (end - period, end].
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from casefind.contract.dates import shift_date
from casefind.errors import UsageError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_ROLLING = re.compile(r"^12m-to-(\d{4})-(\d{2})$")


class PeriodError(UsageError, ValueError):
    """A reporting period that cannot be read, or a range that runs backwards."""


@dataclass(frozen=True, order=True)
class Period:
    end: dt.date
    label: str
    months: int

    @property
    def start(self) -> dt.date:
        return _month_end(*_back(self.end, self.months)) + dt.timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def _back(d: dt.date, months: int) -> tuple[int, int]:
    total = d.year * 12 + d.month - 1 - months
    return total // 12, total % 12 + 1


def _month_end(year: int, month: int) -> dt.date:
    first_next = dt.date(year + month // 12, month % 12 + 1, 1)
    return first_next - dt.timedelta(days=1)


FIRST_YEAR, LAST_YEAR = 1900, 2099  # the dates the data contract accepts
MAX_PERIODS = 120  # in one run: ten years of months


def _year(text: str, y: int) -> int:
    if not FIRST_YEAR <= y <= LAST_YEAR:
        raise PeriodError(f"period {text!r}: the year must be between {FIRST_YEAR} and {LAST_YEAR}")
    return y


def parse(text: str) -> Period:
    text = text.strip()
    if m := _MONTH.match(text):
        y, mo = _year(text, int(m.group(1))), int(m.group(2))
        if not 1 <= mo <= 12:
            raise PeriodError(f"period {text!r}: month {mo} is not 01-12")
        return Period(_month_end(y, mo), f"{y:04d}-{mo:02d}", 1)
    if m := _QUARTER.match(text):
        y, q = _year(text, int(m.group(1))), int(m.group(2))
        return Period(_month_end(y, 3 * q), f"{y:04d}-Q{q}", 3)
    if m := _ROLLING.match(text):
        month = parse(f"{m.group(1)}-{m.group(2)}")
        return Period(month.end, f"12m-to-{month.label}", 12)
    raise PeriodError(f"period {text!r} is not a month (2026-10), a quarter (2026-Q3) "
                      "or a rolling year (12m-to-2026-10)")


def span(first: str, last: str) -> list[Period]:
    """Every period from ``first`` to ``last`` inclusive, of the same kind."""
    a, b = parse(first), parse(last)
    if a.months != b.months:
        raise PeriodError(f"--from {first} and --to {last} are not the same kind of period")
    if b.end < a.end:
        raise PeriodError(f"--from {first} is after --to {last}")
    months = (b.end.year - a.end.year) * 12 + b.end.month - a.end.month
    if months // (3 if a.months == 3 else 1) >= MAX_PERIODS:
        raise PeriodError(f"--from {first} --to {last} is more than {MAX_PERIODS} periods; run it in parts")
    out, p = [], a
    while p.end <= b.end:
        out.append(p)
        step = 3 if p.months == 3 else 1  # rolling years move a month at a time
        nxt = shift_date(p.end.replace(day=1), step)
        label = {1: f"{nxt.year:04d}-{nxt.month:02d}", 3: f"{nxt.year:04d}-Q{(nxt.month - 1) // 3 + 1}",
                 12: f"12m-to-{nxt.year:04d}-{nxt.month:02d}"}[p.months]
        p = parse(label)
    return out
