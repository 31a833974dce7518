"""UK financial years ("2026-27" is 1 April 2026 to 31 March 2027) and their months."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from casefind.errors import UsageError

_YEAR = re.compile(r"^(\d{4})-(\d{2})$")
FIRST_YEAR, LAST_YEAR = 1900, 2098


class YearError(UsageError, ValueError):
    """A financial year that cannot be read."""


@dataclass(frozen=True, order=True)
class FinancialYear:
    """The twelve months from 1 April of ``first`` to 31 March of the next year."""

    first: int

    @property
    def label(self) -> str:
        return f"{self.first}-{(self.first + 1) % 100:02d}"

    @property
    def start(self) -> dt.date:
        return dt.date(self.first, 4, 1)

    @property
    def end(self) -> dt.date:
        return dt.date(self.first + 1, 3, 31)

    @property
    def days(self) -> int:
        """365, or 366 when the year holds a 29 February (a leap year divides by 366)."""
        return (self.end - self.start).days + 1

    def month_starts(self) -> list[dt.date]:
        return [dt.date(self.first + (m // 12), m % 12 + 1, 1) for m in range(3, 15)]

    def month_ends(self) -> list[dt.date]:
        starts = self.month_starts()
        return [s - dt.timedelta(days=1) for s in starts[1:]] + [self.end]

    def month_labels(self) -> list[str]:
        return [f"{d.year:04d}-{d.month:02d}" for d in self.month_starts()]

    def previous(self) -> FinancialYear:
        return FinancialYear(self.first - 1)

    def __str__(self) -> str:
        return self.label


def parse_year(text: str, option: str | None = "--year") -> FinancialYear:
    """``2026-27`` as a financial year; the second part must be the next year's last two digits."""
    m = _YEAR.match(str(text).strip())
    if not m:
        raise YearError(f"{text!r} is not a financial year", "write it as 2026-27 (April 2026 to March 2027)",
                        option=option)
    first = int(m.group(1))
    if not FIRST_YEAR <= first <= LAST_YEAR:
        raise YearError(f"{text!r}: the year must be between {FIRST_YEAR} and {LAST_YEAR}", option=option)
    if int(m.group(2)) != (first + 1) % 100:
        raise YearError(f"{text!r}: a financial year runs into the next year",
                        f"write {first}-{(first + 1) % 100:02d}", option=option)
    return FinancialYear(first)
