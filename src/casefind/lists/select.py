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

from casefind.rules.compile import CompiledRule


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
           policy_out: dict[str, np.ndarray], patient_ids: np.ndarray) -> Selection:
    """``values`` holds, per stored patient: population, each include and exclude name
    (prefixed ``include:``/``exclude:``), ``require`` and every rank_by feature."""
    counts, excluded = {}, {}
    pop = _flag(values, "population")
    counts["population"] = int(pop.sum())
    meets = pop & _flag(values, "require") if rule.include else pop.copy()
    counts["meets_criteria"] = int(meets.sum())
    keep = meets.copy()
    for name, _ in rule.exclude:
        hit = meets & _flag(values, f"exclude:{name}")
        excluded[name] = int(hit.sum())
        keep &= ~hit
    for name, hit in policy_out.items():
        excluded[f"policy:{name}"] = int((meets & hit).sum())
        keep &= ~hit
    counts["eligible"] = int(keep.sum())
    idx = np.flatnonzero(keep)
    # one global ranking: the rule's keys in order, then the pseudonymised id (stable ties)
    keys = [patient_ids[idx].astype(str)]
    for name, _, desc in reversed(rule.rank_by):
        keys.append(_sort_key(values, name, desc)[idx])
    best_first = idx[np.lexsort(tuple(keys))] if idx.size else idx
    cap_p, cap_l, total = (rule.limit.get(k) for k in ("per_practice", "per_locality", "total"))
    per_practice: dict[int, int] = {}
    per_locality: dict[int, int] = {}
    chosen, ranks = [], []
    for p in best_first:
        r = per_practice.get(practice[p], 0) + 1  # position on the practice's list
        if cap_p is not None and r > cap_p:
            continue
        if cap_l is not None and per_locality.get(locality[p], 0) >= cap_l:
            continue
        if total is not None and len(chosen) >= total:
            continue
        per_practice[practice[p]] = r
        per_locality[locality[p]] = per_locality.get(locality[p], 0) + 1
        chosen.append(p)
        ranks.append(r)
    chosen_arr = np.array(chosen, dtype=np.int64)
    rank_arr = np.array(ranks, dtype=np.int64)
    order = np.lexsort((rank_arr, practice[chosen_arr])) if chosen else np.array([], dtype=np.int64)
    counts["listed"] = len(chosen)
    return Selection(chosen_arr[order], rank_arr[order], counts, excluded, int(idx.size - len(chosen)))
