"""Ingest: source tables → validated, encoded, patient-sorted store snapshot (and, apart,
the restricted identities store). Builds beside the live store and swaps at the end."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind import __version__
from casefind.contract import CONTRACT_VERSION, INPUT_EVENT_TABLES, TABLES, Column, Table
from casefind.contract.dates import NULL_DAY, from_day
from casefind.contract.schema import CODE_SYSTEMS, EXTRA_PREFIX
from casefind.errors import EXIT_STRICT
from casefind.ingest import encode, spells
from casefind.ingest.normalise import NormalTable, normalise, unify_patient_ids
from casefind.ingest.sources import IngestError, read_source
from casefind.ingest.validate import (SPELL_TABLE, PatientContext, SpellContext, quarantine_rows, spell_context,
                                      validate)
from casefind.store.identities import IdentitiesCommit, check_apart, default_root
from casefind.store.writer import SnapshotBuilder, check_store_path
from casefind_native import gather, group_by_patient


class StrictModeError(IngestError):
    """--strict and at least one row was quarantined; the store was not changed."""

    exit_code = EXIT_STRICT

    def __init__(self, summary: "IngestSummary"):
        self.summary = summary
        n = summary.quarantined_total
        super().__init__(f"--strict: {n} row(s) broke the contract; the store was left unchanged")


@dataclass
class TableSummary:
    read: int
    stored: int
    quarantined: dict[str, int]


@dataclass
class IngestSummary:
    store: Path
    identities_store: Path | None
    snapshot_id: str | None
    tables: dict[str, TableSummary] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    missing_columns: dict[str, list[str]] = field(default_factory=dict)
    extras: dict[str, list[str]] = field(default_factory=dict)  # kept, as extra__<name>
    identifier_columns: dict[str, list[str]] = field(default_factory=dict)  # removed, never stored
    dropped_columns: dict[str, dict[str, str]] = field(default_factory=dict)  # removed: name -> why
    seconds: float = 0.0

    @property
    def quarantined_total(self) -> int:
        return sum(sum(t.quarantined.values()) for t in self.tables.values())


Progress = Callable[[str], None]
SPELL_DICTIONARY = "spell"  # one store-wide dictionary: entry 0 is null, entry n the source id of spell n
SPELL_ENCODING = {"kind": "spell", "dictionary": SPELL_DICTIONARY, "null": 0}


def _good(arr: pa.Array, keep: np.ndarray) -> pa.Array:
    return arr if keep.all() else arr.filter(pa.array(keep))


DOTLESS_SYSTEMS = ("icd10", "opcs4")  # stored without the dot: I50.9 -> I509, K40.1 -> K401


def _without_dot(codes: pa.Array, dotless: np.ndarray | None = None) -> pa.Array:
    stripped = pc.replace_substring(codes, ".", "")
    if dotless is None:
        return stripped
    return pc.if_else(pa.array(dotless), stripped, codes)


class _Encoder:
    """Dictionary builders shared across tables (codes per code system, text per column,
    and the one spell dictionary: the source spell ids of the stored activity rows)."""

    def __init__(self):
        self.code_parts: dict[str, list[pa.Array]] = {s: [] for s in CODE_SYSTEMS}
        self.code_dicts: dict[str, pa.Array] = {}
        self.spells = SpellContext.empty()

    def collect_codes(self, system: str, codes: pa.Array) -> None:
        self.code_parts[system].append(encode.sorted_unique(codes))

    def finish_codes(self) -> None:
        for s, parts in self.code_parts.items():
            if parts:
                self.code_dicts[s] = encode.sorted_unique(pa.chunked_array(parts, pa.string()))

    def codes(self, systems: list[str], system_idx: np.ndarray | None, codes: pa.Array) -> np.ndarray:
        out = np.full(len(codes), -1, dtype=np.int32)
        if system_idx is None:  # one fixed system
            d = self.code_dicts.get(systems[0])
            return encode.lookup(codes, d) if d is not None else out
        for i, s in enumerate(systems):
            m = system_idx == i
            if m.any() and s in self.code_dicts:
                out[m] = encode.lookup(codes.filter(pa.array(m)), self.code_dicts[s])
        return out


def _code_columns(spec: Table, cols: dict[str, pa.Array]):
    """Yield (column, systems, system index array or None, codes) for each code column."""
    for c in spec.columns:
        if c.kind != "code":
            continue
        codes = cols[c.name]
        if c.code_system in cols:  # the system is named by another column
            values = spec.column(c.code_system).values
            idx = encode.enum(cols[c.code_system], values)
            dotless = [values.index(x) for x in DOTLESS_SYSTEMS if x in values]
            if dotless:
                codes = _without_dot(codes, np.isin(idx, dotless))
            yield c.name, list(values), idx, codes
        else:
            if c.code_system in DOTLESS_SYSTEMS:
                codes = _without_dot(codes)
            yield c.name, [c.code_system], None, codes


def _encode_columns(spec: Table, cols: dict[str, pa.Array], encoder: _Encoder,
                    dictionaries: dict[str, pa.Array], code_parts: list | None = None,
                    ) -> tuple[dict[str, np.ndarray], dict]:
    """Encode the (already filtered) source columns of one table; returns arrays and
    the encodings recorded in the manifest. Derived columns are computed later, on the
    sorted rows (``_derive``)."""
    out, encodings = {}, {}
    parts = code_parts if code_parts is not None else _code_columns(spec, cols)
    code_cols = {name: (systems, idx, codes) for name, systems, idx, codes in parts}
    for c in spec.source_columns:
        if c.kind == "patient_id":
            continue
        a = cols[c.name]
        if c.kind == "date":
            out[c.name] = encode.days(a)
            encodings[c.name] = {"kind": "date", "null": int(NULL_DAY)}
        elif c.kind == "enum":
            out[c.name] = encode.enum(a, c.values)
            encodings[c.name] = {"kind": "enum", "values": list(c.values), "null": -1}
        elif c.kind == "code":
            systems, idx, codes = code_cols[c.name]
            out[c.name] = encoder.codes(systems, idx, codes)
            encodings[c.name] = {"kind": "code", "dictionaries": {s: f"code.{s}" for s in systems},
                                 "system_column": c.code_system if c.code_system in cols else None,
                                 "null": -1}
        elif c.kind == "text":
            idx, dictionary = encode.text(a)
            name = f"text.{spec.name}.{c.name}"
            dictionaries[name] = dictionary
            out[c.name] = idx
            encodings[c.name] = {"kind": "text", "dictionary": name, "null": -1}
        elif c.kind == "spell":
            out[c.name] = encoder.spells.numbers(a)
            encodings[c.name] = SPELL_ENCODING
        elif c.kind == "int":
            v = encode.numbers(a)
            out[c.name] = np.where(np.isnan(v), 0, v).astype(_int_type(c))
            encodings[c.name] = {"kind": "int", "null": 0}
        else:
            out[c.name] = encode.numbers(a)
            encodings[c.name] = {"kind": "float", "null": "NaN"}
    return out, encodings


def _int_type(c: Column):
    return np.int8 if (c.maximum or 0) < 128 else np.int32


def _derive(spec: Table, arrays: dict[str, np.ndarray], patient: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    """The derived columns of one table, from its encoded rows in store order (sorted by
    patient, then date), with their encodings."""
    derived = [c for c in spec.columns if c.derived]
    if not derived:
        return {}, {}
    if spec.name != "activity" or {c.name for c in derived} != {"cips_position", "previous_discharge"}:
        raise NotImplementedError(f"no derivation for {spec.name}: {', '.join(c.name for c in derived)}")
    position, previous = spells.derive(patient, arrays["start_date"], arrays["end_date"], arrays["setting"],
                                       arrays["discharge_destination"])
    out = {"cips_position": position.astype(_int_type(spec.column("cips_position"))),
           "previous_discharge": previous}
    enc = {"cips_position": {"kind": "int", "null": 0, "derived": True},
           "previous_discharge": {"kind": "date", "null": int(NULL_DAY), "derived": True}}
    return out, enc


def run_ingest(source: str | Path, store: str | Path, *, identities_store: str | Path | None = None,
               strict: bool = False, progress: Progress | None = None) -> IngestSummary:
    t0 = time.perf_counter()
    say = progress or (lambda stage: None)
    store = Path(store)
    identities_store = Path(identities_store) if identities_store else default_root(store)
    check_apart(store, identities_store)
    say("reading source")
    src = read_source(source)
    say("checking types")
    normal: dict[str, NormalTable] = {name: normalise(TABLES[name], raw) for name, raw in src.tables.items()}
    unify_patient_ids(normal)
    if "identities" in normal:  # before the build, not after it
        check_store_path(identities_store)
    summary = IngestSummary(store, identities_store if "identities" in normal else None, None,
                            ignored=src.ignored,
                            missing_columns={n: t.missing_columns for n, t in normal.items() if t.missing_columns},
                            extras={n: [x.removeprefix(EXTRA_PREFIX) for x in t.extras]
                                    for n, t in normal.items() if t.extras},
                            identifier_columns={n: t.identifiers for n, t in normal.items() if t.identifiers},
                            dropped_columns={n: t.dropped for n, t in normal.items() if t.dropped})

    quarantine: dict[str, pa.Table] = {}

    def record(name: str, t: NormalTable, verdict, qp=None) -> None:
        counts = verdict.counts()
        summary.tables[name] = TableSummary(t.num_rows, int(verdict.good.sum()), counts)
        if counts:
            quarantine[name] = quarantine_rows(t, TABLES[name], verdict, qp)

    # --- practices: the hierarchy, sorted system → locality → practice -----------------------
    say("validating: practices")
    pr = normal["practices"]
    verdict, _ = validate(pr, TABLES["practices"])
    record("practices", pr, verdict)
    keep = verdict.good
    pcols = {k: _good(v, keep) for k, v in pr.columns.items()}
    pcols.update({x: _good(pr.raw.column(x).combine_chunks(), keep) for x in pr.extras})
    p_order = pa.table(pcols).sort_by([("system_code", "ascending"), ("locality_code", "ascending"),
                                       ("practice_code", "ascending")])
    practice_codes = p_order.column("practice_code").combine_chunks()
    loc_codes = encode.sorted_unique(p_order.column("locality_code"))
    sys_codes = encode.sorted_unique(p_order.column("system_code"))
    practices_out = p_order.append_column(
        "locality", pa.array(encode.lookup(p_order.column("locality_code").combine_chunks(), loc_codes))
    ).append_column(
        "system", pa.array(encode.lookup(p_order.column("system_code").combine_chunks(), sys_codes)))

    # --- patients: sorted by practice then id ---------------------------------------------
    say("validating: patients")
    pt = normal["patients"]
    verdict, _ = validate(pt, TABLES["patients"], practices=practice_codes)
    record("patients", pt, verdict)
    keep = verdict.good
    if not keep.any():
        raise _no_patients(summary.tables["patients"])
    ids = _good(pt.columns["patient_id"], keep)
    practice_idx = encode.lookup(_good(pt.columns["practice_code"], keep), practice_codes)
    id_rank = pc.rank(ids, sort_keys="ascending", tiebreaker="first").to_numpy() if len(ids) else np.empty(0, np.uint64)
    order = np.lexsort((id_rank, practice_idx))
    good_rows = np.flatnonzero(keep)[order]
    take = pa.array(good_rows, pa.int64())
    pcols = {k: v.take(take) for k, v in pt.columns.items()}
    n_patients = len(good_rows)
    encoder = _Encoder()
    dictionaries: dict[str, pa.Array] = {}
    pat_arrays, pat_enc = _encode_columns(TABLES["patients"], pcols, encoder, dictionaries)
    pat_arrays["practice"] = practice_idx[order].astype(np.int32)
    del pat_arrays["practice_code"]
    dictionaries.pop("text.patients.practice_code", None)
    pat_enc.pop("practice_code")
    pat_enc["practice"] = {"kind": "index", "into": "practices"}
    stored_ids = pcols["patient_id"]
    quarantined_ids = pc.unique(_good(pt.columns["patient_id"], ~keep).drop_null())
    context = PatientContext(stored_ids, pat_arrays["birth_date"], pat_arrays["death_date"], quarantined_ids)
    patients_out = pa.table({"patient_id": stored_ids, **pat_arrays,
                             **{x: pt.raw.column(x).take(take) for x in pt.extras}})

    # --- event tables: validate, collect codes, then encode and group by patient ------------
    events: dict[str, tuple] = {}  # name -> (columns, patient index, kept rows, code parts)
    # activity first: its stored rows are the spells that diagnoses and procedures name
    for name in sorted(INPUT_EVENT_TABLES, key=lambda n: n != SPELL_TABLE):
        if name not in normal:
            continue
        say(f"validating: {name}")
        t = normal[name]
        verdict, pidx = validate(t, TABLES[name], patients=context, spells=encoder.spells)
        if name == SPELL_TABLE:
            encoder.spells = spell_context(t, verdict, pidx)
        record(name, t, verdict, quarantined_ids)
        keep = verdict.good
        cols = {k: _good(v, keep) for k, v in t.columns.items()}
        code_parts = list(_code_columns(TABLES[name], cols))  # normalised once, used twice
        for _, systems, idx, codes in code_parts:
            if idx is None:
                encoder.collect_codes(systems[0], codes)
            else:
                for i, s in enumerate(systems):
                    m = idx == i
                    if m.any():
                        encoder.collect_codes(s, codes.filter(pa.array(m)))
        events[name] = (cols, pidx[keep], keep, code_parts)
    encoder.finish_codes()
    order_of = {n: i for i, n in enumerate(("practices", "patients", *INPUT_EVENT_TABLES))}  # activity
    summary.tables = dict(sorted(summary.tables.items(), key=lambda kv: order_of[kv[0]]))  # came first: reorder
    if "identities" in normal:  # validated here, stored apart below
        say("validating: identities")
        it = normal["identities"]
        id_verdict, id_pidx = validate(it, TABLES["identities"], practices=practice_codes, patients=context)
        record("identities", it, id_verdict, quarantined_ids)
    if strict and summary.quarantined_total:
        raise StrictModeError(summary)

    tables_meta: dict = {}
    with SnapshotBuilder(store) as build:
        offsets: dict[str, np.ndarray] = {}
        build.write_arrow("practices.arrow", practices_out)
        tables_meta["practices"] = {"file": "practices.arrow", "rows": practices_out.num_rows}
        build.write_arrow("patients.arrow", patients_out)
        tables_meta["patients"] = {"file": "patients.arrow", "rows": n_patients, "encodings": pat_enc}
        for name in INPUT_EVENT_TABLES:
            spec = TABLES[name]
            if name in events:
                say(f"building the store: encoding {name}")
                cols, pidx, keep, code_parts = events[name]
                arrays, enc = _encode_columns(spec, cols, encoder, dictionaries, code_parts)
                extras = {x: _good(normal[name].raw.column(x).combine_chunks(), keep) for x in normal[name].extras}
            else:  # a missing optional table is an empty table
                arrays, enc = _encode_columns(spec, {c.name: pa.nulls(0, pa.string()) for c in spec.columns},
                                              encoder, dictionaries)
                pidx, extras = np.empty(0, np.int32), {}
            order, offs = group_by_patient(pidx, n_patients, arrays[spec.sort_date])
            offsets[name] = offs
            patient = gather(pidx.astype(np.int32), order)
            arrays = {k: gather(v, order) for k, v in arrays.items()}
            derived, derived_enc = _derive(spec, arrays, patient)
            arrays.update(derived)
            enc.update(derived_enc)
            contract_order = [c.name for c in spec.columns if c.name in arrays]
            tbl = pa.table({"patient": patient, **{k: arrays[k] for k in contract_order},
                            **{x: v.take(pa.array(order)) for x, v in extras.items()}})
            enc = {k: enc[k] for k in contract_order}
            say(f"building the store: writing {name}")
            build.write_arrow(f"{name}.arrow", tbl)
            sd = arrays[spec.sort_date]
            sd = sd[sd != NULL_DAY]
            tables_meta[name] = {"file": f"{name}.arrow", "rows": tbl.num_rows, "encodings": enc,
                                 "sort_date": spec.sort_date,
                                 "date_range": [str(from_day(sd.min())), str(from_day(sd.max()))] if sd.size else None}
        build.write_arrow("offsets.arrow", pa.table(offsets))
        dict_meta = {}
        for s, d in encoder.code_dicts.items():
            dictionaries[f"code.{s}"] = d
        dictionaries[SPELL_DICTIONARY] = pa.concat_arrays([pa.nulls(1, pa.string()),
                                                           encoder.spells.ids.cast(pa.string())])
        for dname, d in sorted(dictionaries.items()):
            build.write_arrow(f"dict/{dname}.arrow", pa.table({"value": d}))
            dict_meta[dname] = {"file": f"dict/{dname}.arrow", "size": len(d)}
        for name, q in quarantine.items():
            if name != "identities":
                build.write_parquet(f"quarantine/{name}.parquet", q)

        say("committing the snapshot")
        counts = {"patients": n_patients, "practices": practices_out.num_rows,
                  "localities": len(loc_codes), "systems": len(sys_codes)}
        held = "identities" in normal
        snapshot_id = build.seal({
            "contract_version": CONTRACT_VERSION,
            "casefind_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "source": {"path": str(Path(source).resolve()), "kind": src.kind, "tables": src.origins,
                       "ignored": src.ignored},
            "counts": counts,
            "tables": tables_meta,
            "dictionaries": dict_meta,
            "ingest": {n: {"read": s.read, "stored": s.stored, "quarantined": s.quarantined}
                       for n, s in summary.tables.items() if n != "identities"},
            "identities": {"stored_apart": held, **({"store": str(identities_store.resolve())} if held else {})},
        })
        identities = _identities_table(it, id_verdict, id_pidx) if held else None
        _publish_with_identities(build, snapshot_id, identities_store, identities,
                                 quarantine.get("identities"), summary.tables.get("identities"))
        summary.snapshot_id = snapshot_id
    summary.seconds = time.perf_counter() - t0
    return summary


def _publish_with_identities(build: SnapshotBuilder, snapshot_id: str, identities_root: Path,
                             identities: pa.Table | None, quarantined: pa.Table | None,
                             counts: TableSummary | None) -> None:
    """Identities of the new snapshot are written beside the current one's, then the store's
    ``current`` is swapped, then identities of other snapshots are removed: a kill at any
    point leaves the current snapshot with its own identities or none."""
    ingest = None if counts is None else {"read": counts.read, "stored": counts.stored,
                                          "quarantined": counts.quarantined}
    with IdentitiesCommit(identities_root) as ids:
        ids.prepare(snapshot_id, identities, quarantined=quarantined, ingest=ingest)
        build.publish()
        ids.finish()


def _no_patients(patients: TableSummary) -> IngestError:
    if patients.read == 0:
        why = "the patients table has no rows"
    else:
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(patients.quarantined.items(), key=lambda kv: -kv[1]))
        why = f"all {patients.read:,} rows of patients break the contract ({reasons})"
    return IngestError(f"no patients could be stored: {why}; the store was left unchanged",
                       "check the patients table (and practices, which every patient must be in)")


def _identities_table(it: NormalTable, verdict, pidx: np.ndarray) -> pa.Table:
    """Good identities rows in store patient order, keyed by the store's patient index as
    well as the pseudonymised id."""
    keep = verdict.good
    order = np.argsort(pidx[keep], kind="stable")
    rows = np.flatnonzero(keep)[order]
    take = pa.array(rows, pa.int64())
    return pa.table({"patient": pidx[rows].astype(np.int32),
                     **{n: it.columns[n].take(take) for n in TABLES["identities"].names}})
