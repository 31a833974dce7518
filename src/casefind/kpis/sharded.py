"""KPIs on a sharded store (docs/scale-out.md): the single store's results.

Every KPI is made of additive pieces per practice (and breakdown cell), or for a median of
the members' values, so the shards are evaluated one at a time into the same running sums
(``compute._Sums``) with each shard's own patients' practices, then rolled up once. A split
measure's providers are the union of the shards' provider codes in sorted order (a store's
dictionary is sorted, so this is the single store's list), and which system each provider
serves is the union of the shards' answers. Sums of decimals are added in another order
than one store adds them, so they may differ in the last bits (1e-12 relative, tested).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from casefind.kpis import compute
from casefind.kpis import levels as split_levels
from casefind.kpis.compute import Hierarchy
from casefind.kpis.define import KpiSet
from casefind.kpis.periods import Period
from casefind.store.sharded import ShardedStore, same_reference_tables


def compute_sharded(store: ShardedStore, ksets: dict[Period, KpiSet], run_id: str, engine: str = "native",
                    level: float = 0.95, say: Callable[[str], None] = lambda s: None) -> pa.Table:
    """``compute.compute(store, ksets, compute.evaluate_chunks(...))`` for a sharded store."""
    first = store.open_shard(0)
    split = any(m.split.levels for ks in ksets.values() for m in ks.measures.values())
    shards_providers = [split_levels.provider_codes(s) for _, s in store.shards()] if split else []
    providers = tuple(sorted(set().union(*shards_providers))) if split else ()
    roll = compute._Rollup(first, run_id, level)
    sums = compute._Sums(ksets, roll.practice, len(roll.h.codes["practice"]), providers)
    served = np.zeros((roll.n_units["system"], len(providers)), bool)
    for i, shard in store.shards():
        say(f"evaluating shard {i + 1} of {store.n_shards}")
        same_reference_tables(store, first, shard, i)
        h = Hierarchy.of(shard)
        sums.practice = h.practice_of_patient
        for piece in compute.evaluate_chunks(shard, ksets, engine, providers=providers):
            sums.add(piece)
        if split:
            system = h.system_of_locality[h.locality_of_practice[h.practice_of_patient]]
            mine = split_levels.Providers.of(shard, system, roll.n_units["system"])
            where = np.searchsorted(np.asarray(providers, dtype=object), np.asarray(mine.codes, dtype=object))
            served[:, where] |= mine.served
    if split:
        roll.providers = split_levels.Providers(providers, served)
    sums.finish(roll)
    return compute._assemble(roll.chunks)
