"""Turnover of a rule's cohort between an earlier date and now: joined, stayed, left, and why.

The earlier cohort is either the people a registered run listed (``--against RUN``: the
list the practices saw, so after that run's caps) or the rule's cohort a year earlier,
evaluated on today's store. Each leaver gets one reason, the first that applies:
``died`` (a death date on or before now), ``moved`` (registration ended, not registered
yet, no longer in the store, or - against a run - listed for another practice than the one
the patient is registered with now) and ``no_longer_qualifies`` (still here, no longer
selected). The store keeps each patient's current practice only, so a change of practice
is seen against a run's listing, not against a year earlier.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind.contract.dates import NULL_DAY, to_day
from casefind.store import Store
from casefind.store.listings import Listing

REASONS = ("died", "moved", "no_longer_qualifies")


@dataclass(frozen=True)
class Turnover:
    """Counts between ``earlier`` (a date) and ``now``; ``against`` names the run, if any."""

    rule: str
    earlier: dt.date
    now: dt.date
    against: str | None
    earlier_size: int
    now_size: int
    joined: int
    stayed: int
    left: dict[str, int]

    @property
    def left_total(self) -> int:
        return sum(self.left.values())

    @property
    def turnover(self) -> float | None:
        """Share of the earlier cohort no longer in it (None for an empty earlier cohort)."""
        return self.left_total / self.earlier_size if self.earlier_size else None

    def row(self) -> dict:
        return {"rule": self.rule, "earlier": self.earlier, "now": self.now, "against": self.against,
                "earlier_size": self.earlier_size, "now_size": self.now_size, "joined": self.joined,
                "stayed": self.stayed, "left": self.left_total, **{f"left_{k}": v for k, v in self.left.items()},
                "turnover": self.turnover}


def gone(store: Store, now: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """Per stored patient: dead by ``now``; not registered on ``now`` (ended or not yet started)."""
    p = store.table("patients")
    day = to_day(now)
    death, end = p["death_date"], p["registration_end"]
    died = (death != NULL_DAY) & (death <= day)
    moved = ((end != NULL_DAY) & (end < day)) | (p["registration_start"] > day)
    return died, moved


def between(store: Store, rule: str, earlier: np.ndarray, now_mask: np.ndarray, earlier_date: dt.date,
            now: dt.date, *, moved_practice: np.ndarray | None = None, not_in_store: int = 0,
            against: str | None = None) -> Turnover:
    """Turnover from the cohort ``earlier`` (bool per stored patient) to ``now_mask``.
    ``moved_practice`` marks patients listed for another practice; ``not_in_store`` counts
    earlier members the store no longer holds (they left: moved)."""
    died, moved = gone(store, now)
    if moved_practice is not None:
        moved = moved | moved_practice
    left = earlier & ~now_mask
    left_died = left & died
    left_moved = left & ~died & moved
    reasons = {"died": int(left_died.sum()), "moved": int(left_moved.sum()) + not_in_store,
               "no_longer_qualifies": int((left & ~died & ~moved).sum())}
    return Turnover(rule, earlier_date, now, against, int(earlier.sum()) + not_in_store, int(now_mask.sum()),
                    int((now_mask & ~earlier).sum()), int((now_mask & earlier).sum()), reasons)


def from_listing(store: Store, listing: Listing) -> tuple[np.ndarray, np.ndarray, int]:
    """The run's listed patients as a mask over the stored patients, a mask of those listed
    for another practice than their current one, and how many the store no longer holds."""
    ids = store.table("patients").arrow.column("patient_id").cast(pa.string())
    listed_ids = listing.listed.column("patient_id").cast(pa.string())
    index = pc.index_in(listed_ids, value_set=ids).fill_null(-1).to_numpy(zero_copy_only=False)
    here = index >= 0
    mask = np.zeros(store.n_patients, bool)
    mask[index[here]] = True
    codes = np.asarray(store.table("practices").arrow.column("practice_code").cast(pa.string()).to_pylist(), object)
    current = codes[store.table("patients")["practice"].astype(np.int64)[index[here]]]
    listed_for = np.asarray(listing.listed.column("practice").cast(pa.string()).to_pylist(), object)[here]
    other = np.zeros(store.n_patients, bool)
    other[index[here][current != listed_for]] = True
    return mask, other, int((~here).sum())
