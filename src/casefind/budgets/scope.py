"""Which activity records are in scope: numpy masks over the store's activity columns.

In scope: the budget's settings, its providers (all, or those included, less those
excluded), and a funding kind the file does not exclude. A store without the ``funding``
column reads as all ``activity`` (the contract's default); a null funding reads the same.

The columns are kept in the store's own dtypes (no 64-bit copies of 25M-row columns at 1M
patients), and ``within`` picks a date window's in-scope records once, so the steps that
read one year gather only its records.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from casefind.budgets.define import Services
from casefind.contract.schema import FUNDING_DEFAULT
from casefind.store import Store


@dataclass(frozen=True)
class Activity:
    """The activity columns a budget reads, as numpy (one entry per record, in the store's
    dtypes: patient index and start day int32 in a store, cost float64 with nulls as 0)."""

    patient: np.ndarray
    start: np.ndarray
    cost: np.ndarray
    in_scope: np.ndarray
    has_funding: bool
    _windows: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def within(self, first: int, last: int) -> np.ndarray:
        """The in-scope records (their indices) with a start day from ``first`` to ``last``;
        found once per window (the year's is read by tagging, actuals and shadow budgets)."""
        key = (int(first), int(last))
        if key not in self._windows:
            found = np.nonzero(self.in_scope & (self.start >= first) & (self.start <= last))[0]
            found.flags.writeable = False  # shared by every step that reads the window
            self._windows[key] = found
        return self._windows[key]


def _decoded(store: Store, column: str) -> tuple[np.ndarray, list]:
    """An encoded column's codes and the values they stand for (-1: null)."""
    table = store.table("activity")
    enc = table.encodings[column]
    codes = table[column]
    if enc["kind"] == "enum":
        return codes, list(enc["values"])
    return codes, list(store.dictionary(enc["dictionary"]))


def _allowed(codes: np.ndarray, values: list, keep) -> np.ndarray:
    """Records whose value ``keep(value)`` accepts; ``keep(None)`` decides the nulls. The
    null code, -1, indexes the lookup's last entry, ``keep(None)``: one gather, no copies."""
    table = np.array([keep(v) for v in values] + [keep(None)], bool)
    return table[codes]


def activity(store: Store, services: Services) -> Activity:
    table = store.table("activity")
    settings = set(services.settings)
    mask = _allowed(*_decoded(store, "setting"), lambda v: v in settings)
    include = set(services.include_providers) if services.include_providers is not None else None
    exclude = set(services.exclude_providers)
    if include is not None or exclude:
        mask &= _allowed(*_decoded(store, "provider_code"),
                         lambda v: (include is None or v in include) and v not in exclude)
    has_funding = "funding" in table.columns
    if has_funding:
        out = set(services.exclude_funding)
        mask &= _allowed(*_decoded(store, "funding"), lambda v: (v or FUNDING_DEFAULT) not in out)
    cost = table["cost"].astype(np.float64, copy=False)
    cost = np.where(np.isnan(cost), 0.0, cost)  # a null cost (NaN) as 0; ingest refuses ±inf
    return Activity(table["patient"], table["start_date"], cost, mask, has_funding)

