"""``casefind run``: a rule over a store → a validated review list per practice.

Only what the list needs is evaluated (``list_expressions``: the criteria and the features
it ranks by, shows, names in its reasons or sums as its ``cost:``), and only for the
population's patients (``evaluate_list``: the population first). The list is validated
before anything is written: nobody dead, deregistered or opted out (per policy), no
duplicates, and every listed patient re-checked against the reference engine (recheck.py:
all of them up to 10,000; a random 10,000 beyond), while the evidence is read beside it.
Outputs go to a temporary folder that is renamed into place, with a manifest that makes the
run reproducible.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import resource
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from casefind import __version__
from casefind.contract.dates import NULL_DAY, to_day
from casefind.engines.base import get_engine
from casefind.errors import UsageError
from casefind.lists.practice_file import Cells, ListAbout
from casefind.lists.practice_writer import write_practice_files
from casefind.lists.reasons import Describer, aggregates_in
from casefind.lists.recheck import RECHECK_ALL_UP_TO, ValidationError, validate  # noqa: F401 (public here too)
from casefind.lists.select import ListPolicy, select, selection_expressions
from casefind.lists.table import REVIEW_COLUMNS, list_table  # noqa: F401
from casefind.lists.terms import Terms, rule_terms
from casefind.outputs import UnsafePathError, folder_swapped_in, safe_child, spreadsheet_safe
from casefind.plan import make_plan
from casefind.plan.lookback import read_span
from casefind.rules import ir
from casefind.rules.codelists import codelist_manifest
from casefind.rules.compile import CompiledRule, attributes_used, compile_rule
from casefind.store import Store, listings
from casefind.store.coverage import Coverage, check_span
from casefind.store.sharded import refuse_unsharded
from casefind.store.shards import is_sharded

DEFAULT_POLICY = ListPolicy()


@dataclass
class RunResult:
    run_id: str
    out_dir: Path
    rule: CompiledRule
    counts: dict[str, int]
    excluded: dict[str, int]
    per_practice: dict[str, int]
    segments: dict[str, dict] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def rule_expressions(rule: CompiledRule) -> dict[str, ir.Node]:
    """Everything a rule defines, by name: every feature, the population, each criterion,
    require and the segment (what a dataset shows and ``casefind explain`` prints)."""
    return _expressions(rule, dict(rule.features))


def list_expressions(rule: CompiledRule) -> dict[str, ir.Node]:
    """What a review list needs evaluated, and no more: the population, each criterion,
    require, the segment, and the features the list ranks by, shows, names in its reasons
    or sums as its cost. A feature only other features use is evaluated inside them."""
    describer = Describer(rule.features)
    named = {name for name, _, _ in rule.rank_by} | set(rule.output_columns)
    for name, node in rule.include:
        named |= describer.reads(node, rule.reasons.get(name))
    if rule.segments and rule.cost:
        named.add(rule.cost)
    return _expressions(rule, {k: v for k, v in rule.features.items() if k in named})


def _expressions(rule: CompiledRule, features: dict[str, ir.Node]) -> dict[str, ir.Node]:
    exprs: dict[str, ir.Node] = {**features, **selection_expressions(rule)}
    if rule.segments:
        exprs["segment"] = ir.Case(tuple((cond, ir.Const(name, ir.T.TEXT)) for name, cond in rule.segments), None)
    for attr in ["age", "sex"] + sorted(attributes_used(rule) - {"age", "sex"}):
        exprs.setdefault(attr, ir.Attr(attr))
    return exprs


def evaluate_list(evaluator, store: Store, rule: CompiledRule, exprs: dict[str, ir.Node]) -> pa.Table:
    """The population first, then ``exprs`` for the population's patients only (the engine
    reads only their rows): one row per member of the population, in store order."""
    pop = evaluator.evaluate(store, {"population": rule.population}, rule.as_of, rule.population)
    flag = pop.column("population").fill_null(False).to_numpy(zero_copy_only=False)
    members = pop.column("patient").to_numpy()[np.asarray(flag, bool)].astype(np.int64)
    return evaluator.evaluate(store, exprs, rule.as_of, rule.population, patients=members)


def _check_coverage(store: Store | Coverage, rule: CompiledRule, exprs: dict[str, ir.Node],
                    allow_partial: bool) -> str | None:
    """Refuse an as_of whose windows the store's data does not cover (see store/coverage.py)."""
    first, last = read_span(make_plan(exprs, rule.as_of, rule.population))
    cov = store if isinstance(store, Coverage) else Coverage.of(store.manifest)
    return check_span(cov, first, last, what=f"as_of {rule.as_of}",
                      option="--as-of", allow_partial=allow_partial)


def _output_folder(out: Path, rule: CompiledRule) -> Path:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; give a folder for the run's outputs", option="--out")
    try:
        return safe_child(out, f"{rule.name}-{rule.as_of.isoformat()}")
    except UnsafePathError as e:
        raise ValidationError(f"the rule name {rule.name!r} cannot name an output folder: {e.message}") from None


def _practice_files(folder: Path, codes: list[str]) -> dict[str, Path]:
    """One file per practice, refusing codes that are not plain names or that would share a
    file on a case-insensitive file system."""
    files, seen = {}, {}
    for code in codes:
        try:
            files[code] = safe_child(folder, code, ".csv")
        except UnsafePathError as e:
            raise ValidationError(f"practice code {code!r} cannot name a file: {e.message}; "
                                  "nothing was written", "re-ingest: ingest quarantines such codes") from None
        other = seen.setdefault(code.casefold(), code)
        if other != code:
            raise ValidationError(f"practice codes {other!r} and {code!r} would share one file; nothing was written")
    return files


def policy_masks(store: Store, as_of: dt.date, policy: ListPolicy) -> dict[str, np.ndarray]:
    p = store.table("patients")
    D = to_day(as_of)
    out = {}
    if policy.exclude_dead:
        death = p["death_date"]
        out["died"] = (death != NULL_DAY) & (death <= D)
    if policy.exclude_deregistered:
        end = p["registration_end"]
        out["deregistered"] = ((end != NULL_DAY) & (end < D)) | (p["registration_start"] > D)
    if policy.opt_out_kinds:
        oo = store.table("opt_outs")
        kinds = oo.encodings["kind"]["values"]
        wanted = np.isin(oo["kind"], [kinds.index(k) for k in policy.opt_out_kinds if k in kinds])
        hit = wanted & (oo["date"] <= D)
        mask = np.zeros(store.n_patients, bool)
        mask[oo["patient"][hit]] = True
        out["opted_out"] = mask
    return out


def run(rule_path: str | Path, store_path: str | Path, out: str | Path, *, as_of=None,
        params: dict[str, str] | None = None, engine: str = "native", policy: ListPolicy = DEFAULT_POLICY,
        allow_partial: bool = False, progress: Callable[[str], None] | None = None) -> RunResult:
    """Compile, evaluate, select, validate, describe and write one rule's list: each step
    below has one job; the list is written to a temporary folder and swapped in whole."""
    if is_sharded(store_path):
        from casefind.lists.sharded import run_sharded

        return run_sharded(rule_path, store_path, out, as_of=as_of, params=params, engine=engine, policy=policy,
                           allow_partial=allow_partial, progress=progress)
    refuse_unsharded(store_path)
    say = progress or (lambda s: None)
    evaluator = get_engine(engine)
    timings: dict[str, float] = {}
    with _timed(timings, "compile"):
        say("compiling the rule")
        rule = compile_rule(rule_path, as_of=as_of, params=params)
        say("opening the store")
        store = Store.open(store_path)
    exprs = list_expressions(rule)
    out = Path(out)
    final = _output_folder(out, rule)
    say("checking the dates against the data")
    warnings = [w for w in [_check_coverage(store, rule, exprs, allow_partial)] if w]
    with _timed(timings, "evaluate"):
        say(f"evaluating ({engine} engine)")
        values = evaluate_list(evaluator, store, rule, exprs)
    with _timed(timings, "select"):
        say("selecting and ranking")
        policy_out = policy_masks(store, rule.as_of, policy)
        ids = store.table("patients").arrow.column("patient_id")
        sel = select(rule, values, *_hierarchy(store), policy_out, ids)
    say("validating the list; reasons and evidence")
    rechecked, evidence = _side_by_side(
        timings, validate=lambda: validate(store, rule, exprs, values, sel, policy_out, evaluator),
        evidence=lambda: _evidence(store, rule, sel.patients))
    with _timed(timings, "reasons"):
        run_id = new_run_id(rule, store.snapshot_id, params)
        table = list_table(rule, values.take(pa.array(sel.rows, pa.int64())), sel.rank,
                           _who(store, sel.patients, ids), run_id, evidence)
    segments = segment_shares(rule, values)
    with _timed(timings, "write"):
        say("writing")
        manifest = run_manifest(rule, RunFacts(store_path, store.snapshot_id, store.manifest["reviews"],
                                               Coverage.of(store.manifest), engine, policy, params),
                                {**sel.counts, "capped": sel.capped, "rechecked_against_reference": rechecked},
                                sel.excluded, segments, warnings, run_id)
        practice_codes = store.table("practices").arrow.column("practice_code").cast(pa.string()).to_pylist()
        per_practice = write_and_register(out, final, table, manifest, timings, rule, practice_codes)
    return RunResult(run_id, final, rule, sel.counts, sel.excluded, per_practice, segments, timings, manifest,
                     warnings)


def new_run_id(rule: CompiledRule, snapshot_id: str, params: dict[str, str] | None) -> str:
    return hashlib.sha256(f"{rule.file_sha256}{snapshot_id}{rule.as_of}{sorted((params or {}).items())}"
                          f"{time.time_ns()}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunFacts:
    """What a run's manifest records of where and how it ran (one store or a sharded one)."""
    store_path: str | Path
    snapshot_id: str
    reviews: dict
    coverage: Coverage
    engine: str
    policy: ListPolicy
    params: dict[str, str] | None
    shards: int | None = None


def run_manifest(rule: CompiledRule, facts: RunFacts, counts: dict, excluded: dict, segments: dict,
                 warnings: list[str], run_id: str) -> dict:
    """The run's manifest (timings, rows per practice and the time are added as it is written)."""
    policy = facts.policy
    return {
        "run_id": run_id, "rule": rule.name, "rule_file": str(Path(rule.path).resolve()),
        "rule_sha256": rule.file_sha256, "rule_version": rule.version, "as_of": rule.as_of.isoformat(),
        "parameters": {k: (v.value.isoformat() if isinstance(v.value, dt.date) else v.value)
                       for k, v in rule.parameters.items()},
        "store": str(Path(facts.store_path).resolve()), "store_snapshot": facts.snapshot_id,
        **({"store_shards": facts.shards} if facts.shards else {}),
        "review_log": {k: facts.reviews[k] for k in ("batches", "rows", "digest")},
        "engine": facts.engine, "versions": _versions(),
        "policy": {"exclude_dead": policy.exclude_dead, "exclude_deregistered": policy.exclude_deregistered,
                   "opt_out_kinds": list(policy.opt_out_kinds)},
        "counts": counts, "excluded": excluded, "segments": segments,
        "coverage": {"store": str(facts.coverage), "partial": warnings[0] if warnings else None},
        "codelists": codelist_manifest(rule), "models": rule.models,
    }


def write_and_register(out: Path, final: Path, table: pa.Table, manifest: dict, timings: dict[str, float],
                       rule: CompiledRule, practice_codes: list[str]) -> dict[str, int]:
    """Write the run (swapped in whole) and record who it listed; rows per listed practice."""
    about = ListAbout(rule.name, rule.title, rule.version, rule.as_of, manifest["run_id"])
    per_practice = _write_run(out, final, table, manifest, timings,
                              PracticeFiles(about, sorted(set(practice_codes)), dict(rule.output_round)))
    _register(manifest["store"], manifest["run_id"], rule, manifest["store_snapshot"], table)
    return per_practice


def _side_by_side(timings: dict[str, float], **steps: Callable[[], object]) -> list:
    """Run independent steps at once (the re-check and the evidence: both mostly DuckDB,
    which releases the GIL), each timed; their results in order, or the first failure raised
    once all have finished."""
    def timed(step: str, work: Callable[[], object]):
        with _timed(timings, step):
            return work()

    with ThreadPoolExecutor(max_workers=len(steps)) as pool:
        futures = [pool.submit(timed, step, work) for step, work in steps.items()]
    return [f.result() for f in futures]


@contextmanager
def _timed(timings: dict[str, float], step: str):
    t = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = time.perf_counter() - t


@dataclass(frozen=True)
class PracticeFiles:
    """What the per-practice files need beyond the list: what to say about it, every
    practice of the store (each gets a file, listed or not) and the published rounding."""

    about: ListAbout
    practices: list[str]
    places: dict[str, int]


def _write_run(out: Path, final: Path, table: pa.Table, manifest: dict, timings: dict[str, float],
               files: PracticeFiles) -> dict[str, int]:
    """The list, its per-practice files and the manifest into a temporary folder beside
    ``final``, renamed into place whole; returns rows per practice."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tmp-{manifest['run_id']}"
    with folder_swapped_in(tmp, final):
        per_practice = _write_list(tmp, table, files)
        manifest.update(per_practice=per_practice, timings_s={k: round(v, 4) for k, v in timings.items()},
                        peak_memory_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return per_practice


def _hierarchy(store: Store) -> tuple[np.ndarray, np.ndarray]:
    """Each stored patient's practice and locality (indices)."""
    practice = store.table("patients")["practice"]
    return practice, store.table("practices")["locality"][practice]


def _who(store: Store, patients: np.ndarray, ids: pa.ChunkedArray) -> dict[str, pa.Array]:
    """The listed patients' practice and locality codes and pseudonymised ids, in list order."""
    practices = store.table("practices").arrow
    practice = pa.array(store.table("patients")["practice"][patients])
    return {"practice": practices.column("practice_code").take(practice).cast(pa.string()),
            "locality": practices.column("locality_code").take(practice).cast(pa.string()),
            "patient_id": ids.take(pa.array(patients, pa.int64())).cast(pa.string())}


def _evidence(store: Store, rule: CompiledRule, patients: np.ndarray,
              terms: Terms | None = None) -> dict[str, dict[int, list[str]]]:
    """Per include criterion, up to ``output: evidence:`` events behind it for each listed
    patient (reference SQL over the listed patients' rows only), codes with the terms of
    the rule's codelists (``terms``, read from its files here when not given: a shard's
    task on an executor is given them, as the rule's folder is the driver's)."""
    if not rule.evidence or not len(patients):
        return {name: {} for name, _ in rule.include}
    import duckdb

    from casefind.engines import duckdb_sql
    from casefind.lists.evidence import collect, columns_read

    aggs = {name: aggregates_in(node) for name, node in rule.include}
    con = duckdb.connect()
    read = columns_read([agg for found in aggs.values() for agg in found])
    duckdb_sql.register_store(con, store, only=patients, columns=read)
    return collect(con, aggs, patients.tolist(), rule.as_of, rule.evidence,
                   rule_terms(rule) if terms is None else terms)


def segment_shares(rule: CompiledRule, values: pa.Table) -> dict:
    """Each segment's size and share of the population, and its share of the rule's cost
    (``cost:``, a numeric feature) when it names one."""
    segments: dict = {}
    if not rule.segments:
        return segments
    pop = np.asarray(values.column("population").fill_null(False).to_numpy(zero_copy_only=False), bool)
    seg = np.asarray(values.column("segment").to_pylist(), dtype=object)
    cost = values.column(rule.cost).cast(pa.float64()).fill_null(0.0).to_numpy() if rule.cost else None
    total = float(cost[pop].sum()) if cost is not None else 0.0
    for name, _ in list(rule.segments) + [(None, None)]:
        m = pop & (seg == name) if name else pop & np.equal(seg, None)
        if name is None and not m.any():
            continue
        share = float(cost[m].sum() / total) if cost is not None and total else None
        segments[name or "(none)"] = {"people": int(m.sum()), "share": float(m.sum() / max(pop.sum(), 1)),
                                      "cost_share": share}
    return segments


def _write_list(folder: Path, table: pa.Table, files: PracticeFiles) -> dict[str, int]:
    """The list as Parquet and CSV for analysts, and for every practice of the store its GP's
    files (practices/<CODE>.csv and .xlsx: practice_file.py, xlsx.py), one even for a practice
    nobody is listed for; returns rows per listed practice. The folder is a temporary one
    renamed into place whole."""
    pq.write_table(table, folder / "list.parquet")
    pacsv.write_csv(spreadsheet_safe(table), folder / "list.csv")
    (folder / "practices").mkdir()
    codes = table.column("practice").to_pylist()
    starts = [i for i, c in enumerate(codes) if i == 0 or c != codes[i - 1]]  # the list is in practice order
    cells = Cells.of(table, files.places)
    slices = {codes[i]: cells.slice(i, end) for i, end in zip(starts, starts[1:] + [len(codes)])}
    paths = _practice_files(folder / "practices", sorted(set(files.practices) | set(slices)))
    return write_practice_files(paths, slices, cells.slice(0, 0), files.about)


def _versions() -> dict[str, str]:
    return {"casefind": __version__, "python": platform.python_version(), "numba": _version("numba"),
            "duckdb": _version("duckdb"), "pyarrow": pa.__version__}


def _register(store_root, run_id: str, rule: CompiledRule, snapshot_id: str, table: pa.Table) -> None:
    """Record who this run listed, so `casefind review import` can check every row against it."""
    listed = table.select(["practice", "patient_id", "rank"]).cast(
        pa.schema([("practice", pa.string()), ("patient_id", pa.string()), ("rank", pa.int64())]))
    listings.record(store_root, run_id=run_id, rule=rule.name, as_of=rule.as_of, snapshot_id=snapshot_id,
                    listed=listed, rule_sha256=rule.file_sha256)


def _version(pkg: str) -> str:
    from importlib.metadata import version

    try:
        return version(pkg)
    except Exception:  # pragma: no cover
        return "?"
