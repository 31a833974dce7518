"""An evaluation on a sharded store (docs/scale-out.md): the single store's people, in its order.

Matching reads everyone at once (the treated and every eligible control, in the order one
store keeps its patients, which its tie-breaks and its seeded draws follow), so each shard
gives its patients' values and they are put in one store's order (practice, then
``patient_id``) before anything else: the index dates in pass 1, which say which month ends
to read, then what matching reads at those months in pass 2, reordered by pass 1's
permutation, and after matching the outcomes of the matched people in pass 3 (each shard
sends only its own). Matching, balance and effects are the single store's code on the same
arrays, so the result is the single store's. An evaluation whose expressions rank within the population
(top / percentile) is refused: its pools would be needed at every index month.
"""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from casefind.errors import UsageError
from casefind.evaluate import outcomes
from casefind.evaluate.spec import EvalSpec
from casefind.rules import ir
from casefind.store import Store
from casefind.store.sharded import ShardedStore, store_order


@dataclass(frozen=True)
class People:
    """Every patient of the store in one store's order: their index day (``outcomes.NO_DATE``
    if never), their pseudonymised id, and (on a sharded store) the permutation from the
    shards' concatenated rows to that order and each shard's number of patients."""

    index: np.ndarray
    patient_ids: pa.Array
    order: np.ndarray | None = None
    sizes: tuple[int, ...] = ()


def people(store: Store | ShardedStore, spec: EvalSpec, data_end: dt.date, engine: str,
           say: Callable[[str], None] = lambda s: None) -> People:
    """Pass 1: the index dates, one store's or the shards' merged."""
    if isinstance(store, Store):
        ids = store.table("patients").arrow.column("patient_id").combine_chunks().cast(pa.string())
        return People(outcomes.index_dates(store, spec, data_end, engine), ids)
    refuse_ranks(spec)
    pieces = store.map(functools.partial(_shard_index, spec, data_end, engine), "finding the intervention group", say)
    ids = pa.concat_arrays([p[2] for p in pieces])
    order = store_order(np.concatenate([p[1] for p in pieces]), ids)
    return People(np.concatenate([p[0] for p in pieces])[order], ids.take(pa.array(order)), order,
                  tuple(len(p[0]) for p in pieces))


def values(store: Store | ShardedStore, exprs: dict[str, ir.Node], dates: list[dt.date], engine: str, who: People,
           say: Callable[[str], None] = lambda s: None, rows: np.ndarray | None = None) -> outcomes.Values:
    """Passes 2 and 3: ``exprs`` at every date, in ``who``'s order: for every patient (what
    matching reads), or for the sorted store ``rows`` only (the matched people's outcomes,
    each shard sending only its own of them)."""
    if isinstance(store, Store):
        return outcomes.evaluate(store, exprs, dates, engine, rows)
    wanted = who.order if rows is None else who.order[rows]   # rows of the shards, concatenated
    mine = None
    if rows is not None:  # each shard's own wanted rows, in its order
        starts = np.cumsum((0,) + who.sizes)
        by_shard = np.searchsorted(starts, wanted, side="right") - 1
        mine = {i: np.sort(wanted[by_shard == i]) - starts[i] for i in range(len(who.sizes))}
    task = functools.partial(_shard_values, exprs, dates, engine, mine)
    pieces = store.map(task, "evaluating the outcomes of the matched" if rows is not None
                       else "evaluating the features", say)
    # the pieces, concatenated, hold the wanted rows sorted: each one's place there is its rank
    take, tables = pa.array(np.argsort(np.argsort(wanted))), []
    for k in range(len(dates)):  # each date's pieces let go of once in order: one copy, not two
        tables.append(pa.concat_tables([p[k] for p in pieces]).take(take))
        for p in pieces:
            p[k] = None
    return outcomes.values_of(exprs, dates, tables, rows)


def refuse_ranks(spec: EvalSpec) -> None:
    """A rank within the population would rank within each shard: refused with the way round it."""
    for name, node in {**outcomes.expressions(spec), **outcomes.outcome_expressions(spec)}.items():
        if ir.contains(node, ir.PopulationRank, (ir.ROWS, ir.DATE)):
            raise UsageError(f"evaluation {spec.name}: {name.replace('|', ' ')} ranks within the population "
                             "(top / percentile), which is not merged over shards",
                             "run this evaluation on a single store")
    if ir.contains(spec.index_date, ir.PopulationRank, (ir.ROWS, ir.DATE)):
        raise UsageError(f"evaluation {spec.name}: its group ranks within the population, which is not merged "
                         "over shards", "run this evaluation on a single store")


def _shard_index(spec: EvalSpec, data_end: dt.date, engine: str, shard: Store, i: int):
    """Pass 1 on one shard: index days, practice indices and ids, in the shard's order."""
    p = shard.table("patients")
    return (outcomes.index_dates(shard, spec, data_end, engine), p["practice"].astype(np.int64),
            p.arrow.column("patient_id").combine_chunks().cast(pa.string()))


def _shard_values(exprs: dict[str, ir.Node], dates: list[dt.date], engine: str, rows: dict | None, shard: Store,
                  i: int):
    """Pass 2 or 3 on one shard: one table per date, of its patients (or of ``rows[i]``) in
    the shard's order."""
    from casefind.engines.many_dates import evaluate_at_dates

    tables = evaluate_at_dates(shard, exprs, dates, engine)
    return tables if rows is None else [t.take(pa.array(rows[i])) for t in tables]
