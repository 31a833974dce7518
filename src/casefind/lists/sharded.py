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
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from casefind.engines.base import REFERENCE, get_engine
from casefind.engines.pooled import over_shards, ranks_in
from casefind.lists.recheck import validate
from casefind.lists.select import ListPolicy, Selection, select
from casefind.lists.table import list_table
from casefind.lists.terms import Terms, rule_terms
from casefind.rules.compile import compile_rule
from casefind.store import Store
from casefind.store.sharded import ShardedStore, in_store_order, practice_codes


@dataclasses.dataclass
class _ShardCandidates:
    """What pass 1 keeps of one shard: its candidates' values, store indices within the
    shard, practices, localities and ids; its totals; its rows for the segment shares."""
    values: pa.Table
    local: np.ndarray
    practice: np.ndarray
    locality: np.ndarray
    ids: pa.Array
    counts: dict[str, int]
    excluded: dict[str, int]
    segments: tuple[pa.Table, np.ndarray] | None


@dataclasses.dataclass
class _Pooled:
    """Every shard's candidates, together (index ``i`` of each list is shard ``i``)."""
    parts: list[_ShardCandidates]

    def cat(self, field: str) -> np.ndarray:
        arrays = [getattr(p, field) for p in self.parts]
        return np.concatenate(arrays) if arrays else np.array([], np.int64)

    @property
    def shard(self) -> np.ndarray:
        return np.concatenate([np.full(len(p.local), i, np.int64) for i, p in enumerate(self.parts)])

    @property
    def values(self) -> pa.Table:
        return pa.concat_tables([p.values for p in self.parts])

    def total(self, field: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.parts:
            for key, n in getattr(p, field).items():
                out[key] = out.get(key, 0) + n
        return out


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
        pooled_exprs = over_shards(store, evaluator, exprs, rule.as_of, rule.population, say)  # ranks: pass 1
        pooled = _candidates(store, rule, pooled_exprs, evaluator, policy, say)
    with single._timed(timings, "select"):
        say("selecting and ranking the shards' candidates")
        sel, values = _merged_selection(rule, pooled)
    say("validating the list; reasons and evidence")
    with single._timed(timings, "validate"):
        recheck_exprs = _reference_pools(store, rule, exprs, pooled_exprs, evaluator, say)
        rechecked, evidence, who = _listed_per_shard(store, rule, recheck_exprs, evaluator, policy, pooled, sel, say)
    with single._timed(timings, "reasons"):
        run_id = single.new_run_id(rule, store.snapshot_id, params)
        table = list_table(rule, values.take(pa.array(sel.rows, pa.int64())), sel.rank, who, run_id, evidence)
    segments = (single.segment_shares(rule, in_store_order([p.segments for p in pooled.parts]))
                if rule.segments else {})
    with single._timed(timings, "write"):
        say("writing")
        facts = single.RunFacts(store_path, store.snapshot_id, store.review_log, store.coverage, engine, policy,
                                params, store.n_shards)
        manifest = single.run_manifest(rule, facts, {**sel.counts, "capped": sel.capped,
                                                     "rechecked_against_reference": rechecked},
                                       sel.excluded, segments, warnings, run_id)
        per_practice = single.write_and_register(Path(out), final, table, manifest, timings, rule,
                                                 practice_codes(store.open_shard(0)).to_pylist())
    return single.RunResult(run_id, final, rule, sel.counts, sel.excluded, per_practice, segments, timings,
                            manifest, warnings)


def _candidates(store: ShardedStore, rule, exprs, evaluator, policy: ListPolicy, say) -> _Pooled:
    """Pass 1: every shard's candidates (see the module's docstring) and the totals."""
    cap = rule.limit.get("per_practice")
    prefilter = dataclasses.replace(rule, limit={"per_practice": cap} if cap is not None else {})
    task = functools.partial(_shard_candidates, rule, prefilter, exprs, evaluator.name, policy)
    return _Pooled(store.map(task, f"evaluating ({evaluator.name} engine)", say))


def _shard_candidates(rule, prefilter, exprs, engine: str, policy: ListPolicy, shard: Store, i: int):
    """Pass 1 for one shard, wherever the mapper runs it."""
    from casefind.lists import run as single

    values = single.evaluate_list(get_engine(engine), shard, rule, exprs)
    ids = shard.table("patients").arrow.column("patient_id")
    practice, locality = single._hierarchy(shard)
    sel = select(prefilter, values, practice, locality, single.policy_masks(shard, rule.as_of, policy), ids)
    local = sel.patients.astype(np.int64)
    segments = None
    if rule.segments:
        keep = ["population", "segment", *([rule.cost] if rule.cost else [])]
        patient = values.column("patient").to_numpy().astype(np.int64)
        segments = (values.select(keep).append_column("patient_id", ids.take(pa.array(patient))), practice[patient])
    counts = {key: sel.counts[key] for key in ("population", "meets_criteria", "eligible")}
    return _ShardCandidates(values.take(pa.array(sel.rows, pa.int64())), local, practice[local].astype(np.int64),
                            locality[local].astype(np.int64), ids.take(pa.array(local)).combine_chunks(),
                            counts, dict(sel.excluded), segments)


def _merged_selection(rule, pooled: _Pooled) -> tuple[Selection, pa.Table]:
    """The rule's selection over the pooled candidates (indices 0..C-1 stand for them), with
    the shards' totals in place of the candidates' own counts; and the candidates' values."""
    values = pooled.values
    n = values.num_rows
    values = values.set_column(values.schema.get_field_index("patient"), "patient", pa.array(np.arange(n)))
    ids = pa.concat_arrays([p.ids for p in pooled.parts]) if n else pa.array([], pa.string())
    sel = select(rule, values, pooled.cat("practice"), pooled.cat("locality"), {}, ids)
    counts = {**pooled.total("counts"), "listed": sel.counts["listed"]}
    return dataclasses.replace(sel, counts=counts, excluded=pooled.total("excluded"),
                               capped=counts["eligible"] - counts["listed"]), values


@dataclasses.dataclass
class _Listed:
    """One shard's listed patients, for pass 2: their positions in the list (``mine``, in
    the shard's store order), store indices within the shard, ranks and pass-1 values."""
    mine: np.ndarray
    local: np.ndarray
    rank: np.ndarray
    values: pa.Table


def _reference_pools(store: ShardedStore, rule, exprs, pooled_exprs, evaluator, say):
    """What the reference engine re-checks: ranks within pools of *its own* values. Within
    the native engine's pool, a patient whose cost the reference engine adds up one bit
    differently would sit on the other side of a tie (a percentile 1/N apart) and fail the
    re-check; one store's reference engine ranks its own values too."""
    if pooled_exprs is exprs or evaluator.reference:
        return pooled_exprs
    return over_shards(store, get_engine(REFERENCE), exprs, rule.as_of, rule.population,
                       lambda s: say(f"{s} (reference engine, for the re-check)"))


def _listed_per_shard(store: ShardedStore, rule, exprs, evaluator, policy, pooled: _Pooled, sel: Selection, say):
    """Pass 2: each shard re-checks its listed patients and gives their evidence and ids
    (keyed and ordered by the pooled candidates' indices)."""
    shard_of = pooled.shard[sel.patients] if len(sel.patients) else np.array([], np.int64)
    local_of = pooled.cat("local")[sel.patients] if len(sel.patients) else np.array([], np.int64)
    candidates = pooled.values  # "patient": the store index within its shard
    listed = {}
    for i in sorted(set(shard_of.tolist())):
        mine = np.flatnonzero(shard_of == i)
        mine = mine[np.argsort(local_of[mine], kind="stable")]  # in the shard's store order
        listed[i] = _Listed(mine, local_of[mine], sel.rank[mine], candidates.take(pa.array(sel.patients[mine])))
    terms = rule_terms(rule) if rule.evidence else Terms()  # read here: executors need not see the rule's folder
    task = functools.partial(_shard_listed, rule, exprs, evaluator.name, policy, listed, terms)
    done = store.map(task, "checking the listed patients; evidence", say)
    rechecked, evidence = 0, {name: {} for name, _ in rule.include}
    who_parts: dict[str, list] = {}
    for i, (n, found, who) in enumerate(done):
        rechecked += n
        by_list = dict(zip(listed[i].local.tolist(), sel.patients[listed[i].mine].tolist())) if i in listed else {}
        for name, events in found.items():
            evidence.setdefault(name, {}).update({by_list[p]: e for p, e in events.items()})
        for key, column in who.items():
            who_parts.setdefault(key, []).append(column)
    order = [listed[i].mine for i in sorted(listed)] or [np.array([], np.int64)]
    back = np.argsort(np.concatenate(order), kind="stable")
    who = {key: pa.concat_arrays([c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in parts])
           .take(pa.array(back)) for key, parts in who_parts.items()}
    return rechecked, evidence, who


def _shard_listed(rule, exprs, engine: str, policy: ListPolicy, listed: dict[int, _Listed], terms: Terms,
                  shard: Store, i: int):
    """Pass 2 for one shard, wherever the mapper runs it: how many of its listed patients the
    reference engine re-checked, their evidence (keyed by store index, codes with ``terms``,
    the rule's codelists' as the driver read them) and who they are."""
    from casefind.lists import run as single

    ids = shard.table("patients").arrow.column("patient_id")
    if i not in listed:
        return 0, {}, single._who(shard, np.array([], np.int64), ids)
    mine = listed[i]
    policy_out = single.policy_masks(shard, rule.as_of, policy)
    n, evidence = single._side_by_side(  # as one store's run does: both mostly DuckDB, which releases the GIL
        {}, validate=lambda: validate(shard, rule, exprs, mine.values, Selection(mine.local, mine.rank), policy_out,
                                      get_engine(engine)),
        evidence=lambda: single._evidence(shard, rule, mine.local, terms))
    return n, evidence, single._who(shard, mine.local, ids)
