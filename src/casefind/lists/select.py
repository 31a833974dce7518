"""From per-patient values to a ranked, capped list: who is in, who is out and why.

Order of decisions, each counted: in the rule's population → meets the criteria (include
and require) → not excluded by the rule (each named exclusion counted) → not excluded by
list policy (died, deregistered, opted out) → ranked → capped per practice, per locality
and in total. A patient excluded for several reasons is counted under each.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from casefind.rules import ir
from casefind.rules.compile import CompiledRule


def selection_expressions(rule: CompiledRule) -> dict[str, ir.Node]:
    """The population, each include and exclude criterion and ``require``: what decides the cohort."""
    exprs: dict[str, ir.Node] = {"population": rule.population}
    for name, node in rule.include:
        exprs[f"include:{name}"] = node
    for name, node in rule.exclude:
        exprs[f"exclude:{name}"] = node
    if rule.require is not None:
        exprs["require"] = rule.require
    return exprs


@dataclass(frozen=True)
class ListPolicy:
    """Who never appears on a review list, whatever the rule says. ``opt_out_kinds``:
    type1 (an objection at the GP practice) by default; ``ndo`` (the national data opt-out)
    does not apply to direct care, so it is not excluded unless asked for."""

    exclude_dead: bool = True
    exclude_deregistered: bool = True
    opt_out_kinds: tuple[str, ...] = ("type1",)


@dataclass
class Selection:
    patients: np.ndarray                       # store indices of listed patients, in rank order
    rank: np.ndarray                           # 1-based rank within practice
    counts: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)   # by reason (rule and policy)
    capped: int = 0
    rows: np.ndarray = field(default_factory=lambda: np.array([], np.int64))  # their rows of ``values``


def _flag(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    return np.asarray(col.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _sort_key(table: pa.Table, name: str, desc: bool) -> np.ndarray:
    """Numeric key; missing values rank last whichever the direction."""
    col = table.column(name)
    if pa.types.is_date32(col.type):
        col = col.cast(pa.int32())
    if pa.types.is_boolean(col.type):
        col = col.cast(pa.int8())
    if pa.types.is_string(col.type):
        raise ValueError(f"rank_by {name}: cannot rank text")
    v = col.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    v = -v if desc else v
    return np.where(np.isnan(v), np.inf, v)


def select(rule: CompiledRule, values: pa.Table, practice: np.ndarray, locality: np.ndarray,
           policy_out: dict[str, np.ndarray], patient_ids: pa.ChunkedArray | pa.Array) -> Selection:
    """``values`` holds, per evaluated patient (every stored patient, or only the population's):
    ``patient`` (store index), population, each include and exclude name (prefixed
    ``include:``/``exclude:``), ``require`` and every rank_by feature. ``practice``,
    ``locality``, each policy mask and ``patient_ids`` are per stored patient."""
    counts, excluded = {}, {}
    patient = values.column("patient").to_numpy().astype(np.int64)
    pop = _flag(values, "population")
    counts["population"] = int(pop.sum())
    meets = pop & _flag(values, "require") if rule.include else pop.copy()
    counts["meets_criteria"] = int(meets.sum())
    keep = meets.copy()
    for name, _ in rule.exclude:
        hit = meets & _flag(values, f"exclude:{name}")
        excluded[name] = int(hit.sum())
        keep &= ~hit
    for name, mask in policy_out.items():
        hit = mask[patient]
        excluded[f"policy:{name}"] = int((meets & hit).sum())
        keep &= ~hit
    counts["eligible"] = int(keep.sum())
    rows = np.flatnonzero(keep)
    best_first = rows[_ranking(rule, values, rows, patient_ids.take(pa.array(patient[rows])))]
    chosen = _capped(rule, practice[patient[best_first]], locality[patient[best_first]])
    chosen_rows, rank = best_first[chosen[0]], chosen[1]
    order = np.lexsort((rank, practice[patient[chosen_rows]]))
    counts["listed"] = len(chosen_rows)
    return Selection(patient[chosen_rows][order], rank[order], counts, excluded, int(rows.size - len(chosen_rows)),
                     chosen_rows[order])


def _ranking(rule: CompiledRule, values: pa.Table, rows: np.ndarray, ids) -> np.ndarray:
    """The order of ``rows``, best first: one global ranking by the rule's keys in order,
    then the pseudonymised id (stable ties)."""
    if not rows.size:
        return np.array([], np.int64)
    keys = [np.asarray(ids.to_pylist(), dtype=object).astype(str)]
    for name, _, desc in reversed(rule.rank_by):
        keys.append(_sort_key(values, name, desc)[rows])
    return np.lexsort(tuple(keys))


def _capped(rule: CompiledRule, practice: np.ndarray, locality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of the ranked candidates (positions, in rank order) the caps keep, and each one's
    rank within its practice: per practice, per locality, then in total."""
    cap_p, cap_l, total = (rule.limit.get(k) for k in ("per_practice", "per_locality", "total"))
    keep = np.ones(len(practice), bool)
    if cap_p is not None:
        keep &= _position_within(practice) < cap_p
    if cap_l is not None:  # counted among those the practice cap kept
        keep[keep] = _position_within(locality[keep]) < cap_l
    if total is not None:
        keep[np.flatnonzero(keep)[total:]] = False
    kept = np.flatnonzero(keep)
    return kept, _position_within(practice[kept]) + 1


def _position_within(group: np.ndarray) -> np.ndarray:
    """Each element's 0-based position among the earlier elements of its group."""
    if not len(group):
        return np.array([], np.int64)
    order = np.argsort(group, kind="stable")
    g = group[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    pos = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    out = np.empty(len(g), np.int64)
    out[order] = pos
    return out
