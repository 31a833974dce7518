"""The exact two-pass merge of population-relative values (``top``, ``percentile``) over a
sharded store (docs/scale-out.md).

A rank needs every member's value, and a shard holds only some members. Pass 1: each shard
gives the values of each ranked operand for its population's members (those with a value);
the pieces, pooled and sorted, are exactly the values one store would rank within. Pass 2:
every rank is replaced by an ``ir.RankInPool`` over that pool, which each engine evaluates
for a shard's patients with the same result as the rank over the whole store, ties and nan
included. Memory: one float per member per ranked value. Ranks inside ``at`` or within
another rank's operand are refused (their pools would need their own pass).
"""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable

import numpy as np

from casefind.errors import UsageError
from casefind.plan import substitute
from casefind.rules import ir


def ranks_in(exprs: dict[str, ir.Node]) -> list[ir.PopulationRank]:
    """Every distinct rank the expressions hold, refusing those a second pass cannot give:
    a rank under ``at()`` (pass 1 pools the values at the evaluation date, not at()'s) or in
    an aggregation's rows, and a rank of a rank."""
    found: dict[ir.PopulationRank, None] = {}
    for node in exprs.values():
        for x in ir.walk(node, (ir.ROWS, ir.DATE)):
            closed = [c for c in ir.parts(x) if c not in ir.children(x)]
            if any(ir.contains(c, ir.PopulationRank, (ir.ROWS, ir.DATE)) for c in closed):
                raise UsageError("a rank (top / percentile) inside at() or an aggregation's rows cannot be "
                                 "merged over shards", "run it on a single store")
        for n in ir.walk(node, ()):
            if isinstance(n, ir.PopulationRank):
                if ir.contains(n.operand, ir.PopulationRank):
                    raise UsageError("a rank of a value that itself ranks (top / percentile of a percentile) "
                                     "cannot be merged over shards", "run it on a single store")
                found[n] = None
    return list(found)


def members_values(evaluator, store, ranks: list[ir.PopulationRank], as_of: dt.date,
                   population: ir.Node | None) -> list[np.ndarray]:
    """Pass 1 on one store: per rank, its operand's values (float64) for the members of the
    population that have one, as the engines' ``standing`` counts them."""
    if not ranks:
        return []
    exprs = {f"v{i}": r.operand for i, r in enumerate(ranks)}
    if population is not None:
        exprs["member"] = population
    table = evaluator.evaluate(store, exprs, as_of, population)
    member = (np.asarray(table.column("member").fill_null(False).to_numpy(zero_copy_only=False), bool)
              if population is not None else np.ones(table.num_rows, bool))
    out = []
    for i in range(len(ranks)):
        col = table.column(f"v{i}")
        valid = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), bool)
        vals = col.cast("double").fill_null(0.0).to_numpy(zero_copy_only=False)
        out.append(np.asarray(vals, np.float64)[member & valid])
    return out


def pools(ranks: list[ir.PopulationRank], pieces: Iterable[list[np.ndarray]]) -> dict[ir.PopulationRank, ir.Pool]:
    """Each rank's pool: every shard's piece for it, together."""
    gathered: list[list[np.ndarray]] = [[] for _ in ranks]
    for piece in pieces:
        for slot, values in zip(gathered, piece):
            slot.append(values)
    return {r: ir.Pool.of(np.concatenate(g) if g else np.zeros(0)) for r, g in zip(ranks, gathered)}


def with_pools(exprs: dict[str, ir.Node], found: dict[ir.PopulationRank, ir.Pool]) -> dict[str, ir.Node]:
    """``exprs`` with every rank replaced by the same rank within its pool (shared sub-trees
    stay shared)."""
    def swap(n):
        if isinstance(n, ir.PopulationRank) and n in found:
            return ir.RankInPool(n.operand, n.kind, getattr(n, "fraction", None), found[n])
        return None

    memo: dict = {}
    return {name: substitute(node, swap, memo) for name, node in exprs.items()}


def over_shards(shards, evaluator, exprs: dict[str, ir.Node], as_of: dt.date, population: ir.Node | None,
                say=lambda s: None) -> dict[str, ir.Node]:
    """Both passes' glue for a sharded store: ``exprs`` as each shard must evaluate them
    (unchanged when nothing ranks), after pass 1 over every shard."""
    ranks = ranks_in(exprs)
    if not ranks:
        return exprs
    task = functools.partial(_members_task, evaluator.name, ranks, as_of, population)
    pieces = shards.map(task, "gathering the population's values for ranking", say)
    return with_pools(exprs, pools(ranks, pieces))


def _members_task(engine: str, ranks, as_of, population, shard, i: int) -> list[np.ndarray]:
    """Pass 1 for one shard, wherever the mapper runs it (engines are looked up by name there)."""
    from casefind.engines.base import get_engine

    return members_values(get_engine(engine), shard, ranks, as_of, population)
