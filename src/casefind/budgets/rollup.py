"""The run's tables: budget against actual per practice, locality and system, category and
month; joiners and leavers; shadow budgets. Sums are made per practice and rolled up, so
practices add up to their localities and localities to the system exactly."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from casefind.budgets.compute import Computed
from casefind.budgets.features import day
from casefind.budgets.register import LEAVE_REASONS

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
    reg, practice = c.register, c.practice
    cat = month_category(c)
    r, m = np.nonzero(cat >= 0)
    cubes = {
        "budget": _practice_cube(c, practice[r], cat[r, m], m, c.month_budget[r, m]),
        "cohort_days": _practice_cube(c, practice[r], cat[r, m], m, reg.days[r, m].astype(np.float64)),
        "people": _practice_cube(c, practice[r], cat[r, m], m, reg.in_at_end[r, m].astype(np.float64)),
    }
    tr, tm = c.tagged_row, c.tagged_month
    cubes["actual"] = _practice_cube(c, practice[tr], cat[tr, tm], tm, c.tagged.cost)
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
    out["cost_leavers"] = np.bincount(leave_month[left], weights=c.leaver_cost[left], minlength=12)[:12]
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
    return np.bincount(stint, weights=c.tagged.cost, minlength=reg.n_stints)[: reg.n_stints]


def shadow(c: Computed) -> pa.Table:
    """The whole registered population's shadow budget beside the cohort's, per level.
    Budget: the year's; actual and variance: the months the data covers (variance =
    the budget of those months - actual). A practice's population budget is the rate x
    its people's days registered and alive in the year (an exact integer, whatever the
    split of its patients over shards) / the year's days."""
    h, pop = c.hierarchy, c.population
    pop_budget = c.shadow_rate * pop.days / c.year.days
    frac = _to_date_fraction(c)
    rows = []
    for scope_name, people, budget, actual, to_date in (
            ("whole_population", pop.people.astype(np.float64), pop_budget, pop.actual_total, pop_budget * frac),
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


def _cohort_shadow(c: Computed) -> tuple[np.ndarray, ...]:
    reg, practice = c.register, c.practice
    n_p = len(c.hierarchy.codes["practice"])
    people = np.bincount(practice, weights=(reg.days.sum(axis=1) > 0).astype(np.float64), minlength=n_p)
    budget = np.bincount(practice, weights=c.month_budget.sum(axis=1), minlength=n_p)
    to_date = np.bincount(practice, weights=c.month_budget[:, : c.complete].sum(axis=1), minlength=n_p)
    complete = c.tagged_month < c.complete
    actual = np.bincount(practice[c.tagged_row[complete]], weights=c.tagged.cost[complete], minlength=n_p)
    return people, budget, actual, to_date
