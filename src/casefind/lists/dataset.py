"""``casefind dataset``: one row per patient of a rule's population, with every feature's value.

An analyst's first job (as ehrQL's ``generate-dataset``): the rule's features, its criteria
and the patient attributes a list shows, for everyone in the rule's population, as one
typed Arrow table to read in pandas, Polars, DuckDB or R::

    from casefind.lists.dataset import dataset, metadata

    table = dataset("rules/frail.yml", "pop/")                  # a pyarrow.Table
    df = table.to_pandas()                                      # pandas
    df = polars.from_arrow(table)                               # Polars
    metadata(table)["opt_out"]                                  # what was excluded, and why

Columns, in order: ``patient_id`` (pseudonymised, as on the review lists), ``as_of`` (only
when several dates are given: then the table is in long form, one block of rows per date in
the order given), ``practice`` and ``locality`` (codes of the patient's registered practice
in the store's snapshot), then the attributes a list shows (``age``, ``sex``, any other
named in the rule's output columns), ``segment`` (rules with segments), every feature in the
rule's order, each criterion (``include:NAME``, ``exclude:NAME``, true or false) and
``eligible``: whether ``casefind run`` would list the patient before its caps (meets the
criteria, not excluded by the rule, and not dead, deregistered or with a type 1 opt-out at
as_of: the run manifest's ``eligible`` count). ``columns=`` picks some of these instead
(features, attributes, criteria, ``segment``, ``eligible``; the key columns always come).

Types follow the rule's: true/false as ``bool``, whole numbers ``int64``, decimals
``float64``, dates ``date32``, text ``string``; a missing value is null. A feature whose
values are spells (``last(activity.spell_id, ...)``) shows the source's ``spell_id`` (text),
not the number the store gave the spell.

Who is in: the rule's population decides; nobody else is removed for being dead or
deregistered (write ``registered and alive`` in the population for that). Who is out: the
opt-out policy (see ``OPT_OUT_POLICIES``). This is secondary use (planning and research),
to which the national data opt-out applies, so by default patients with a type 1 or a
national data opt-out are excluded, unlike a review list (direct care), which excludes type
1 objections only. An opt-out the store records excludes the patient from every as_of
block, whatever its date: it governs every use of the data made after it, and a dataset is
used now, even one for an earlier as_of.

Provenance (rule name, version and file hash, parameters, store snapshot, as_of dates,
engine, casefind version, the opt-out policy and how many it excluded) is in the table's
schema metadata under ``casefind`` (JSON; ``metadata(table)`` decodes it), which Parquet and
Arrow files keep; a CSV gets it beside it, in ``<file>.meta.json``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from casefind import __version__
from casefind.engines.base import get_engine
from casefind.engines.pooled import over_shards, ranks_in
from casefind.errors import CasefindError, UsageError
from casefind.lists.run import policy_masks, rule_expressions
from casefind.lists.select import ListPolicy
from casefind.outputs import tmp_path_for, write_atomic, write_csv
from casefind.plan import make_plan
from casefind.plan.lookback import read_span
from casefind.rules import ir
from casefind.rules.compile import CompiledRule, check_as_of, compile_rule, rounded
from casefind.rules.errors import did_you_mean
from casefind.store import Store
from casefind.store.coverage import Coverage, check_span
from casefind.store.sharded import ShardedStore, in_store_order, open_any

# opt-out policy -> the opt-out kinds it excludes (at as_of), and what it is for
OPT_OUT_POLICIES: dict[str, tuple[str, ...]] = {
    "exclude-ndo-and-type1": ("type1", "ndo"),
    "exclude-type1": ("type1",),
    "none": (),
}
DEFAULT_OPT_OUT = "exclude-ndo-and-type1"
OPT_OUT_STATEMENTS = {
    "exclude-ndo-and-type1": "secondary use (planning and research): patients with a type 1 opt-out or a "
                             "national data opt-out recorded in the store are excluded, whatever its date "
                             "(an opt-out governs every use made after it, and this use is now)",
    "exclude-type1": "patients with a type 1 opt-out recorded in the store are excluded; national data opt-outs "
                     "are kept, which is right only for direct care or where the national data opt-out does "
                     "not apply",
    "none": "no opt-out is applied: only for direct care, or with a legal basis that sets opt-outs aside",
}
POPULATION_STATEMENT = ("the rule's population decides who is in: nobody else is removed for being dead or "
                        "deregistered (a population of 'registered and alive ...' does that)")
FORMATS = {".parquet": "parquet", ".csv": "csv", ".arrow": "arrow", ".feather": "arrow"}
KEY_COLUMNS = ("patient_id", "practice", "locality")
ELIGIBLE = "eligible"
METADATA_KEY = "casefind"
_ARROW_TYPE = {ir.T.INT: pa.int64(), ir.T.FLOAT: pa.float64(), ir.T.DATE: pa.date32(), ir.T.BOOL: pa.bool_(),
               ir.T.TEXT: pa.string(), ir.T.CODE: pa.string()}


def _published(column, places: int | None):
    """A feature as its definition publishes it (the rule's output: round:), e.g. HFRS to one
    place: exactly as ``rounded`` rounds each value (half away from zero on its decimal
    value), vectorised. Away from a tie the scaled value's nearest whole number is the
    decimal rounding's, and k / 10^places is the double nearest the rounded decimal, as
    ``rounded`` returns; the few values near a tie are rounded by ``rounded`` itself."""
    if places is None or not pa.types.is_floating(column.type):
        return column
    v = np.asarray(column.fill_null(np.nan).to_numpy(zero_copy_only=False), np.float64)
    scale = 10.0 ** places
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.abs(v) * scale
        out = np.copysign(np.floor(scaled + 0.5), v) / scale
        frac = scaled - np.floor(scaled)
        exact = ~np.isfinite(scaled) | (np.abs(v) >= 2.0 ** 53) | (np.abs(frac - 0.5) < 1e-6)
    for i in np.flatnonzero(exact):
        out[i] = rounded(float(v[i]), places) if np.isfinite(v[i]) else v[i]
    mask = np.asarray(column.is_null().to_numpy(zero_copy_only=False), bool)
    return pa.array(out, column.type, mask=mask if mask.any() else None)


def dataset(rule_path: str | Path, store_root: str | Path | Store, *, as_of=None, columns: Iterable[str] | None = None,
            params: dict[str, str] | None = None, engine: str = "native", opt_out: str = DEFAULT_OPT_OUT,
            allow_partial: bool = False, progress: Callable[[str], None] | None = None) -> pa.Table:
    """One row per patient of the rule's population (per as_of), every feature's value.

    ``as_of``: None (the rule's), one date (``"2026-10-31"`` or a ``datetime.date``), or a
    list of dates: then the table is in long form with an ``as_of`` column, one block per
    date, all evaluated in one pass of the engine. ``columns``: only these (feature,
    attribute or criterion names, ``segment``, ``eligible``); the key columns always come.
    ``store_root``: a store's folder, or a ``Store`` already open (repeated calls then
    reuse its memory maps). ``params`` overrides rule parameters (as ``--param``).
    ``engine``: a name in ``casefind.engines.base.ENGINES`` (``native``, or ``duckdb``: the
    reference engine; same values). ``opt_out``: a key of ``OPT_OUT_POLICIES``. A date the
    store's data does not cover is refused (a ``CoverageError``), and a partly covered one
    unless ``allow_partial``.

    Returns a ``pyarrow.Table`` (``.to_pandas()``, ``polars.from_arrow(...)``) whose schema
    metadata ``casefind`` (``metadata(table)``) records how it was made.
    """
    say = progress or (lambda s: None)
    get_engine(engine)  # an unknown engine is refused before anything is compiled
    _check_opt_out(opt_out)
    dates = _dates(as_of)
    say("compiling the rule")
    rule = compile_rule(rule_path, as_of=dates[0] if dates else None, params=params)
    dates = dates or [rule.as_of]
    menu = _menu(rule)
    wanted = _columns(columns, menu, rule)
    exprs = _needed(rule, menu, wanted, everything=columns is None)
    say("opening the store")
    store = store_root if isinstance(store_root, Store) else open_any(store_root)
    say("checking the dates against the data")
    cov = store.coverage if isinstance(store, ShardedStore) else Coverage.of(store.manifest)
    warnings = _coverage_warnings(cov, exprs, dates, rule, allow_partial)
    job = _Job(rule, exprs, dates, menu, wanted, engine, OPT_OUT_POLICIES[opt_out], len(dates) > 1)
    if isinstance(store, ShardedStore):
        parts, counts = _sharded_rows(store, job, say)
        about = _About(store.root, store.snapshot_id, store.review_log)
    else:
        say(f"evaluating ({engine} engine{f', {len(dates)} dates in one pass' if len(dates) > 1 else ''})")
        parts, counts, _ = _rows(store, job)
        about = _About(store.root, store.snapshot_id, store.manifest["reviews"])
    table = pa.concat_tables(parts) if len(dates) > 1 else parts[0]
    meta = _provenance(rule, about, dates, engine, opt_out, counts, table, {"store": str(cov), "partial": warnings})
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta)})


@dataclass(frozen=True)
class _Job:
    """What every shard evaluates: the same rule, expressions, dates and columns."""
    rule: CompiledRule
    exprs: dict[str, ir.Node]
    dates: list[dt.date]
    menu: dict[str, ir.Node]
    wanted: list[str]
    engine: str
    opt_out_kinds: tuple[str, ...]
    long_form: bool  # an as_of column: several dates asked for


@dataclass(frozen=True)
class _About:
    """The store a dataset came from, for its provenance."""
    root: Path
    snapshot_id: str
    reviews: dict


def _rows(store: Store, job: _Job) -> tuple[list[pa.Table], list[dict], list[np.ndarray]]:
    """One store's rows per date (in store order), their counts, and each row's practice index."""
    rule, dates = job.rule, job.dates
    blocks = _evaluate(store, job.exprs, dates, rule.population, job.engine)
    keys = _PatientKeys.of(store)
    opt_outs = _opt_outs(store, job.opt_out_kinds)
    out = np.zeros(store.n_patients, bool)
    for mask in opt_outs.values():
        out |= mask
    several = job.long_form
    parts, counts, practices = [], [], []
    for d, values in zip(dates, blocks):
        pop = _flag(values, "population")
        rows = np.flatnonzero(pop & ~out)
        take = pa.array(rows, pa.int64())
        cols = keys.columns(rows, take, d if several else None)
        for name in job.wanted:
            if name == ELIGIBLE:
                cols[name] = pa.array(_eligible(store, rule, values, pop, d)[rows])
            elif spell_valued(job.menu[name]):
                cols[name] = _spell_ids(store, values.column(name).take(take))
            else:
                cols[name] = _published(values.column(name).take(take).cast(_ARROW_TYPE[job.menu[name].type]),
                                        rule.output_round.get(name))
        parts.append(pa.table(cols))
        practices.append(keys.practice[rows])
        counts.append({"as_of": d.isoformat(), "population": int(pop.sum()),
                       "excluded_opt_out": {kind: int((pop & mask).sum()) for kind, mask in opt_outs.items()},
                       "excluded_opt_out_total": int((pop & out).sum()), "rows": len(rows)})
    return parts, counts, practices


def _sharded_rows(store: ShardedStore, job: _Job, say) -> tuple[list[pa.Table], list[dict]]:
    """Every shard's rows, a shard at a time, merged exactly: per date, the shards' rows
    concatenated and put in one store's order (practice, then patient id), counts added up.
    A patient's values depend only on their own rows, except ranks within the population:
    those are taken within pools gathered from every shard first (engines/pooled.py), a
    date at a time."""
    if not ranks_in(job.exprs):
        return _merged_rows(store, job, say)
    parts, counts = [], []
    evaluator = get_engine(job.engine)
    for d in job.dates:
        exprs = over_shards(store, evaluator, job.exprs, d, job.rule.population, say)
        p, c = _merged_rows(store, dataclasses.replace(job, exprs=exprs, dates=[d]), say)
        parts += p
        counts += c
    return parts, counts


def _merged_rows(store: ShardedStore, job: _Job, say) -> tuple[list[pa.Table], list[dict]]:
    done = store.map(functools.partial(_shard_rows, job), f"evaluating ({job.engine} engine)", say)
    per_date: list[list[tuple[pa.Table, np.ndarray]]] = [[] for _ in job.dates]
    totals: list[dict] | None = None
    for parts, counts, practices in done:
        for slot, part, practice in zip(per_date, parts, practices):
            slot.append((part, practice))
        totals = counts if totals is None else [_added(a, b) for a, b in zip(totals, counts)]
    return [in_store_order(pieces) for pieces in per_date], totals or []


def _shard_rows(job: _Job, shard: Store, i: int):
    """One shard's part, wherever the mapper runs it."""
    return _rows(shard, job)


def _added(a: dict, b: dict) -> dict:
    """Two shards' counts for one date, added up."""
    kinds = {k: a["excluded_opt_out"].get(k, 0) + b["excluded_opt_out"].get(k, 0)
             for k in dict.fromkeys([*a["excluded_opt_out"], *b["excluded_opt_out"]])}
    return {"as_of": a["as_of"], "population": a["population"] + b["population"], "excluded_opt_out": kinds,
            "excluded_opt_out_total": a["excluded_opt_out_total"] + b["excluded_opt_out_total"],
            "rows": a["rows"] + b["rows"]}


def spell_valued(node: ir.Node) -> bool:
    """Whether a feature's values are spells (``last(activity.spell_id, ...)``): numbers that
    a store gives its spells, which mean nothing outside that store (a shard numbers its own),
    so a dataset shows the source's spell id instead."""
    return (isinstance(node, (ir.First, ir.Last, ir.Min, ir.Max)) and isinstance(node.value, ir.Column)
            and node.value.column == "spell_id")


def _spell_ids(store: Store, numbers) -> pa.Array:
    """Spell numbers as the source's spell ids (text); missing, or no spell, as null."""
    v = numbers.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    return pa.array(store.spell_ids(v), pa.string())


def _check_opt_out(opt_out: str) -> None:
    """Refuse an opt-out policy that is not one of ``OPT_OUT_POLICIES``, naming the nearest."""
    if opt_out not in OPT_OUT_POLICIES:
        hint = did_you_mean(str(opt_out), OPT_OUT_POLICIES)
        raise UsageError(f"no opt-out policy {opt_out!r}; choose one of {', '.join(OPT_OUT_POLICIES)}",
                         hint, option="--opt-out")


def _coverage_warnings(cov: Coverage, exprs, dates: list[dt.date], rule: CompiledRule,
                       allow_partial: bool) -> list[str]:
    """Refuse a date whose look-back the store's data does not cover; the warnings for
    those partly covered (allowed with ``allow_partial``)."""
    warnings = []
    for d in dates:
        first, last = read_span(make_plan(exprs, d, rule.population))
        w = check_span(cov, first, last, what=f"as_of {d}", option="--as-of", allow_partial=allow_partial)
        if w:
            warnings.append(w)
    return warnings


class _PatientKeys:
    """The key columns of every stored patient: pseudonymised id, practice and locality code."""

    def __init__(self, ids: pa.Array, practice: np.ndarray, practice_codes: pa.Array, locality_codes: pa.Array):
        self.ids, self.practice = ids, practice
        self.practice_codes, self.locality_codes = practice_codes, locality_codes

    @classmethod
    def of(cls, store: Store) -> _PatientKeys:
        patients, practices = store.table("patients"), store.table("practices")
        return cls(patients.arrow.column("patient_id").cast(pa.string()), np.asarray(patients["practice"]),
                   practices.arrow.column("practice_code").cast(pa.string()),
                   practices.arrow.column("locality_code").cast(pa.string()))

    def columns(self, rows: np.ndarray, take: pa.Array,
                as_of: dt.date | None) -> dict[str, pa.Array | pa.ChunkedArray]:
        """The key columns of these patients (store indices ``rows``, as Arrow ``take``), with
        ``as_of`` when one is given."""
        where = pa.array(self.practice[rows], pa.int64())
        cols: dict[str, pa.Array | pa.ChunkedArray] = {"patient_id": self.ids.take(take)}
        if as_of is not None:
            cols["as_of"] = pa.array(np.full(len(rows), (as_of - dt.date(1970, 1, 1)).days, np.int32),
                                     pa.int32()).cast(pa.date32())
        cols["practice"] = self.practice_codes.take(where)
        cols["locality"] = self.locality_codes.take(where)
        return cols


def _provenance(rule: CompiledRule, store: _About, dates: list[dt.date], engine: str, opt_out: str,
                counts: list[dict], table: pa.Table, coverage: dict) -> dict:
    """How the dataset was made: the table's ``casefind`` metadata."""
    return {
        "casefind_version": __version__,
        "rule": rule.name, "title": rule.title, "rule_version": rule.version,
        "rule_file": str(Path(rule.path).resolve()), "rule_sha256": rule.file_sha256,
        "parameters": {k: (v.value.isoformat() if isinstance(v.value, dt.date) else v.value)
                       for k, v in rule.parameters.items()},
        "store": str(Path(store.root).resolve()), "store_snapshot": store.snapshot_id,
        "review_log": {k: store.reviews[k] for k in ("batches", "rows", "digest")},
        "as_of": [d.isoformat() for d in dates], "engine": engine,
        "opt_out": {"policy": opt_out, "excluded_kinds": list(OPT_OUT_POLICIES[opt_out]),
                    "statement": OPT_OUT_STATEMENTS[opt_out]},
        "population": POPULATION_STATEMENT,
        "counts": counts,
        "columns": [{"name": f.name, "type": str(f.type)} for f in table.schema],
        "coverage": coverage,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def metadata(table_or_path: pa.Table | pa.Schema | str | Path) -> dict:
    """The ``casefind`` metadata of a dataset: a table, its schema, or a file written by
    ``write`` (Parquet, Arrow/Feather, or a CSV's ``.meta.json`` sidecar)."""
    if isinstance(table_or_path, (str, Path)):
        path = Path(table_or_path)
        kind = FORMATS.get(path.suffix.lower())
        if kind == "csv":
            return json.loads(_sidecar(path).read_text())
        if kind == "parquet":
            schema = pq.read_schema(path)
        else:
            with pa.memory_map(str(path)) as f:
                schema = pa.ipc.open_file(f).schema
    else:
        schema = table_or_path.schema if isinstance(table_or_path, pa.Table) else table_or_path
    raw = (schema.metadata or {}).get(METADATA_KEY.encode())
    if raw is None:
        raise CasefindError("no casefind metadata: not a dataset casefind wrote")
    return json.loads(raw)


def check_output(path: str | Path) -> Path:
    """The output file's format from its extension; its folder must exist. UsageError otherwise."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        what = f"its extension {path.suffix!r}" if path.suffix else "a name without an extension"
        raise UsageError(f"{path}: cannot tell the format from {what}",
                         f"end the file name in {', '.join(FORMATS)}", option="--output")
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name", option="--output")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{parent} is a file, not a folder", option="--output")
    if not parent.is_dir():
        raise UsageError(f"the folder {parent} does not exist", f"create it first (mkdir -p {parent})",
                         option="--output")
    return path


def write(table: pa.Table, path: str | Path) -> Path:
    """Write a dataset by the file's extension: ``.parquet``, ``.csv`` (spreadsheet-safe,
    with ``<file>.meta.json`` beside it), ``.arrow`` or ``.feather`` (Arrow IPC file).
    Written under a temporary name and renamed: a failure leaves an earlier file as it was."""
    path = check_output(path)
    kind = FORMATS[path.suffix.lower()]
    if kind == "parquet":
        return write_atomic(path, lambda tmp: pq.write_table(table, tmp))
    if kind == "arrow":
        def arrow(tmp):
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
        return write_atomic(path, arrow)
    sidecar = _sidecar(path)
    meta_tmp = tmp_path_for(sidecar)
    try:
        meta_tmp.write_text(json.dumps(metadata(table), indent=2))
        write_csv(table.replace_schema_metadata(None), path)
        os.replace(meta_tmp, sidecar)
    finally:
        meta_tmp.unlink(missing_ok=True)
    return path


# --- helpers ----------------------------------------------------------------------------------

def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def _dates(as_of) -> list[dt.date]:
    """The evaluation dates asked for, checked, in order, each once; [] for the rule's."""
    if as_of is None:
        return []
    given = [as_of] if isinstance(as_of, (str, dt.date)) else list(as_of)
    out: list[dt.date] = []
    for g in given:
        if isinstance(g, dt.datetime):
            g = g.date()
        d = check_as_of(g, None, "--as-of")
        if d not in out:
            out.append(d)
    return out


def _menu(rule: CompiledRule) -> dict[str, ir.Node]:
    """Every column a dataset can have besides the keys, in the default order (``eligible``
    is derived, so it maps to the population here)."""
    menu: dict[str, ir.Node] = {}
    exprs = rule_expressions(rule)
    for name, node in exprs.items():  # the attributes a run's list shows (age, sex, ...)
        if isinstance(node, ir.Attr) and node.name == name and name not in rule.features and name not in KEY_COLUMNS:
            menu[name] = node
    if "segment" in exprs:
        menu["segment"] = exprs["segment"]
    for name, node in rule.features.items():
        if name in KEY_COLUMNS or name in ("as_of", ELIGIBLE):
            raise CasefindError(f"rule {rule.name}: a feature called {name!r} would share its name with a column "
                                "every dataset has", "rename the feature")
        menu[name] = node
    for name, _ in rule.include:
        menu[f"include:{name}"] = exprs[f"include:{name}"]
    for name, _ in rule.exclude:
        menu[f"exclude:{name}"] = exprs[f"exclude:{name}"]
    menu[ELIGIBLE] = rule.population
    return menu


def _columns(columns, menu: dict[str, ir.Node], rule: CompiledRule) -> list[str]:
    if columns is None:
        return list(menu)
    if isinstance(columns, str):
        columns = columns.split(",")
    names = [c.strip() for c in columns if c and c.strip()]
    if not names:
        raise UsageError("give at least one column name (a,b,c)", option="--columns")
    available = {**menu, **{a: ir.Attr(a) for a in ir.PATIENT_ATTRIBUTES if a not in menu and a not in KEY_COLUMNS}}
    out = []
    for name in names:
        if name in KEY_COLUMNS or name == "as_of":
            continue  # always there
        if name not in available:
            hint = did_you_mean(name, list(available) + list(KEY_COLUMNS))
            raise UsageError(f"rule {rule.name} has no column {name!r}", hint or
                             f"columns are its features ({', '.join(list(rule.features)[:8])}"
                             f"{', ...' if len(rule.features) > 8 else ''}), patient attributes, "
                             "include:/exclude: criteria, segment and eligible", option="--columns")
        if name not in out:
            out.append(name)
    menu.update({n: available[n] for n in out if n not in menu})
    return out


def _needed(rule: CompiledRule, menu: dict[str, ir.Node], wanted: list[str], everything: bool) -> dict[str, ir.Node]:
    """The expressions to evaluate: the wanted columns, the population, and what ``eligible``
    needs (require and the exclusions). Named as ``casefind run`` names them, so the whole
    dataset is the very evaluation a run makes."""
    full = rule_expressions(rule)
    if everything:
        return full
    exprs = {n: menu[n] for n in wanted if n != ELIGIBLE}
    exprs["population"] = rule.population
    if ELIGIBLE in wanted:
        for k, node in full.items():
            if k == "require" or k.startswith("exclude:"):
                exprs.setdefault(k, node)
    return exprs


def _evaluate(store: Store, exprs: dict[str, ir.Node], dates: list[dt.date], population: ir.Node,
              engine: str) -> list[pa.Table]:
    """One table of values per date. Several dates are one engine call: each expression at
    each date (``x at date``), so every table is scanned once for all of them."""
    evaluate = get_engine(engine).evaluate
    if len(dates) == 1:
        return [evaluate(store, exprs, dates[0], population)]
    wide = {f"{name}@{i}": ir.At(node, ir.Const(d, ir.T.DATE))
            for i, d in enumerate(dates) for name, node in exprs.items()}
    values = evaluate(store, wide, max(dates), population)
    return [pa.table({name: values.column(f"{name}@{i}") for name in exprs}) for i in range(len(dates))]


def _flag(values: pa.Table, name: str) -> np.ndarray:
    return np.asarray(values.column(name).fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _opt_outs(store: Store, kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per opt-out kind, who has one recorded in the store, whatever its date: an opt-out
    governs every use of the data made after it, and a dataset is used now, even one for an
    earlier as_of. (The store holds each patient's current opt-outs: a withdrawn one is not
    in the extract.)"""
    oo = store.table("opt_outs")
    known = oo.encodings["kind"]["values"]
    out = {}
    for kind in kinds:
        mask = np.zeros(store.n_patients, bool)
        if kind in known:
            mask[oo["patient"][oo["kind"] == known.index(kind)]] = True
        out[kind] = mask
    return out


def _eligible(store: Store, rule: CompiledRule, values: pa.Table, pop: np.ndarray, d: dt.date) -> np.ndarray:
    """Whether ``casefind run`` would list the patient before its caps (lists/select.py)."""
    keep = pop & _flag(values, "require") if rule.include else pop.copy()
    for name, _ in rule.exclude:
        keep &= ~_flag(values, f"exclude:{name}")
    for mask in policy_masks(store, d, ListPolicy()).values():
        keep &= ~mask
    return keep
