"""``casefind run``: a rule over a store → a validated review list per practice.

The list is validated before anything is written: nobody dead, deregistered or opted out
(per policy), no duplicates, and every listed patient re-checked against the reference
engine (all of them up to 10,000; a random 10,000 beyond). Outputs go to a temporary
folder that is renamed into place, with a manifest that makes the run reproducible.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from casefind import __version__
from casefind.errors import CasefindError, UsageError
from casefind.contract.dates import NULL_DAY, to_day
from casefind.engines import duckdb_sql
from casefind.engines.base import REFERENCE, get_engine
from casefind.lists.evidence import collect
from casefind.lists.reasons import Describer, aggregates_in
from casefind.lists.select import ListPolicy, select
from casefind.outputs import UnsafePathError, safe_child, write_csv
from casefind.plan import make_plan
from casefind.plan.lookback import read_span
from casefind.rules import ir
from casefind.rules.codelists import codelist_manifest
from casefind.rules.compile import CompiledRule, attributes_used, compile_rule, rounded
from casefind.store import Store, listings
from casefind.store.coverage import Coverage, check_span

RECHECK_ALL_UP_TO = 10_000
# Empty on the list; the reviewing clinician fills them in and `casefind review import` reads them.
REVIEW_COLUMNS = ("decision", "decided_on", "reviewer", "note")


class ValidationError(CasefindError):
    """The list failed its checks; nothing was written."""


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
    exprs: dict[str, ir.Node] = dict(rule.features)
    exprs["population"] = rule.population
    for name, node in rule.include:
        exprs[f"include:{name}"] = node
    for name, node in rule.exclude:
        exprs[f"exclude:{name}"] = node
    if rule.require is not None:
        exprs["require"] = rule.require
    if rule.segments:
        exprs["segment"] = ir.Case(tuple((cond, ir.Const(name, ir.T.TEXT)) for name, cond in rule.segments), None)
    for attr in ["age", "sex"] + sorted(attributes_used(rule) - {"age", "sex"}):
        exprs.setdefault(attr, ir.Attr(attr))
    return exprs


def _check_coverage(store: Store, rule: CompiledRule, exprs: dict[str, ir.Node], allow_partial: bool) -> str | None:
    """Refuse an as_of whose windows the store's data does not cover (see store/coverage.py)."""
    first, last = read_span(make_plan(exprs, rule.as_of, rule.population))
    return check_span(Coverage.of(store.manifest), first, last, what=f"as_of {rule.as_of}",
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


def _recheck(store: Store, rule: CompiledRule, exprs, values: pa.Table, listed: np.ndarray,
             engine: str) -> int:
    """Re-evaluate listed patients with the reference engine; raise on any difference from
    ``values`` (what ``engine`` gave)."""
    check = listed
    if len(listed) > RECHECK_ALL_UP_TO:
        check = np.sort(np.random.default_rng(0).choice(listed, RECHECK_ALL_UP_TO, replace=False))
    ref = get_engine(REFERENCE).evaluate(store, exprs, rule.as_of, rule.population, patients=check)
    ref_rows = {r["patient"]: r for r in ref.to_pylist()}
    mine = values.take(pa.array(check)).to_pylist()
    for row in mine:
        other = ref_rows[row["patient"]]
        for k, v in row.items():
            w = other.get(k)
            if isinstance(v, float) and isinstance(w, float):
                ok = abs(v - w) <= 1e-9 * max(1.0, abs(v), abs(w))
            else:
                ok = v == w
            if not ok:
                raise ValidationError(f"engines disagree for patient {row['patient']} on {k}: "
                                      f"{engine} {v!r}, reference {w!r}; nothing was written")
    return len(check)


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:6]}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def run(rule_path: str | Path, store_path: str | Path, out: str | Path, *, as_of=None,
        params: dict[str, str] | None = None, engine: str = "native", policy: ListPolicy = ListPolicy(),
        allow_partial: bool = False, progress: Callable[[str], None] | None = None) -> RunResult:
    """Compile, evaluate, select, validate, describe and write one rule's list: each step
    below has one job; the list is written to a temporary folder and swapped in whole."""
    say = progress or (lambda s: None)
    evaluator = get_engine(engine)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    say("compiling the rule")
    rule = compile_rule(rule_path, as_of=as_of, params=params)
    say("opening the store")
    store = Store.open(store_path)
    timings["compile"] = time.perf_counter() - t
    exprs = rule_expressions(rule)
    out = Path(out)
    final = _output_folder(out, rule)
    say("checking the dates against the data")
    warnings = [w for w in [_check_coverage(store, rule, exprs, allow_partial)] if w]

    t = time.perf_counter()
    say(f"evaluating ({engine} engine)")
    values = evaluator.evaluate(store, exprs, rule.as_of, rule.population)
    timings["evaluate"] = time.perf_counter() - t

    t = time.perf_counter()
    say("selecting and ranking")
    policy_out = policy_masks(store, rule.as_of, policy)
    ids = _patient_ids(store)
    sel = select(rule, values, *_hierarchy(store), policy_out, ids)
    timings["select"] = time.perf_counter() - t

    t = time.perf_counter()
    say("validating the list")
    rechecked = _validate(store, rule, exprs, values, sel, policy_out, evaluator)
    timings["validate"] = time.perf_counter() - t

    t = time.perf_counter()
    say("reasons and evidence")
    run_id = hashlib.sha256(f"{rule.file_sha256}{store.snapshot_id}{rule.as_of}{sorted((params or {}).items())}"
                            f"{time.time_ns()}".encode()).hexdigest()[:12]
    rows = _list_rows(store, rule, values, sel, ids, run_id, _evidence(store, rule, sel.patients))
    timings["reasons"] = time.perf_counter() - t
    segments = _segment_shares(rule, values)

    t = time.perf_counter()
    say("writing")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tmp-{run_id}"
    tmp.mkdir()
    try:
        table = _list_table(rows)
        per_practice = _write_list(tmp, table, rows)
        manifest = {
            "run_id": run_id, "rule": rule.name, "rule_file": str(Path(rule.path).resolve()),
            "rule_sha256": rule.file_sha256, "rule_version": rule.version, "as_of": rule.as_of.isoformat(),
            "parameters": {k: (v.value.isoformat() if isinstance(v.value, dt.date) else v.value)
                           for k, v in rule.parameters.items()},
            "store": str(Path(store_path).resolve()), "store_snapshot": store.snapshot_id,
            "review_log": {k: store.manifest["reviews"][k] for k in ("batches", "rows", "digest")},
            "engine": engine, "versions": _versions(),
            "policy": {"exclude_dead": policy.exclude_dead, "exclude_deregistered": policy.exclude_deregistered,
                       "opt_out_kinds": list(policy.opt_out_kinds)},
            "counts": {**sel.counts, "capped": sel.capped, "rechecked_against_reference": rechecked},
            "excluded": sel.excluded, "per_practice": per_practice, "segments": segments,
            "timings_s": {k: round(v, 4) for k, v in timings.items()},
            "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "coverage": {"store": str(Coverage.of(store.manifest)), "partial": warnings[0] if warnings else None},
            "codelists": codelist_manifest(rule),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        _register(store_path, run_id, rule, store.snapshot_id, table)
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    timings["write"] = time.perf_counter() - t
    return RunResult(run_id, final, rule, sel.counts, sel.excluded, per_practice, segments, timings, manifest,
                     warnings)


def _hierarchy(store: Store) -> tuple[np.ndarray, np.ndarray]:
    """Each stored patient's practice and locality (indices)."""
    practice = store.table("patients")["practice"]
    return practice, store.table("practices")["locality"][practice]


def _patient_ids(store: Store) -> np.ndarray:
    return store.table("patients").arrow.column("patient_id").to_numpy(zero_copy_only=False)


def _validate(store: Store, rule: CompiledRule, exprs, values: pa.Table, sel, policy_out: dict,
              evaluator) -> int:
    """The list's own checks (each patient once, nobody the policy leaves out), then the
    re-check against the reference engine; returns how many patients were re-checked."""
    if len(np.unique(sel.patients)) != len(sel.patients):
        raise ValidationError("a patient appears twice on the list; nothing was written")
    for name, mask in policy_out.items():
        if mask[sel.patients].any():
            raise ValidationError(f"a listed patient is {name}; nothing was written")
    # the reference engine made the list: checking it against itself would prove nothing
    if evaluator.reference or not len(sel.patients):
        return 0
    return _recheck(store, rule, exprs, values, sel.patients, evaluator.name)


def _evidence(store: Store, rule: CompiledRule, patients: np.ndarray) -> dict[str, dict[int, list[str]]]:
    """Per include criterion, up to ``output: evidence:`` events behind it for each listed
    patient (reference SQL over the listed patients' rows only)."""
    if not rule.evidence:
        return {}
    con = duckdb.connect()
    duckdb_sql.register_store(con, store, only=patients)
    return {name: collect(con, aggregates_in(node), patients.tolist(), rule.as_of, rule.evidence)
            for name, node in rule.include}


def _list_rows(store: Store, rule: CompiledRule, values: pa.Table, sel, ids: np.ndarray, run_id: str,
               evidence: dict) -> list[dict]:
    """One record per listed patient: who, rank, the output columns as published, each
    criterion, the reason sentences with their evidence, and empty review columns."""
    practices = store.table("practices")
    practice = store.table("patients")["practice"]
    listed = values.take(pa.array(sel.patients, pa.int64())).to_pylist()
    describer = Describer(rule.features)
    param_values = {k: v.value for k, v in rule.parameters.items()}
    practice_codes = np.asarray(practices.arrow.column("practice_code").to_pylist(), dtype=object)
    locality_codes = np.asarray(practices.arrow.column("locality_code").to_pylist(), dtype=object)
    rows = []
    for rank, row in zip(sel.rank, listed):
        p = row["patient"]
        rec = {"run_id": run_id, "rule": rule.name, "as_of": rule.as_of, "practice": practice_codes[practice[p]],
               "locality": locality_codes[practice[p]], "patient_id": str(ids[p]), "rank": int(rank)}
        if rule.segments:
            rec["segment"] = row["segment"]
        for c in rule.output_columns:  # as published (HFRS 1 place, eFI 2); ranking used the full value
            rec[c] = rounded(row[c], rule.output_round.get(c))
        reasons = []
        for name, _ in rule.include:
            rec[f"include:{name}"] = bool(row[f"include:{name}"])
            if row[f"include:{name}"]:
                reasons.append(describer.sentence(name, dict(rule.include)[name], {**param_values, **row},
                                                  rule.reasons.get(name)))
                if rule.evidence:
                    rec[f"evidence:{name}"] = "; ".join(evidence[name].get(p, []))
        for name, _ in rule.exclude:
            rec[f"exclude:{name}"] = bool(row[f"exclude:{name}"])
        rec["reasons"] = " | ".join(reasons)
        rec.update({c: None for c in REVIEW_COLUMNS})  # for the reviewing clinician to fill in
        rows.append(rec)
    return rows


def _segment_shares(rule: CompiledRule, values: pa.Table) -> dict:
    """Each segment's size and share of the population, and its share of the cost, when the
    rule has segments."""
    segments: dict = {}
    if not rule.segments:
        return segments
    pop = np.asarray(values.column("population").fill_null(False).to_numpy(zero_copy_only=False), bool)
    seg = np.asarray(values.column("segment").to_pylist(), dtype=object)
    cost_name = next((c for c in ("cost_12m", "cost") if c in values.column_names), None)
    cost = values.column(cost_name).fill_null(0).to_numpy(zero_copy_only=False) if cost_name else None
    total = float(cost[pop].sum()) if cost is not None else 0.0
    for name, _ in list(rule.segments) + [(None, None)]:
        m = pop & (seg == name) if name else pop & np.array([s is None for s in seg])
        if name is None and not m.any():
            continue
        segments[name or "(none)"] = {"people": int(m.sum()), "share": float(m.sum() / max(pop.sum(), 1)),
                                      "cost_share": float(cost[m].sum() / total) if cost is not None and total else None}
    return segments


def _write_list(folder: Path, table: pa.Table, rows: list[dict]) -> dict[str, int]:
    """The list as Parquet and CSV, and one CSV per practice; returns rows per practice."""
    pq.write_table(table, folder / "list.parquet")
    write_csv(table, folder / "list.csv")
    (folder / "practices").mkdir()
    per_practice: dict[str, int] = {}
    for code, path in _practice_files(folder / "practices", sorted({r["practice"] for r in rows})).items():
        sub = table.filter(pc.equal(table.column("practice"), code))
        write_csv(sub, path)
        per_practice[code] = sub.num_rows
    return per_practice


def _versions() -> dict[str, str]:
    return {"casefind": __version__, "python": platform.python_version(), "numba": _version("numba"),
            "duckdb": duckdb.__version__, "pyarrow": pa.__version__}


def _register(store_root, run_id: str, rule: CompiledRule, snapshot_id: str, table: pa.Table) -> None:
    """Record who this run listed, so `casefind review import` can check every row against it."""
    if table.num_rows:
        listed = table.select(["practice", "patient_id", "rank"]).cast(
            pa.schema([("practice", pa.string()), ("patient_id", pa.string()), ("rank", pa.int64())]))
    else:
        listed = pa.table({"practice": pa.array([], pa.string()), "patient_id": pa.array([], pa.string()),
                           "rank": pa.array([], pa.int64())})
    listings.record(store_root, run_id=run_id, rule=rule.name, as_of=rule.as_of, snapshot_id=snapshot_id,
                    listed=listed)


def _list_table(rows: list[dict]) -> pa.Table:
    """The list as Arrow; the review columns are text even while every cell is empty."""
    if not rows:
        return pa.table({"run_id": pa.array([], pa.string())})
    table = pa.Table.from_pylist(rows)
    for c in REVIEW_COLUMNS:
        table = table.set_column(table.schema.get_field_index(c), c, table.column(c).cast(pa.string()))
    return table


def _version(pkg: str) -> str:
    from importlib.metadata import version

    try:
        return version(pkg)
    except Exception:  # pragma: no cover
        return "?"
