"""``casefind run`` on a sharded store: exactly the single store's list (docs/scale-out.md).

Two passes over the shards, a shard at a time:

1. each shard evaluates its population and keeps its *candidates*: its eligible patients
   that its practices' cap could keep (the rule's ranking is one global order, rank keys then
   the pseudonymised id, and a practice's patients are ranked among themselves, so a
   patient outside their shard's top ``per_practice`` of their practice cannot be in the
   single store's top ``per_practice`` either). Counts and exclusions are added up.
2. the candidates of every shard, pooled, go through the same selection (caps per practice,
   per locality, in total): the single store's list, ties included. Each shard then checks
   its listed patients against the reference engine and gives their evidence and ids.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from casefind.engines.base import get_engine
from casefind.engines.pooled import over_shards, ranks_in
from casefind.lists.recheck import validate
from casefind.lists.select import ListPolicy, Selection, select
from casefind.lists.table import list_table
from casefind.rules.compile import compile_rule
from casefind.store import Store
from casefind.store.sharded import ShardedStore, in_store_order, practice_codes, same_reference_tables


@dataclasses.dataclass
class _Pooled:
    """What pass 1 keeps of every shard: candidates' values, where they came from, totals."""
    values: list[pa.Table] = dataclasses.field(default_factory=list)
    shard: list[np.ndarray] = dataclasses.field(default_factory=list)
    local: list[np.ndarray] = dataclasses.field(default_factory=list)   # store index within the shard
    practice: list[np.ndarray] = dataclasses.field(default_factory=list)
    locality: list[np.ndarray] = dataclasses.field(default_factory=list)
    ids: list[pa.Array] = dataclasses.field(default_factory=list)
    segments: list[tuple[pa.Table, np.ndarray]] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    excluded: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, i: int, shard_values: pa.Table, sel: Selection, hierarchy, ids: pa.ChunkedArray) -> None:
        practice, locality = hierarchy
        local = sel.patients.astype(np.int64)
        self.values.append(shard_values.take(pa.array(sel.rows, pa.int64())))
        self.shard.append(np.full(len(local), i, np.int64))
        self.local.append(local)
        self.practice.append(practice[local].astype(np.int64))
        self.locality.append(locality[local].astype(np.int64))
        self.ids.append(ids.take(pa.array(local)).combine_chunks())
        for key in ("population", "meets_criteria", "eligible"):
            self.counts[key] = self.counts.get(key, 0) + sel.counts[key]
        for key, n in sel.excluded.items():
            self.excluded[key] = self.excluded.get(key, 0) + n


def run_sharded(rule_path, store_path, out, *, as_of=None, params: dict[str, str] | None = None,
                engine: str = "native", policy: ListPolicy, allow_partial: bool = False,
                progress: Callable[[str], None] | None = None):
    """``lists.run.run`` for a sharded store (it hands over when it is given one)."""
    from casefind.lists import run as single

    say = progress or (lambda s: None)
    evaluator = get_engine(engine)
    timings: dict[str, float] = {}
    with single._timed(timings, "compile"):
        say("compiling the rule")
        rule = compile_rule(rule_path, as_of=as_of, params=params)
        say("opening the store")
        store = ShardedStore(store_path)
    exprs = single.list_expressions(rule)
    ranks_in(exprs)  # refuses a rank the two passes cannot give, before anything is evaluated
    final = single._output_folder(Path(out), rule)
    say("checking the dates against the data")
    warnings = [w for w in [single._check_coverage(store.coverage, rule, exprs, allow_partial)] if w]
    with single._timed(timings, "evaluate"):
        exprs = over_shards(store, evaluator, exprs, rule.as_of, rule.population, say)  # ranks: pass 1
        pooled, first = _candidates(store, rule, exprs, evaluator, policy, say)
    with single._timed(timings, "select"):
        say("selecting and ranking the shards' candidates")
        sel, values = _merged_selection(rule, pooled)
    say("validating the list; reasons and evidence")
    with single._timed(timings, "validate"):
        rechecked, evidence, who = _listed_per_shard(store, rule, exprs, evaluator, policy, pooled, sel, say)
    with single._timed(timings, "reasons"):
        run_id = single.new_run_id(rule, store.snapshot_id, params)
        table = list_table(rule, values.take(pa.array(sel.rows, pa.int64())), sel.rank, who, run_id, evidence)
    segments = single.segment_shares(rule, in_store_order(pooled.segments)) if rule.segments else {}
    with single._timed(timings, "write"):
        say("writing")
        facts = single.RunFacts(store_path, store.snapshot_id, store.review_log, store.coverage, engine, policy,
                                params, store.n_shards)
        manifest = single.run_manifest(rule, facts, {**sel.counts, "capped": sel.capped,
                                                     "rechecked_against_reference": rechecked},
                                       sel.excluded, segments, warnings, run_id)
        per_practice = single.write_and_register(Path(out), final, table, manifest, timings, rule,
                                                 practice_codes(first).to_pylist())
    return single.RunResult(run_id, final, rule, sel.counts, sel.excluded, per_practice, segments, timings,
                            manifest, warnings)


def _candidates(store: ShardedStore, rule, exprs, evaluator, policy: ListPolicy, say) -> tuple[_Pooled, Store]:
    """Pass 1: every shard's candidates (see the module's docstring) and the totals."""
    from casefind.lists import run as single

    cap = rule.limit.get("per_practice")
    prefilter = dataclasses.replace(rule, limit={"per_practice": cap} if cap is not None else {})
    pooled, first = _Pooled(), None
    for i, shard in store.shards():
        say(f"evaluating shard {i + 1} of {store.n_shards} ({evaluator.name} engine)")
        first = shard if first is None else first
        same_reference_tables(store, first, shard, i)
        values = single.evaluate_list(evaluator, shard, rule, exprs)
        ids = shard.table("patients").arrow.column("patient_id")
        hierarchy = single._hierarchy(shard)
        sel = select(prefilter, values, *hierarchy, single.policy_masks(shard, rule.as_of, policy), ids)
        pooled.add(i, values, sel, hierarchy, ids)
        if rule.segments:
            keep = ["population", "segment", *([rule.cost] if rule.cost else [])]
            patient = values.column("patient").to_numpy().astype(np.int64)
            part = values.select(keep).append_column("patient_id", ids.take(pa.array(patient)))
            pooled.segments.append((part, shard.table("patients")["practice"][patient]))
    return pooled, first


def _merged_selection(rule, pooled: _Pooled) -> tuple[Selection, pa.Table]:
    """The rule's selection over the pooled candidates (indices 0..C-1 stand for them), with
    the shards' totals in place of the candidates' own counts; and the candidates' values."""
    values = pa.concat_tables(pooled.values)
    n = values.num_rows
    values = values.set_column(values.schema.get_field_index("patient"), "patient", pa.array(np.arange(n)))
    practice = np.concatenate(pooled.practice) if n else np.array([], np.int64)
    locality = np.concatenate(pooled.locality) if n else np.array([], np.int64)
    ids = pa.concat_arrays(pooled.ids) if pooled.ids else pa.array([], pa.string())
    sel = select(rule, values, practice, locality, {}, ids)
    counts = {**pooled.counts, "listed": sel.counts["listed"]}
    return dataclasses.replace(sel, counts=counts, excluded=dict(pooled.excluded),
                               capped=counts["eligible"] - counts["listed"]), values


def _listed_per_shard(store: ShardedStore, rule, exprs, evaluator, policy, pooled: _Pooled, sel: Selection, say):
    """Pass 2: each shard re-checks its listed patients and gives their evidence and ids
    (keyed and ordered by the pooled candidates' indices)."""
    from casefind.lists import run as single

    shard_of = np.concatenate(pooled.shard)[sel.patients] if len(sel.patients) else np.array([], np.int64)
    local_of = np.concatenate(pooled.local)[sel.patients] if len(sel.patients) else np.array([], np.int64)
    candidates = pa.concat_tables(pooled.values)  # "patient": the store index within its shard
    rechecked, evidence = 0, {name: {} for name, _ in rule.include}
    who_parts: dict[str, list] = {}
    order = []
    for i in sorted(set(shard_of.tolist())):
        say(f"checking shard {i + 1}'s listed patients")
        shard = store.open_shard(i)
        mine = np.flatnonzero(shard_of == i)
        mine = mine[np.argsort(local_of[mine], kind="stable")]  # in the shard's store order
        local = local_of[mine]
        values = candidates.take(pa.array(sel.patients[mine]))  # the values pass 1 gave them
        rechecked += validate(shard, rule, exprs, values, Selection(local, sel.rank[mine]),
                              single.policy_masks(shard, rule.as_of, policy), evaluator)
        by_local = dict(zip(local.tolist(), sel.patients[mine].tolist()))
        for name, found in single._evidence(shard, rule, local).items():
            evidence.setdefault(name, {}).update({by_local[p]: events for p, events in found.items()})
        for key, column in single._who(shard, local, shard.table("patients").arrow.column("patient_id")).items():
            who_parts.setdefault(key, []).append(column)
        order.append(mine)
    if not order:
        empty = single._who(store.open_shard(0), np.array([], np.int64),
                            pa.chunked_array([], pa.string()))
        return rechecked, evidence, empty
    back = np.argsort(np.concatenate(order), kind="stable")
    who = {key: pa.concat_arrays([c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in parts])
           .take(pa.array(back)) for key, parts in who_parts.items()}
    return rechecked, evidence, who
