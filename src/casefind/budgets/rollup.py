"""The run's tables: budget against actual per practice, locality and system, category and
month; joiners and leavers; shadow budgets. Sums are made per practice and rolled up, so
practices add up to their localities and localities to the system exactly."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from casefind.budgets.compute import Computed, registered_days
from casefind.budgets.features import NO_DATE, day
from casefind.budgets.register import LEAVE_REASONS
from casefind.store import Store

LEVELS = ("practice", "locality", "system")
ALL = "all"


def _levels(c: Computed, practice_sums: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Practice sums (first axis: practice) and their roll-up to localities and the system."""
    h = c.hierarchy
    loc = np.zeros((len(h.codes["locality"]),) + practice_sums.shape[1:])
    np.add.at(loc, h.locality_of_practice, practice_sums)
    system = np.zeros((len(h.codes["system"]),) + practice_sums.shape[1:])
    np.add.at(system, h.system_of_locality, loc)
    return [("practice", practice_sums), ("locality", loc), ("system", system)]


def month_category(c: Computed) -> np.ndarray:
    """Each register patient's category in each month (-1: not in the cohort that month)."""
    reg = c.register
    return np.where(reg.stint_of >= 0, reg.category[np.maximum(reg.stint_of, 0)], -1)


def _practice_cube(c: Computed, practice: np.ndarray, cat: np.ndarray, month: np.ndarray, weights) -> np.ndarray:
    """Sums per practice x category (+ all) x month."""
    n_p, k = len(c.hierarchy.codes["practice"]), len(c.tariffs.category)
    flat = (practice * k + cat) * 12 + month
    cube = np.bincount(flat, weights=weights, minlength=n_p * k * 12).astype(np.float64).reshape(n_p, k, 12)
    return np.concatenate([cube, cube.sum(axis=1, keepdims=True)], axis=1)


def monthly(c: Computed) -> pa.Table:
    reg, h = c.register, c.hierarchy
    practice = h.practice_of_patient[reg.patients]
    cat = month_category(c)
    r, m = np.nonzero(cat >= 0)
    cubes = {
        "budget": _practice_cube(c, practice[r], cat[r, m], m, c.month_budget[r, m]),
        "cohort_days": _practice_cube(c, practice[r], cat[r, m], m, reg.days[r, m].astype(np.float64)),
        "people": _practice_cube(c, practice[r], cat[r, m], m, reg.in_at_end[r, m].astype(np.float64)),
    }
    tr, tm = c.tagged_row, c.tagged_month
    cubes["actual"] = _practice_cube(c, practice[tr], cat[tr, tm], tm, c.activity.cost[c.tagged])
    rolled = {name: dict(_levels(c, cube)) for name, cube in cubes.items()}
    parts = [_monthly_level(c, lv, {k: v[lv] for k, v in rolled.items()}) for lv in LEVELS]
    return pa.concat_tables(parts)


def _monthly_level(c: Computed, lv: str, cube: dict[str, np.ndarray]) -> pa.Table:
    h, year = c.hierarchy, c.year
    units, k1 = cube["budget"].shape[0], cube["budget"].shape[1]
    unit = np.repeat(np.arange(units), k1 * 12)
    category = np.tile(np.repeat(np.arange(k1), 12), units)
    month = np.tile(np.arange(12), units * k1)
    complete = month < c.complete
    budget, actual = cube["budget"], cube["actual"]
    to_date = np.cumsum(actual, axis=2) + budget.sum(axis=2, keepdims=True) - np.cumsum(budget, axis=2)
    names = c.tariffs.category + [ALL]
    parents = _parents(c, lv)
    return pa.table({
        "level": pa.array([lv] * len(unit), pa.string()),
        "unit_code": pa.array(np.array(h.codes[lv], dtype=object)[unit].tolist(), pa.string()),
        "unit_name": pa.array(np.array(h.names[lv], dtype=object)[unit].tolist(), pa.string()),
        "parent_code": pa.array(np.array(parents, dtype=object)[unit].tolist(), pa.string()),
        "month": pa.array(np.array(year.month_labels(), dtype=object)[month].tolist(), pa.string()),
        "month_start": pa.array(np.array([day(d) for d in year.month_starts()], np.int32)[month], pa.date32()),
        "category": pa.array(np.array(names, dtype=object)[category].tolist(), pa.string()),
        "people": pa.array(np.rint(cube["people"].ravel()).astype(np.int64)),
        "cohort_days": pa.array(np.rint(cube["cohort_days"].ravel()).astype(np.int64)),
        "budget": pa.array(budget.ravel(), pa.float64()),
        "actual": pa.array(actual.ravel(), pa.float64()),
        "variance": pa.array((budget - actual).ravel(), pa.float64()),
        "forecast": pa.array(to_date.ravel(), pa.float64(), mask=~complete),
        "complete": pa.array(complete),
    })


def _parents(c: Computed, lv: str) -> list[str | None]:
    return c.hierarchy.parents(lv)


def movement(c: Computed) -> pa.Table:
    """Joiners and leavers per month: counts, their cost and their budget."""
    reg = c.register
    joined = reg.join_reason > 0
    join_month = _month_of(c, reg.joined)
    leave_month = _leave_month(c)
    left = reg.leave_reason >= 0
    stint_cost = _stint_tagged_cost(c)
    out = {"month": c.year.month_labels()}
    out["joined"] = np.bincount(join_month[joined], minlength=12)[:12].astype(np.int64)
    for i, why in enumerate(LEAVE_REASONS):
        sel = reg.leave_reason == i
        out[f"left_{why}"] = np.bincount(leave_month[sel], minlength=12)[:12].astype(np.int64)
    out["cost_joiners"] = np.bincount(join_month[joined], weights=stint_cost[joined], minlength=12)[:12]
    out["cost_leavers"] = np.bincount(leave_month[left], weights=_cost_before_leaving(c)[left], minlength=12)[:12]
    out["budget_joiners"] = np.bincount(join_month[joined], weights=c.stint_budget[joined], minlength=12)[:12]
    out["budget_leavers"] = np.bincount(leave_month[left], weights=c.stint_budget[left], minlength=12)[:12]
    types = {k: pa.string() if k == "month" else pa.int64() if k.startswith(("joined", "left")) else pa.float64()
             for k in out}
    return pa.table({k: pa.array(v, types[k]) for k, v in out.items()})


def _month_of(c: Computed, days: np.ndarray) -> np.ndarray:
    """The month (0-11) each day falls in; days before the year count as its first."""
    starts = np.array([day(s) for s in c.year.month_starts()], np.int64)
    return np.maximum(np.searchsorted(starts, days, side="right") - 1, 0).astype(np.int64)


def _leave_month(c: Computed) -> np.ndarray:
    """The month each stint left in: that of the day they died or deregistered, or the month
    they were found no longer qualifying (the one after their last day in the cohort)."""
    reg = c.register
    exact = reg.leave_reason < 2
    on_day = _month_of(c, reg.left)
    return np.where(exact, on_day, np.minimum(reg.stint_last + 1, 11)).astype(np.int64)


def _stint_tagged_cost(c: Computed) -> np.ndarray:
    reg = c.register
    stint = reg.stint_of[c.tagged_row, c.tagged_month]
    return np.bincount(stint, weights=c.activity.cost[c.tagged], minlength=reg.n_stints)[: reg.n_stints]


def _cost_before_leaving(c: Computed) -> np.ndarray:
    """Each leaving stint's in-scope cost in the 365 days up to its leaving day."""
    reg, act = c.register, c.activity
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


def shadow(c: Computed, store: Store) -> pa.Table:
    """The whole registered population's shadow budget beside the cohort's, per level.
    Budget: the year's; actual and variance: the months the data covers (variance =
    the budget of those months - actual)."""
    h = c.hierarchy
    days, any_days = registered_days(store, c.year)
    practice = h.practice_of_patient
    n_p = len(h.codes["practice"])
    pop_budget = np.bincount(practice, weights=c.shadow_rate * days / c.year.days, minlength=n_p)
    pop_people = np.bincount(practice, weights=any_days.astype(np.float64), minlength=n_p)
    frac = _to_date_fraction(c)
    rows = []
    for scope_name, people, budget, actual, to_date in (
            ("whole_population", pop_people, pop_budget, _population_actual(c, store), pop_budget * frac),
            ("cohort",) + _cohort_shadow(c)):
        for (lv, b), (_, p), (_, a), (_, t) in zip(*(_levels(c, x) for x in (budget, people, actual, to_date))):
            money = {"budget": b, "budget_to_date": t, "actual": a, "variance": t - a}
            rows.append(pa.table({
                "scope": pa.array([scope_name] * len(b), pa.string()), "level": pa.array([lv] * len(b), pa.string()),
                "unit_code": pa.array(h.codes[lv], pa.string()), "unit_name": pa.array(h.names[lv], pa.string()),
                "people": pa.array(np.rint(p).astype(np.int64)),
                **{k: pa.array(np.asarray(v, np.float64)) for k, v in money.items()}}))
    return pa.concat_tables(rows)


def _to_date_fraction(c: Computed) -> float:
    return float(c.weights[: c.complete].sum())


def _population_actual(c: Computed, store: Store) -> np.ndarray:
    """In-scope spend of everyone while registered and alive, in the complete months."""
    act, pt = c.activity, store.table("patients")
    last = day(c.year.month_ends()[c.complete - 1]) if c.complete else day(c.year.start) - 1
    rec = act.within(day(c.year.start), last)
    patient, on = act.patient[rec], act.start[rec]
    end, death = (pt[x].astype(np.int64) for x in ("registration_end", "death_date"))
    until = np.minimum(np.where(end == NO_DATE, last, end), np.where(death == NO_DATE, last, death))
    ok = (on >= pt["registration_start"][patient]) & (on <= until[patient])  # registered and alive that day
    practice = c.hierarchy.practice_of_patient[patient[ok]]
    return np.bincount(practice, weights=act.cost[rec[ok]], minlength=len(c.hierarchy.codes["practice"]))


def _cohort_shadow(c: Computed) -> tuple[np.ndarray, ...]:
    reg, h = c.register, c.hierarchy
    n_p = len(h.codes["practice"])
    practice = h.practice_of_patient[reg.patients]
    people = np.bincount(practice, weights=(reg.days.sum(axis=1) > 0).astype(np.float64), minlength=n_p)
    budget = np.bincount(practice, weights=c.month_budget.sum(axis=1), minlength=n_p)
    to_date = np.bincount(practice, weights=c.month_budget[:, : c.complete].sum(axis=1), minlength=n_p)
    complete = c.tagged_month < c.complete
    actual = np.bincount(practice[c.tagged_row[complete]], weights=c.activity.cost[c.tagged[complete]], minlength=n_p)
    return people, budget, actual, to_date
