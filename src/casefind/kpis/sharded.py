"""KPIs on a sharded store (docs/scale-out.md): the single store's results.

Every KPI is made of additive pieces per practice (and breakdown cell), or for a median of
the members' values, so each shard is evaluated into its own sums (``compute._Sums``, with
its own patients' practices; wherever the mapper runs it), the shards' sums are added
(``_Sums.merge``, text labels matched by name) and rolled up once. A split
measure's providers are the union of the shards' provider codes in sorted order (a store's
dictionary is sorted, so this is the single store's list), and which system each provider
serves is the union of the shards' answers. Sums of decimals are compensated
(``casefind_native.aggregate.add_compensated``), so adding them in another order than one
store does gives the same bits (tested equal, not close).
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from casefind.errors import UsageError
from casefind.kpis import compute
from casefind.kpis import levels as split_levels
from casefind.kpis.compute import Hierarchy
from casefind.kpis.define import KpiSet
from casefind.kpis.periods import Period
from casefind.rules import ir
from casefind.store.sharded import ShardedStore


def compute_sharded(store: ShardedStore, ksets: dict[Period, KpiSet], run_id: str, engine: str = "native",
                    level: float = 0.95, say: Callable[[str], None] = lambda s: None) -> pa.Table:
    """``compute.compute(store, ksets, compute.evaluate_chunks(...))`` for a sharded store."""
    _refuse_ranks(ksets)
    first = store.open_shard(0)
    split = any(m.split.levels for ks in ksets.values() for m in ks.measures.values())
    providers: tuple[str, ...] = ()
    if split:
        codes = store.map(_shard_providers, "listing providers", say)
        providers = tuple(sorted(set().union(*codes)))
    roll = compute._Rollup(first, run_id, level)
    n_practices, n_systems = len(roll.h.codes["practice"]), roll.n_units["system"]
    task = functools.partial(_shard_sums, ksets, engine, split, providers, n_practices, n_systems)
    sums = compute._Sums(ksets, roll.practice, n_practices, providers)
    served = np.zeros((n_systems, len(providers)), bool)
    for part, mine in store.map(task, f"evaluating ({engine} engine)", say):
        sums.merge(part)
        if split:
            where = np.searchsorted(np.asarray(providers, dtype=object), np.asarray(mine.codes, dtype=object))
            served[:, where] |= mine.served
    if split:
        roll.providers = split_levels.Providers(providers, served)
    sums.finish(roll)
    return compute._assemble(roll.chunks)


def _refuse_ranks(ksets: dict[Period, KpiSet]) -> None:
    """A measure that ranks within the population (top / percentile) would rank within each
    shard: refused, until KPIs take the two-pass pools (engines/pooled.py) per period."""
    for ks in ksets.values():
        for name, node in compute.expressions(ks).items():
            if ir.contains(node, ir.PopulationRank, (ir.ROWS, ir.DATE)):
                raise UsageError(f"KPI {name.split('|')[0]} ranks within the population (top / percentile): "
                                 "not merged over shards yet", "run this KPI file on a single store")


def _shard_providers(shard, i: int) -> list[str]:
    return list(split_levels.provider_codes(shard))


def _shard_sums(ksets, engine: str, split: bool, providers: tuple[str, ...], n_practices: int, n_systems: int,
                shard, i: int):
    """One shard's sums (and, for split measures, which systems its providers serve),
    wherever the mapper runs it."""
    h = Hierarchy.of(shard)
    sums = compute._Sums(ksets, h.practice_of_patient, n_practices, providers)
    for piece in compute.evaluate_chunks(shard, ksets, engine, providers=providers):
        sums.add(piece)
    mine = None
    if split:
        system = h.system_of_locality[h.locality_of_practice[h.practice_of_patient]]
        mine = split_levels.Providers.of(shard, system, n_systems)
    sums.practice = None  # per patient: not needed by the merge
    return sums, mine
