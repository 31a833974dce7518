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

A store gives its ``part`` (per-patient values and its population's sums, budgets/parts.py),
and ``combine`` merges the parts and computes the year once. One store is one part; a
sharded store's shards give one each (budgets/sharded.py), so both take the same path.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from casefind.budgets import features, parts, register, scope, tariffs
from casefind.budgets.define import BudgetSpec
from casefind.budgets.features import NO_DATE, day
from casefind.budgets.years import FinancialYear
from casefind.contract.schema import FUNDING_DEFAULT
from casefind.kpis.compute import Hierarchy
from casefind.store import Store
from casefind.store.coverage import Coverage, CoverageError, check_span


@dataclass
class Computed:
    """Everything a budget run found, as numpy; outputs.py turns it into the folder. Per
    register patient: ``register`` rows, ``practice`` and ``patient_id`` (``hierarchy``'s
    practice_of_patient is ``practice``); per tagged record: ``tagged``."""

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
    practice: np.ndarray
    patient_id: pa.Array
    tagged: parts.Tagged          # the in-scope records inside the capitation
    leaver_cost: np.ndarray       # per stint: in-scope cost in the 365 days up to leaving
    population: parts.Population  # per practice, over everyone (shadow budgets)
    shadow_rate: float            # whole-population £ per person a year
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def tagged_row(self) -> np.ndarray:
        return self.tagged.row

    @property
    def tagged_month(self) -> np.ndarray:
        return self.tagged.month


def complete_months(cov: Coverage, year: FinancialYear) -> int:
    """How many of the year's months end on or before the data's last day."""
    return sum(1 for e in year.month_ends() if cov.last is not None and e <= cov.last)


def check_year(cov: Coverage, spec: BudgetSpec, year: FinancialYear, allow_partial: bool) -> tuple[int, list[str]]:
    """The months of the year the data covers, and warnings; refuses a year the data
    (one store's or a sharded store's whole span) does not reach."""
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


def evaluation_dates(spec: BudgetSpec, year: FinancialYear, complete: int) -> list[dt.date]:
    """The day before the year, the baseline year's end and each complete month's end."""
    return sorted({year.start - dt.timedelta(days=1), baseline_year(spec, year).end, *year.month_ends()[:complete]})


def run(store: Store, spec: BudgetSpec, year: FinancialYear, engine: str = "native", allow_partial: bool = False,
        say=lambda s: None) -> Computed:
    """A budget year over one store: its one part, merged as a sharded store's are
    (budgets/parts.py), so both give the same numbers."""
    cov = Coverage.of(store.manifest)
    complete, warnings = check_year(cov, spec, year, allow_partial)
    say(f"evaluating the cohort and categories at {len(evaluation_dates(spec, year, complete))} dates "
        f"({engine} engine, one pass)")
    one = part(store, spec, year, complete, engine, say)
    return combine([one], spec, year, complete, min(cov.last, year.end), warnings, say)


def part(store: Store, spec: BudgetSpec, year: FinancialYear, complete: int, engine: str = "native",
         say=lambda s: None) -> parts.Part:
    """What one store (or shard) gives a budget year: every per-patient value and the
    population's sums (budgets/parts.py); nothing here depends on another store's patients."""
    base = baseline_year(spec, year)
    values = features.evaluate(store, spec, evaluation_dates(spec, year, complete), engine)
    act = scope.activity(store, spec.services)
    base_people, base_cost = _baseline(store, values, act, base)
    h = Hierarchy.of(store)
    say("building the cohort register")
    reg = register.build(store, values, year, complete)
    say("tagging the activity inside the capitation")
    rec, row, month = _tag(store, reg, act, year)
    people = parts.People(h.practice_of_patient[base_people], _ids(store, base_people),
                          values.category[base_people, values.at(base.end)], base_cost[base_people])
    return parts.Part(
        base=people, pool=base_cost[_registered_through(store, base)],
        profile=_profile_sums(spec, act, base, base_people), register=reg,
        practice=h.practice_of_patient[reg.patients], patient_id=_ids(store, reg.patients),
        first_record=store.table("activity").offsets[reg.patients].astype(np.int64),
        tagged=_tagged(store, act, rec, row, month), leaver_cost=_cost_before_leaving(reg, act),
        population=_population(store, act, year, complete, h), has_funding=act.has_funding,
        hierarchy=dataclasses.replace(h, practice_of_patient=np.zeros(0, np.int64)))


def combine(pieces: list[parts.Part], spec: BudgetSpec, year: FinancialYear, complete: int, as_of: dt.date,
            warnings: list[str], say=lambda s: None) -> Computed:
    """The year from its parts: merged in one store's order (budgets/parts.py), then the
    tariffs, profile, rates and month-by-month budgets, once, over everyone."""
    p = parts.merge(pieces)
    say("setting tariffs from the baseline year")
    tar = tariffs.compute(spec, p.base.category, p.base.cost)
    weights = _profile(spec, year, p.profile)
    reg = p.register
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
    return Computed(spec, year, complete, as_of, tar, reg, rate, stint_budget, month_budget, weights, p.hierarchy,
                    p.practice, p.patient_id, p.tagged, p.leaver_cost, p.population, _shadow_rate(p.pool, spec),
                    _notes(p.has_funding, complete), warnings)


def _ids(store: Store, rows: np.ndarray) -> pa.Array:
    """The ids of ``rows`` as strings; only the rows asked for are cast."""
    ids = store.table("patients").arrow.column("patient_id")
    return ids.take(pa.array(np.asarray(rows, np.int64))).combine_chunks().cast(pa.string())


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


def _profile_sums(spec: BudgetSpec, act: scope.Activity, base: FinancialYear, people: np.ndarray) -> np.ndarray:
    """The baseline people's in-scope cost in each baseline month, compensated (hi, lo rows)
    so that shards' sums add up to one store's bits; zeros for a flat profile."""
    if spec.profile == "flat":
        return np.zeros((2, 12))
    starts = np.array([day(d) for d in base.month_starts()] + [day(base.end) + 1])
    inside = act.within(starts[0], starts[-1] - 1)
    member = np.zeros(int(act.patient[inside].max(initial=-1)) + 1, bool)
    member[people[people < len(member)]] = True
    inside = inside[member[act.patient[inside]]]
    month = np.searchsorted(starts, act.start[inside], side="right") - 1
    return parts.compensated_sums(month, act.cost[inside], 12)


def _profile(spec: BudgetSpec, year: FinancialYear, sums: np.ndarray) -> np.ndarray:
    """The 12 monthly weights: by days (flat), or the baseline people's monthly cost shares."""
    days = np.array([(e - s).days + 1 for s, e in zip(year.month_starts(), year.month_ends())], np.float64)
    if spec.profile == "flat":
        return days / days.sum()
    cost = sums[0] + sums[1]
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


def _shadow_rate(pool: np.ndarray, spec: BudgetSpec) -> float:
    """The whole population's £ per person a year: the baseline in-scope cost of everyone
    registered throughout the baseline year (``pool``, in any order: the trimmed mean does
    not depend on it), trimmed and uplifted as the cohort's tariffs."""
    _, _, mean = tariffs.trimmed(pool, spec.trim)
    return float(mean * (1 + spec.uplift)) if np.isfinite(mean) else 0.0


def _notes(has_funding: bool, complete: int) -> list[str]:
    notes = []
    if not has_funding:
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


def _population(store: Store, act: scope.Activity, year: FinancialYear, complete: int,
                h: Hierarchy) -> parts.Population:
    """Per practice, over the store's whole population: people registered and alive on a
    day of the year, their days so, and their in-scope spend while so in the complete
    months (the shadow budgets' whole-population side)."""
    n_p = len(h.codes["practice"])
    days, any_days = registered_days(store, year)
    people = np.bincount(h.practice_of_patient, weights=any_days, minlength=n_p).astype(np.int64)
    total_days = np.bincount(h.practice_of_patient, weights=days, minlength=n_p).astype(np.int64)  # exact below 2**53
    pt = store.table("patients")
    last = day(year.month_ends()[complete - 1]) if complete else day(year.start) - 1
    rec = act.within(day(year.start), last)
    patient, on = act.patient[rec], act.start[rec]
    end, death = (pt[x].astype(np.int64) for x in ("registration_end", "death_date"))
    until = np.minimum(np.where(end == NO_DATE, last, end), np.where(death == NO_DATE, last, death))
    ok = (on >= pt["registration_start"][patient]) & (on <= until[patient])  # registered and alive that day
    actual = parts.compensated_sums(h.practice_of_patient[patient[ok]], act.cost[rec[ok]], n_p)
    return parts.Population(people, total_days, actual)


def _cost_before_leaving(reg: register.Register, act: scope.Activity) -> np.ndarray:
    """Each leaving stint's in-scope cost in the 365 days up to its leaving day (each one's
    own records, in their order: the same on a shard as in one store)."""
    out = np.zeros(reg.n_stints)
    leaving = np.nonzero(reg.left != NO_DATE)[0]
    if not len(leaving):
        return out
    patient = reg.patients[reg.stint_patient[leaving]]
    order = np.argsort(patient, kind="stable")
    patient, leaving = patient[order], leaving[order]
    rank = np.arange(len(patient)) - np.searchsorted(patient, patient)  # a patient's 1st, 2nd... leaving
    left_days = reg.left[leaving]
    rec = act.within(int(left_days.min()) - 364, int(left_days.max()))  # the records any leaver's window holds
    rec_patient = act.patient[rec]
    for k in range(int(rank.max()) + 1):
        sel = leaving[rank == k]
        stint_of = np.full(max(int(rec_patient.max(initial=-1)), int(reg.patients.max())) + 1, -1, np.int64)
        stint_of[reg.patients[reg.stint_patient[sel]]] = sel
        s = stint_of[rec_patient]
        has = np.nonzero(s >= 0)[0]
        left, on = reg.left[s[has]], act.start[rec[has]]
        inside = (on <= left) & (on > left - 365)
        out += np.bincount(s[has][inside], weights=act.cost[rec[has][inside]], minlength=len(out))
    return out


def _tagged(store: Store, act: scope.Activity, rec: np.ndarray, row: np.ndarray, month: np.ndarray) -> parts.Tagged:
    """The tagged records' columns, copied out of the store (codes with the values they
    index, the spell as the source's id), so a shard's part holds no view of its files."""
    table = store.table("activity")
    enc = table.encodings
    values = {"setting": list(enc["setting"]["values"]),
              "provider": list(store.dictionary(enc["provider_code"]["dictionary"]))}
    funding = None
    if "funding" in table.columns:
        values["funding"] = list(enc["funding"]["values"])
        codes = table["funding"][rec].astype(np.int64)
        funding = np.where(codes < 0, values["funding"].index(FUNDING_DEFAULT), codes)
    return parts.Tagged(
        row=row.astype(np.int64), month=month.astype(np.int64), record=rec.astype(np.int64),
        start=act.start[rec].astype(np.int64), cost=act.cost[rec], setting=table["setting"][rec].astype(np.int64),
        provider=table["provider_code"][rec].astype(np.int64), funding=funding,
        spell=_spells(store, table["spell_id"][rec]), values=values)


def _spells(store: Store, numbers: np.ndarray) -> pa.Array:
    """Spell numbers (0: none) as the source's spell ids: a shard numbers its own spells."""
    if "spell" not in store.manifest["dictionaries"]:
        return pa.nulls(len(numbers), pa.string())
    names = [str(x) if x is not None else "" for x in store.dictionary("spell")]
    codes = np.where(numbers > 0, numbers, -1)
    indices = pa.array(np.maximum(codes, 0).astype(np.int32), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(indices, pa.array(names, pa.string())).dictionary_decode()
