"""A budget year in one pass: tariffs, the register, the capitated budget month by month,
budget against actual, the tagged activity, joiners and leavers, and shadow budgets.

Each person's budget in a month is their rate (the category's tariff, plus the incentive
when earned) x the profile's weight for the month x the share of the month's days they
were in the cohort. The flat profile weighs each month by its days over the year's (365 or
366), so a year's budget is the rate x days in the cohort / days in the year; the baseline
profile weighs months by the baseline year's monthly in-scope cost. Actual is the
in-scope spend of cohort members on the days they were in it (by the record's start date);
those records are the tagged activity, so tagged cost sums to the actual. Practice sums
roll up to localities and the system, so every level adds up exactly.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from casefind.budgets import features, register, scope, tariffs
from casefind.budgets.define import BudgetSpec
from casefind.budgets.features import NO_DATE, day
from casefind.budgets.years import FinancialYear
from casefind.kpis.compute import Hierarchy
from casefind.store import Store
from casefind.store.coverage import Coverage, CoverageError, check_span


@dataclass
class Computed:
    """Everything a budget run found, as numpy; outputs.py turns it into the folder."""

    spec: BudgetSpec
    year: FinancialYear
    complete: int                 # months of the year the data covers
    as_of: dt.date                # the last day the data covers (within the year)
    tariffs: tariffs.Tariffs
    register: register.Register
    stint_rate: np.ndarray        # £ a year
    stint_budget: np.ndarray      # £ in the year
    month_budget: np.ndarray      # register patients x 12
    weights: np.ndarray           # the profile, 12 weights summing to 1
    hierarchy: Hierarchy
    tagged: np.ndarray            # record indices inside the capitation
    tagged_row: np.ndarray        # their register row
    tagged_month: np.ndarray
    activity: scope.Activity
    shadow_rate: float            # whole-population £ per person a year
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def complete_months(cov: Coverage, year: FinancialYear) -> int:
    """How many of the year's months end on or before the data's last day."""
    return sum(1 for e in year.month_ends() if cov.last is not None and e <= cov.last)


def check_year(store: Store, spec: BudgetSpec, year: FinancialYear, allow_partial: bool) -> tuple[int, list[str]]:
    cov = Coverage.of(store.manifest)
    start = year.start - dt.timedelta(days=1)
    if cov.last is None or cov.first is None or not cov.first <= start <= cov.last:
        raise CoverageError(f"the year {year} starts outside the store's data, which covers {cov}",
                            "the cohort at the start of the year needs data up to 31 March before it", option="--year")
    warnings = []
    base = baseline_year(spec, year)
    if spec.computed or spec.profile == "baseline":
        w = check_span(cov, base.start, base.end, what=f"baseline year {base}", option="--year",
                       allow_partial=allow_partial)
        warnings += [w] if w else []
    return complete_months(cov, year), warnings


def baseline_year(spec: BudgetSpec, year: FinancialYear) -> FinancialYear:
    return spec.baseline_year or year.previous()


def run(store: Store, spec: BudgetSpec, year: FinancialYear, engine: str = "native", allow_partial: bool = False,
        say=lambda s: None) -> Computed:
    complete, warnings = check_year(store, spec, year, allow_partial)
    base = baseline_year(spec, year)
    dates = sorted({year.start - dt.timedelta(days=1), base.end, *year.month_ends()[:complete]})
    say(f"evaluating the cohort and categories at {len(dates)} dates ({engine} engine, one pass)")
    values = features.evaluate(store, spec, dates, engine)
    act = scope.activity(store, spec.services)
    say("setting tariffs from the baseline year")
    base_people, base_cost = _baseline(store, values, act, base)
    tar = tariffs.compute(spec, values.category[base_people, values.at(base.end)], base_cost[base_people])
    weights = _profile(spec, year, act, base, base_people)
    say("building the cohort register")
    reg = register.build(store, values, year, complete)
    rate = tar.tariff[reg.category] + tar.incentive[reg.category] * reg.incentive
    month_days = np.array([(e - s).days + 1 for s, e in zip(year.month_starts(), year.month_ends())])
    month_budget = np.zeros((len(reg.patients), 12))
    for m in range(12):
        s = reg.stint_of[:, m]
        has = s >= 0
        month_budget[has, m] = rate[s[has]] * weights[m] * reg.days[has, m] / month_days[m]
    stint_budget = np.zeros(reg.n_stints)
    covered = reg.stint_of >= 0
    np.add.at(stint_budget, reg.stint_of[covered], month_budget[covered])
    say("tagging the activity inside the capitation")
    tagged, row, month = _tag(store, reg, act, year)
    as_of = min(Coverage.of(store.manifest).last, year.end)
    return Computed(spec, year, complete, as_of, tar, reg, rate, stint_budget, month_budget, weights,
                    Hierarchy.of(store), tagged, row, month, act, _shadow_rate(store, base_cost, base, spec),
                    _notes(spec, act, complete, year), warnings)


def _registered_through(store: Store, year: FinancialYear) -> np.ndarray:
    pt = store.table("patients")
    start, end, death = (pt[c].astype(np.int64) for c in ("registration_start", "registration_end", "death_date"))
    s, e = day(year.start), day(year.end)
    return (start <= s) & ((end == NO_DATE) | (end >= e)) & ((death == NO_DATE) | (death > e))


def _baseline(store: Store, values: features.Values, act: scope.Activity, base: FinancialYear):
    """The baseline people (store indices) and everyone's in-scope cost in the baseline year."""
    at_end = values.at(base.end)
    people = np.nonzero((values.cohort[:, at_end] | values.accepted[:, at_end]) & _registered_through(store, base))[0]
    return people, _cost_in(store, act, base)


def _cost_in(store: Store, act: scope.Activity, year: FinancialYear) -> np.ndarray:
    inside = act.within(day(year.start), day(year.end))
    return np.bincount(act.patient[inside], weights=act.cost[inside], minlength=store.n_patients)


def _profile(spec: BudgetSpec, year: FinancialYear, act: scope.Activity, base: FinancialYear,
             people: np.ndarray) -> np.ndarray:
    """The 12 monthly weights: by days (flat), or the baseline people's monthly cost shares."""
    days = np.array([(e - s).days + 1 for s, e in zip(year.month_starts(), year.month_ends())], np.float64)
    if spec.profile == "flat":
        return days / days.sum()
    starts = np.array([day(d) for d in base.month_starts()] + [day(base.end) + 1])
    inside = act.within(starts[0], starts[-1] - 1)
    member = np.zeros(int(act.patient[inside].max(initial=-1)) + 1, bool)
    member[people[people < len(member)]] = True
    inside = inside[member[act.patient[inside]]]
    month = np.searchsorted(starts, act.start[inside], side="right") - 1
    cost = np.bincount(month, weights=act.cost[inside], minlength=12)[:12]
    return cost / cost.sum() if cost.sum() > 0 else days / days.sum()


def _tag(store: Store, reg: register.Register, act: scope.Activity, year: FinancialYear):
    """The in-scope records of cohort members dated on a day they were in the cohort."""
    row_of = np.full(store.n_patients, -1, np.int64)
    row_of[reg.patients] = np.arange(len(reg.patients))
    starts = np.array([day(d) for d in year.month_starts()] + [day(year.end) + 1])
    cand = act.within(starts[0], starts[-1] - 1)
    rows = row_of[act.patient[cand]]
    cand, r = cand[rows >= 0], rows[rows >= 0]
    m = np.searchsorted(starts, act.start[cand], side="right") - 1
    d = act.start[cand]
    inside = (d >= reg.first_day[r, m]) & (d <= reg.last_day[r, m])
    return cand[inside], r[inside], m[inside]


def _shadow_rate(store: Store, base_cost: np.ndarray, base: FinancialYear, spec: BudgetSpec) -> float:
    """The whole population's £ per person a year: the baseline in-scope cost of everyone
    registered throughout the baseline year, trimmed and uplifted as the cohort's tariffs."""
    people = np.nonzero(_registered_through(store, base))[0]
    _, _, mean = tariffs.trimmed(base_cost[people], spec.trim)
    return float(mean * (1 + spec.uplift)) if np.isfinite(mean) else 0.0


def _notes(spec: BudgetSpec, act: scope.Activity, complete: int, year: FinancialYear) -> list[str]:
    notes = []
    if not act.has_funding:
        notes.append("the store has no funding column: every record reads as activity-funded, so nothing was "
                     "left out as block, national, out-of-area or high-cost low-volume")
    if complete < 12:
        notes.append(f"the data covers {complete} of the year's 12 months: the later months' budget assumes the "
                     f"cohort at the end of the last complete month, and their actual is not yet known")
    return notes


def registered_days(store: Store, year: FinancialYear) -> tuple[np.ndarray, np.ndarray]:
    """Every patient's days registered and alive in the year, and whether any."""
    pt = store.table("patients")
    start, end, death = (pt[c].astype(np.int64) for c in ("registration_start", "registration_end", "death_date"))
    lo = np.maximum(start, day(year.start))
    hi = np.minimum(np.where(end == NO_DATE, day(year.end), end), np.where(death == NO_DATE, day(year.end), death))
    hi = np.minimum(hi, day(year.end))
    days = np.maximum(hi - lo + 1, 0)
    return days, days > 0
