"""Reporting periods: exact calendar months, quarters and rolling years, and ranges."""
import datetime as dt
import itertools

import pytest

from casefind.kpis.periods import PeriodError, parse, span


@pytest.mark.parametrize("text, start, end, days", [
    ("2026-02", "2026-02-01", "2026-02-28", 28),
    ("2024-02", "2024-02-01", "2024-02-29", 29),
    ("2026-04", "2026-04-01", "2026-04-30", 30),   # one month back from 30 April is not 30 March
    ("2026-12", "2026-12-01", "2026-12-31", 31),
    ("2026-Q1", "2026-01-01", "2026-03-31", 90),
    ("2026-Q4", "2026-10-01", "2026-12-31", 92),
    ("12m-to-2026-10", "2025-11-01", "2026-10-31", 365),
    ("12m-to-2024-02", "2023-03-01", "2024-02-29", 366),
])
def test_periods_are_exact_calendar_spans(text, start, end, days):
    p = parse(text)
    assert (p.start, p.end, p.days) == (dt.date.fromisoformat(start), dt.date.fromisoformat(end), days)


def test_consecutive_months_tile_the_year_without_gaps_or_overlaps():
    months = span("2025-11", "2026-10")
    assert len(months) == 12
    for a, b in itertools.pairwise(months):
        assert b.start == a.end + dt.timedelta(days=1)
    assert sum(p.days for p in months) == 365


@pytest.mark.parametrize("bad", ["2026-13", "2026-Q5", "Oct 2026", "2026-10-31"])
def test_bad_periods_are_refused(bad):
    with pytest.raises(PeriodError):
        parse(bad)


def test_ranges_must_be_one_kind_and_in_order():
    with pytest.raises(PeriodError):
        span("2026-01", "2026-Q3")
    with pytest.raises(PeriodError):
        span("2026-10", "2026-01")
