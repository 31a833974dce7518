"""A budget year's per-store pieces and their merge: what lets a sharded store give one
store's budget exactly (docs/scale-out.md).

Everything a budget reads from a store is either about one patient (their values at each
date, their register stints, their tagged records, their baseline cost) or a sum over the
whole population per practice or month (the baseline profile, the population's actual, its
registered days). ``Part`` holds both for one store: numpy and Arrow arrays only, no store,
so a shard's part pickles back from a Spark executor. ``merge`` puts the per-patient pieces
of every part in one store's order (practice, then ``patient_id``) and adds the sums: those
per patient give the same arrays in the same order as one store, so every later sum adds
the same numbers in the same order; the population's sums are compensated (Neumaier, then a
two-sum to add two parts), so they are one store's bits whatever the split. A single store
is one part and goes through the same merge, so the two cannot drift apart.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from casefind.budgets.register import Register
from casefind.kpis.compute import Hierarchy
from casefind.store.sharded import store_order
from casefind_native.aggregate import add_compensated, group_sums_into


@dataclass(frozen=True)
class People:
    """The baseline people (those the tariffs are set from): practice index, pseudonymised
    id, category at the baseline year's end, in-scope cost in the baseline year."""

    practice: np.ndarray
    patient_id: pa.Array
    category: np.ndarray
    cost: np.ndarray


@dataclass(frozen=True)
class Tagged:
    """The records inside the capitation (tagged_activity's rows): register row, month,
    ``record`` (the row in the store's activity table), start day, cost, and the setting,
    provider and funding as codes into ``values`` (funding None: the store has no funding
    column), the spell as the source's ``spell_id``."""

    row: np.ndarray
    month: np.ndarray
    record: np.ndarray
    start: np.ndarray
    cost: np.ndarray
    setting: np.ndarray
    provider: np.ndarray
    funding: np.ndarray | None
    spell: pa.Array
    values: dict[str, list]


@dataclass(frozen=True)
class Population:
    """Per practice, over everyone: people registered and alive on some day of the year,
    their days so (both exact integers), and the in-scope spend while so in the complete
    months (compensated: rows hi, lo)."""

    people: np.ndarray
    days: np.ndarray
    actual: np.ndarray

    @property
    def actual_total(self) -> np.ndarray:
        return self.actual[0] + self.actual[1]


@dataclass(frozen=True)
class Part:
    """One store's (or shard's) pieces of a budget year; ``register`` rows, ``practice``,
    ``patient_id`` and ``first_record`` (the row of each one's first activity record) are
    per register patient."""

    base: People
    pool: np.ndarray          # baseline-year cost of everyone registered throughout it (shadow rate)
    profile: np.ndarray       # baseline people's in-scope cost per baseline month (compensated, 2 x 12)
    register: Register
    practice: np.ndarray
    patient_id: pa.Array
    first_record: np.ndarray
    tagged: Tagged
    leaver_cost: np.ndarray   # per stint: in-scope cost in the 365 days up to leaving
    population: Population
    has_funding: bool
    hierarchy: Hierarchy      # practice_of_patient: ``practice``


def compensated_sums(group: np.ndarray, value: np.ndarray, n_groups: int) -> np.ndarray:
    """Sums of ``value`` per group as (hi, lo) rows: Neumaier's compensated sum (the KPI
    kernel), so that two parts' sums added by ``add_sums`` are one store's sum to the bit,
    whatever order or split the values came in."""
    out = np.zeros((6, n_groups))
    ones = np.ones(len(group), bool)
    group_sums_into(out, np.asarray(group, np.int64), ones, np.asarray(value, np.float64), ones)
    return out[[2, 4]].copy()


def add_sums(parts: list[np.ndarray]) -> np.ndarray:
    """(hi, lo) sums added by a two-sum, in order."""
    total = np.array(parts[0], np.float64, copy=True)
    for other in parts[1:]:
        add_compensated(total[0], total[1], other[0], other[1])
    return total


def _concat_ids(arrays: list[pa.Array]) -> pa.Array:
    return pa.concat_arrays([pa.array(a).cast(pa.string()) for a in arrays]) if arrays else pa.array([], pa.string())


def _offsets(sizes: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _merge_people(people: list[People]) -> People:
    practice = np.concatenate([p.practice for p in people])
    ids = _concat_ids([p.patient_id for p in people])
    order = store_order(practice, ids)
    return People(practice[order], ids.take(pa.array(order)), np.concatenate([p.category for p in people])[order],
                  np.concatenate([p.cost for p in people])[order])


def _concat_registers(regs: list[Register]) -> Register:
    """The registers one after another: rows and stints renumbered by the parts before."""
    rows = _offsets([len(r.patients) for r in regs])
    stints = _offsets([r.n_stints for r in regs])
    cat = {f.name: [getattr(r, f.name) for r in regs] for f in dataclasses.fields(Register)}
    cat["stint_of"] = [np.where(r.stint_of >= 0, r.stint_of + s, -1) for r, s in zip(regs, stints)]
    cat["stint_patient"] = [r.stint_patient + o for r, o in zip(regs, rows)]
    return Register(**{k: np.concatenate(v) for k, v in cat.items()})


def _reorder_register(reg: Register, order: np.ndarray) -> tuple[Register, np.ndarray, np.ndarray]:
    """``reg`` with its patients in ``order`` and its stints in one store's order (by
    patient, then as each part had them: by the month they began); each old row's new row,
    and the stints' order."""
    new_row = np.empty(len(order), np.int64)
    new_row[order] = np.arange(len(order))
    stint_row = new_row[reg.stint_patient]
    stint_order = np.argsort(stint_row, kind="stable")
    new_stint = np.empty(len(stint_order), np.int64)
    new_stint[stint_order] = np.arange(len(stint_order))
    per_patient = {f: getattr(reg, f)[order] for f in ("patients", "first_day", "last_day", "days", "in_at_end")}
    stint_of = reg.stint_of[order]
    stint_of = np.where(stint_of >= 0, new_stint[np.maximum(stint_of, 0)], -1)
    per_stint = {f: getattr(reg, f)[stint_order] for f in ("stint_first", "stint_last", "joined", "left",
                                                           "join_reason", "leave_reason", "category", "incentive")}
    reordered = Register(**per_patient, **per_stint, stint_of=stint_of, stint_patient=stint_row[stint_order])
    return reordered, new_row, stint_order


def common_values(lists: list[list]) -> list:
    """The values a merged code column indexes: the parts' own when they agree (an enum),
    else their sorted union (a store's dictionary is its values sorted, so this is one
    store's dictionary of the same rows)."""
    first = list(lists[0])
    if all(list(v) == first for v in lists[1:]):
        return first
    return sorted(set().union(*map(set, lists)))


def _recode(codes: np.ndarray, values: list, into: list) -> np.ndarray:
    """Codes into ``values`` (-1: null) as codes into ``into``."""
    if list(values) == list(into):
        return np.asarray(codes, np.int64)
    where = {v: i for i, v in enumerate(into)}
    lookup = np.array([where[v] for v in values] + [-1], np.int64)
    return lookup[np.asarray(codes, np.int64)]


def _merge_tagged(tagged: list[Tagged], new_row_of: list[np.ndarray]) -> Tagged:
    """Every part's tagged records in one store's order: by patient, then record order."""
    row = np.concatenate([nr[t.row] for t, nr in zip(tagged, new_row_of)]).astype(np.int64)
    order = np.argsort(row, kind="stable")
    values = {k: common_values([t.values[k] for t in tagged]) for k in tagged[0].values}
    coded = {k: np.concatenate([_recode(getattr(t, k), t.values[k], values[k]) for t in tagged])[order]
             for k in ("setting", "provider") + (("funding",) if tagged[0].funding is not None else ())}
    plain = {k: np.concatenate([getattr(t, k) for t in tagged])[order] for k in ("month", "record", "start", "cost")}
    spell = pa.concat_arrays([pa.array(t.spell) for t in tagged]).take(pa.array(order))
    return Tagged(row=row[order], spell=spell, values=values, funding=coded.pop("funding", None), **coded, **plain)


def merge(parts: list[Part]) -> Part:
    """One part from many, as one store of all their patients would have made it (see the
    module's docstring). Register ``patients`` (store indices) and ``first_record`` mean
    nothing across shards: -1 when there is more than one part."""
    practice = np.concatenate([p.practice for p in parts])
    ids = _concat_ids([p.patient_id for p in parts])
    order = store_order(practice, ids)
    reg, new_row, stint_order = _reorder_register(_concat_registers([p.register for p in parts]), order)
    rows = _offsets([len(p.practice) for p in parts])
    new_row_of = [new_row[rows[i]:rows[i + 1]] for i in range(len(parts))]
    many = len(parts) > 1
    if many:
        reg = dataclasses.replace(reg, patients=np.full(len(order), -1, np.int64))
    practice = practice[order]
    return Part(
        base=_merge_people([p.base for p in parts]), pool=np.concatenate([p.pool for p in parts]),
        profile=add_sums([p.profile for p in parts]), register=reg, practice=practice,
        patient_id=ids.take(pa.array(order)),
        first_record=np.full(len(practice), -1, np.int64) if many else parts[0].first_record,
        tagged=_merge_tagged([p.tagged for p in parts], new_row_of),
        leaver_cost=np.concatenate([p.leaver_cost for p in parts])[stint_order],
        population=Population(sum(p.population.people for p in parts), sum(p.population.days for p in parts),
                              add_sums([p.population.actual for p in parts])),
        has_funding=parts[0].has_funding,
        hierarchy=dataclasses.replace(parts[0].hierarchy, practice_of_patient=practice))
