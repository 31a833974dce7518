"""The crisis curve: cost and emergency admissions from 12 months before to 12 months after
identification, for the cohort and for a matched comparison group.

The sources: cost "peaks in the year a high-risk patient is identified, then falls" - by
itself, partly, as regression to the mean, so a programme judged on its cohort's before and
after looks better than it is. A comparison group of people *not* identified, matched at the
same date on what identification saw, shows how much of the fall happens anyway.

- Identification: the first month-end of the window at which a person is in the rule's
  cohort (cohort.py), not having been in it at any of the ``washout`` month-ends before the
  window nor earlier in it. Month 0 is the calendar month ending on that date.
- Values: per calendar month, in-scope cost (activity paid by activity: funding
  ``activity`` or null, as the Year of Care budgets count it; a missing cost reads as 0)
  and emergency admissions (activity rows of setting ``emergency_admission``, as
  ``count(activity, setting == "emergency_admission")`` counts them). Means are over
  everyone in the group, including months after death or leaving (then 0), alike for both.
- Comparison pool at an identification date: alive and registered then, and never in the
  rule's cohort at any month-end evaluated (washout and window).
- Matching, for each identified person at their date: exact strata of 10-year age band (0-9 ... 90+),
  sex, admissions in the 12 months to that month-end (0, 1, 2, 3+), admissions in the
  identification month itself (0, 1, 2+: when the crisis came, which is what regresses)
  and cost band over the 12 months (0, under £1,000, £1,000-2,999, £3,000-9,999,
  £10,000+); within the stratum,
  the nearest in prior-12-month cost, **with replacement** (a person may be the match of
  several; at equal distance the lower cost, then the lower pseudonymised id). Someone whose stratum
  has no one in the pool is unmatched and counted; the curves of the matched cohort and the
  comparison are over matched pairs only. A rule that selects on the very utilisation it is
  matched on leaves few like-for-like people outside it: its unmatched count says so.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc

from casefind.contract.dates import NULL_DAY, to_day
from casefind.contract.schema import FUNDING_DEFAULT
from casefind.diagnose.cohort import Cohorts
from casefind.store import Store

SPAN = 12  # months shown before and after identification
AGE_BAND_YEARS = 10  # 0-9, 10-19, ... 90+
OFFSETS = np.arange(-SPAN, SPAN + 1)
ADMISSION_BANDS = 3          # 0, 1, 2, 3+
RECENT = 1                   # the identification month: its admissions are banded apart (the crisis's timing)
RECENT_BANDS = 2             # 0, 1, 2+
COST_EDGES = (0.005, 1000.0, 3000.0, 10000.0)  # 0 | <1k | 1k-3k | 3k-10k | 10k+
GROUPS = ("cohort", "matched_cohort", "comparison")


def month_of(days: np.ndarray | int) -> np.ndarray:
    """Months since January 1970 of day numbers."""
    return np.asarray(days, dtype="int64").astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def month_end(month: int) -> dt.date:
    first_next = np.datetime64(int(month) + 1, "M").astype("datetime64[D]").astype(object)
    return first_next - dt.timedelta(days=1)


@dataclass(frozen=True)
class Window:
    """The month-ends a crisis curve evaluates: ``washout`` of them, then ``window`` at which
    people may be identified, the last a full ``SPAN`` months before ``last_month_end``."""

    last_month_end: dt.date
    window: int = 6
    washout: int = 6

    @property
    def identification_months(self) -> np.ndarray:
        last = int(month_of(to_day(self.last_month_end))) - SPAN
        return np.arange(last - self.window + 1, last + 1)

    @property
    def months(self) -> np.ndarray:
        """Every month-end evaluated: the washout's, then the window's."""
        first = self.identification_months[0]
        return np.arange(first - self.washout, self.identification_months[-1] + 1)

    @property
    def dates(self) -> list[dt.date]:
        return [month_end(m) for m in self.months]


def last_month_end(as_of: dt.date) -> dt.date:
    """``as_of`` when it ends a month, else the end of the month before."""
    following = as_of + dt.timedelta(days=1)
    return as_of if following.day == 1 else as_of.replace(day=1) - dt.timedelta(days=1)


@dataclass(frozen=True)
class Monthly:
    """Per patient and calendar month from ``first`` (a month number): cost and admissions."""

    first: int
    cost: np.ndarray        # (n_patients, n_months) float64
    admissions: np.ndarray  # (n_patients, n_months) int32


def monthly(store: Store, first: int, last: int) -> Monthly:
    """In-scope cost and emergency admissions per patient per month, months ``first``..``last``."""
    a = store.table("activity")
    n_months = last - first + 1
    month = month_of(a["start_date"]) - first
    inside = (month >= 0) & (month < n_months)
    patient = a["patient"].astype(np.int64)
    cell = patient[inside] * n_months + month[inside]
    size = store.n_patients * n_months
    cost = np.nan_to_num(a["cost"][inside].astype(np.float64))
    cost = np.where(_in_scope(store)[inside], cost, 0.0)
    setting = a.encodings["setting"]["values"]
    emergency = a["setting"][inside] == setting.index("emergency_admission")
    return Monthly(first, np.bincount(cell, cost, size).reshape(store.n_patients, n_months),
                   np.bincount(cell[emergency], minlength=size).astype(np.int32).reshape(store.n_patients, n_months))


def _in_scope(store: Store) -> np.ndarray:
    a = store.table("activity")
    if "funding" not in a.columns:
        return np.ones(a.num_rows, bool)
    values = a.encodings["funding"]["values"]
    codes = a["funding"]
    return (codes < 0) | (codes == values.index(FUNDING_DEFAULT))


def identified(cohorts: Cohorts, w: Window) -> np.ndarray:
    """Per stored patient, the index into ``w.identification_months`` of their first month-end
    in the cohort (-1: not newly identified in the window)."""
    met = cohorts.masks  # rows in date order: the washout's month-ends, then the window's
    ever = np.logical_or.accumulate(met, axis=0)
    earlier = np.vstack([np.zeros((1, met.shape[1]), bool), ever[:-1]])
    first = met & ~earlier
    at = np.full(met.shape[1], -1, np.int64)
    rows, who = np.nonzero(first[w.washout:])
    at[who] = rows
    return at


@dataclass(frozen=True)
class Strata:
    """What matching reads at one identification month, per stored patient: the stratum,
    prior-12-month cost (to the penny, so that ties do not depend on summation order) and
    a tie-break (the rank of the pseudonymised id)."""

    key: np.ndarray
    prior_cost: np.ndarray
    tiebreak: np.ndarray


def id_ranks(store: Store) -> np.ndarray:
    """Each stored patient's rank by pseudonymised id: the last tie-break of matching."""
    ids = store.table("patients").arrow.column("patient_id")
    return pc.rank(ids, sort_keys="ascending", tiebreaker="first").to_numpy().astype(np.int64)


def strata(store: Store, values: Monthly, month: int, tiebreak: np.ndarray) -> Strata:
    """Age band, sex, admission bands over the 12 months to the end of ``month`` and in
    ``month`` itself, and the cost band over the 12 months."""
    p = store.table("patients")
    cols = slice(month - SPAN + 1 - values.first, month + 1 - values.first)
    prior_cost = np.round(values.cost[:, cols].sum(1), 2)
    prior_adm = values.admissions[:, cols].sum(1)
    recent_adm = values.admissions[:, month - RECENT + 1 - values.first:month + 1 - values.first].sum(1)
    age = (month - month_of(p["birth_date"])) // 12
    age_band = np.clip(age // AGE_BAND_YEARS, 0, 90 // AGE_BAND_YEARS)
    sex = p["sex"].astype(np.int64) + 1
    key = (((age_band * 4 + sex) * (ADMISSION_BANDS + 1) + np.minimum(prior_adm, ADMISSION_BANDS))
           * (RECENT_BANDS + 1) + np.minimum(recent_adm, RECENT_BANDS))
    key = key * (len(COST_EDGES) + 1) + np.digitize(prior_cost, COST_EDGES)
    return Strata(key.astype(np.int64), prior_cost, tiebreak)


def nearest(s: Strata, cases: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """For each case (store index), the pool member in its stratum nearest in prior cost,
    with replacement; at equal distance the lower cost, then the lower tie-break; -1 where
    the stratum has no one in the pool."""
    if not len(cases) or not len(pool):
        return np.full(len(cases), -1, np.int64)
    order = np.lexsort((s.tiebreak[pool], s.prior_cost[pool], s.key[pool]))
    sorted_pool, keys, costs = pool[order], s.key[pool][order], s.prior_cost[pool][order]
    k, c = s.key[cases], s.prior_cost[cases]
    lo, hi = np.searchsorted(keys, k, "left"), np.searchsorted(keys, k, "right")
    found = hi > lo
    last = np.minimum(np.maximum(hi - 1, lo), len(pool) - 1)  # in range even where nothing is found
    # within the stratum: the first at or above the case's cost, and the first of the run of
    # equal costs just below it
    pos = lo + _count_below(costs, lo, hi, c)
    above = np.minimum(pos, last)
    below = np.minimum(np.maximum(pos - 1, lo), last)
    below = np.minimum(lo + _count_below(costs, lo, hi, costs[below]), last)
    pick = np.where(np.abs(costs[above] - c) < np.abs(costs[below] - c), above, below)
    return np.where(found, sorted_pool[pick], -1)


def _count_below(costs: np.ndarray, lo: np.ndarray, hi: np.ndarray, c: np.ndarray) -> np.ndarray:
    """How many of ``costs[lo:hi]`` (sorted within each range) are below ``c``, per case. A
    range is its (lo, hi) pair: an empty one (a stratum nobody in the pool is in) may start
    where another begins."""
    out = np.zeros(len(lo), np.int64)
    for start, end in np.unique(np.stack([lo, hi], 1), axis=0):
        mine = (lo == start) & (hi == end)
        out[mine] = np.searchsorted(costs[start:end], c[mine], "left")
    return out


@dataclass(frozen=True)
class Curve:
    """One rule's crisis curve: per group, people and mean monthly cost and admissions at
    each month from -12 to +12; ``summary`` per group: before, month 0 and after."""

    rule: str
    window: Window
    identified: int
    matched: int
    rows: list[dict]
    summary: dict[str, dict]
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] = field(repr=False, compare=False, default=())
    """(case, its match or -1, identification month) per identified person, store indices."""

    @property
    def unmatched(self) -> int:
        return self.identified - self.matched


def curve(store: Store, cohorts: Cohorts, w: Window, values: Monthly) -> Curve:
    """The cohort's, the matched cohort's and the comparison's curves (see the module doc)."""
    at = identified(cohorts, w)
    never = ~cohorts.masks.any(0)
    p = store.table("patients")
    ranks = id_ranks(store)
    cases, controls, months = [], [], []
    for i, month in enumerate(w.identification_months):
        who = np.flatnonzero(at == i)
        day = to_day(month_end(month))
        alive = (p["death_date"] == NULL_DAY) | (p["death_date"] > day)
        here = (p["registration_start"] <= day) & ((p["registration_end"] == NULL_DAY) | (p["registration_end"] >= day))
        pool = np.flatnonzero(never & alive & here)
        cases.append(who)
        controls.append(nearest(strata(store, values, int(month), ranks), who, pool))
        months.append(np.full(len(who), month, np.int64))
    case, control, month = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (cases, controls, months))
    ok = control >= 0
    groups = {"cohort": (case, month), "matched_cohort": (case[ok], month[ok]),
              "comparison": (control[ok], month[ok])}
    rows, summary = [], {}
    for name, (who, m) in groups.items():
        cost, adm = _around(values.cost, who, m, values.first), _around(values.admissions, who, m, values.first)
        rows += [{"rule": cohorts.rule.name, "group": name, "month": int(k), "people": len(who),
                  "mean_cost": _mean(cost[:, j]), "mean_admissions": _mean(adm[:, j])}
                 for j, k in enumerate(OFFSETS)]
        summary[name] = _summary(cost, adm, len(who))
    return Curve(cohorts.rule.name, w, len(case), int(ok.sum()), rows, summary, (case, control, month))


def _around(matrix: np.ndarray, who: np.ndarray, month: np.ndarray, first: int) -> np.ndarray:
    cols = (month - first)[:, None] + OFFSETS[None, :]
    return matrix[who[:, None], cols].astype(np.float64) if len(who) else np.zeros((0, len(OFFSETS)))


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def _summary(cost: np.ndarray, adm: np.ndarray, n: int) -> dict:
    """Mean a person a month over months -12..-1 (before), 0, and 1..12 (after)."""
    before, after = slice(0, SPAN), slice(SPAN + 1, None)
    out = {"people": n}
    for label, x in (("cost", cost), ("admissions", adm)):
        out[f"{label}_before"] = float(x[:, before].mean()) if n else None
        out[f"{label}_month0"] = float(x[:, SPAN].mean()) if n else None
        out[f"{label}_after"] = float(x[:, after].mean()) if n else None
    return out
