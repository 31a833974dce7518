"""Ingest: source tables → validated, encoded, patient-sorted store snapshot (and, apart,
the restricted identities store). Builds beside the live store and swaps at the end."""
from __future__ import annotations

import datetime as dt
import functools
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
from casefind.ingest.validate import SPELL_TABLE, PatientContext, SpellContext, quarantine_rows, spell_context, validate
from casefind.store.identities import IdentitiesCommit, check_apart, default_root
from casefind.store.writer import SnapshotBuilder, check_store_path
from casefind_native import gather, group_by_patient


class StrictModeError(IngestError):
    """--strict and at least one row was quarantined; the store was not changed."""

    exit_code = EXIT_STRICT

    def __init__(self, summary: IngestSummary, quarantine: dict[str, pa.Table] | None = None):
        self.summary = summary
        self.quarantine = quarantine or {}  # table -> its quarantined rows (a sharded ingest compares spells)
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
SourceRows = Callable[[str, np.ndarray], np.ndarray]  # (table, 0-based rows of a part) -> the delivery's rows
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
               strict: bool = False, progress: Progress | None = None,
               source_rows: SourceRows | None = None, duplicate_spells: np.ndarray | None = None,
               allow_no_patients: bool = False) -> IngestSummary:
    """Read, check, encode and store one delivery of the source tables; the live store is
    replaced only once the whole snapshot is written (and not at all under ``strict`` when
    any row was quarantined). ``source_rows(table, rows)``: where rows of ``source`` sit in
    the delivery it was split from (a shard's part), for the quarantine's row numbers;
    ``duplicate_spells``: activity rows another shard's spell ids make duplicates;
    ``allow_no_patients``: a shard whose every patient row is bad is stored empty (the
    sharded ingest refuses only a source with no good patient anywhere)."""
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
    verdicts = _Verdicts(_summary_of(store, identities_store if "identities" in normal else None, src, normal),
                         source_rows)
    say("validating: practices")
    practices = _practices(normal["practices"], verdicts)
    say("validating: patients")
    encoder = _Encoder()
    dictionaries: dict[str, pa.Array] = {}
    patients = _patients(normal["patients"], practices.codes, verdicts, encoder, dictionaries, allow_no_patients)
    events = _validate_events(normal, patients, encoder, verdicts, say, duplicate_spells)
    identities = None
    if "identities" in normal:  # validated here, stored apart below
        say("validating: identities")
        identities = _validate_identities(normal["identities"], practices, patients, verdicts)
    if strict and verdicts.summary.quarantined_total:
        raise StrictModeError(verdicts.summary, verdicts.quarantine)
    _build_snapshot(store, identities_store, source, src, normal, practices, patients, events, identities,
                    encoder, dictionaries, verdicts, say)
    verdicts.summary.seconds = time.perf_counter() - t0
    return verdicts.summary


def _summary_of(store: Path, identities_store: Path | None, src, normal: dict[str, NormalTable]) -> IngestSummary:
    """What the delivery looked like before any row was checked: ignored files and the
    columns that were missing, kept as extras, or removed."""
    return IngestSummary(store, identities_store, None, ignored=src.ignored,
                         missing_columns={n: t.missing_columns for n, t in normal.items() if t.missing_columns},
                         extras={n: [x.removeprefix(EXTRA_PREFIX) for x in t.extras]
                                 for n, t in normal.items() if t.extras},
                         identifier_columns={n: t.identifiers for n, t in normal.items() if t.identifiers},
                         dropped_columns={n: t.dropped for n, t in normal.items() if t.dropped})


class _Verdicts:
    """Each table's counts (the summary the CLI prints) and its quarantined rows (written
    into the snapshot, or beside the identities), recorded as each table is checked."""

    def __init__(self, summary: IngestSummary, source_rows: SourceRows | None = None):
        self.summary = summary
        self.quarantine: dict[str, pa.Table] = {}
        self.source_rows = source_rows

    def record(self, name: str, t: NormalTable, verdict, quarantined_patients=None) -> None:
        counts = verdict.counts()
        self.summary.tables[name] = TableSummary(t.num_rows, int(verdict.good.sum()), counts)
        if counts:
            where = None if self.source_rows is None else functools.partial(self.source_rows, name)
            self.quarantine[name] = quarantine_rows(t, TABLES[name], verdict, quarantined_patients, where)

    def in_contract_order(self) -> None:
        """Activity is checked first (its spells are what diagnoses and procedures name);
        the summary lists the tables in the contract's order all the same."""
        order_of = {n: i for i, n in enumerate(("practices", "patients", *INPUT_EVENT_TABLES))}
        self.summary.tables = dict(sorted(self.summary.tables.items(), key=lambda kv: order_of[kv[0]]))


@dataclass
class _Practices:
    """The practice hierarchy as stored (sorted system → locality → practice) and the codes
    that patients and identities must name."""
    table: pa.Table
    codes: pa.Array
    localities: int
    systems: int


def _practices(pr: NormalTable, verdicts: _Verdicts) -> _Practices:
    """Check the practices and index each one's locality and system."""
    verdict, _ = validate(pr, TABLES["practices"])
    verdicts.record("practices", pr, verdict)
    keep = verdict.good
    pcols = {k: _good(v, keep) for k, v in pr.columns.items()}
    pcols.update({x: _good(pr.raw.column(x).combine_chunks(), keep) for x in pr.extras})
    p_order = pa.table(pcols).sort_by([("system_code", "ascending"), ("locality_code", "ascending"),
                                       ("practice_code", "ascending")])
    loc_codes = encode.sorted_unique(p_order.column("locality_code"))
    sys_codes = encode.sorted_unique(p_order.column("system_code"))
    table = p_order.append_column(
        "locality", pa.array(encode.lookup(p_order.column("locality_code").combine_chunks(), loc_codes))
    ).append_column(
        "system", pa.array(encode.lookup(p_order.column("system_code").combine_chunks(), sys_codes)))
    return _Practices(table, p_order.column("practice_code").combine_chunks(), len(loc_codes), len(sys_codes))


@dataclass
class _Patients:
    """The stored patients (sorted by practice, then id), their encodings, and what the event
    tables are checked against: the stored ids with their lives, and the quarantined ids."""
    table: pa.Table
    encodings: dict
    context: PatientContext
    quarantined_ids: pa.Array

    @property
    def count(self) -> int:
        return self.table.num_rows


def _patients(pt: NormalTable, practice_codes: pa.Array, verdicts: _Verdicts, encoder: _Encoder,
              dictionaries: dict[str, pa.Array], allow_none: bool = False) -> _Patients:
    """Check the patients; store order is practice, then patient id, so a practice's
    patients are one run of rows."""
    verdict, _ = validate(pt, TABLES["patients"], practices=practice_codes)
    verdicts.record("patients", pt, verdict)
    keep = verdict.good
    if not keep.any() and not allow_none:
        raise no_patients(verdicts.summary.tables["patients"])
    ids = _good(pt.columns["patient_id"], keep)
    practice_idx = encode.lookup(_good(pt.columns["practice_code"], keep), practice_codes)
    id_rank = pc.rank(ids, sort_keys="ascending", tiebreaker="first").to_numpy() if len(ids) else np.empty(0, np.uint64)
    order = np.lexsort((id_rank, practice_idx))
    take = pa.array(np.flatnonzero(keep)[order], pa.int64())
    pcols = {k: v.take(take) for k, v in pt.columns.items()}
    arrays, encodings = _encode_columns(TABLES["patients"], pcols, encoder, dictionaries)
    arrays["practice"] = practice_idx[order].astype(np.int32)  # an index into practices, not a code
    del arrays["practice_code"]
    dictionaries.pop("text.patients.practice_code", None)
    encodings.pop("practice_code")
    encodings["practice"] = {"kind": "index", "into": "practices"}
    stored_ids = pcols["patient_id"]
    quarantined_ids = pc.unique(_good(pt.columns["patient_id"], ~keep).drop_null())
    context = PatientContext(stored_ids, arrays["birth_date"], arrays["death_date"], quarantined_ids)
    table = pa.table({"patient_id": stored_ids, **arrays, **{x: pt.raw.column(x).take(take) for x in pt.extras}})
    return _Patients(table, encodings, context, quarantined_ids)


@dataclass
class _EventRows:
    """The good rows of one event table, not yet encoded: their columns, their patients'
    store indices, which source rows they are, and their normalised code columns."""
    columns: dict[str, pa.Array]
    patient: np.ndarray
    keep: np.ndarray
    code_parts: list


def _validate_events(normal: dict[str, NormalTable], patients: _Patients, encoder: _Encoder,
                     verdicts: _Verdicts, say: Progress,
                     duplicate_spells: np.ndarray | None = None) -> dict[str, _EventRows]:
    """Check each event table and collect its codes into the shared dictionaries (finished
    here: encoding needs every table's codes first)."""
    events: dict[str, _EventRows] = {}
    # activity first: its stored rows are the spells that diagnoses and procedures name
    for name in sorted(INPUT_EVENT_TABLES, key=lambda n: n != SPELL_TABLE):
        if name not in normal:
            continue
        say(f"validating: {name}")
        t = normal[name]
        verdict, pidx = validate(t, TABLES[name], patients=patients.context, spells=encoder.spells,
                                 duplicate_spells=duplicate_spells if name == SPELL_TABLE else None)
        if name == SPELL_TABLE:
            encoder.spells = spell_context(t, verdict, pidx)
        verdicts.record(name, t, verdict, patients.quarantined_ids)
        keep = verdict.good
        cols = {k: _good(v, keep) for k, v in t.columns.items()}
        code_parts = list(_code_columns(TABLES[name], cols))  # normalised once, used twice
        _collect_codes(encoder, code_parts)
        events[name] = _EventRows(cols, pidx[keep], keep, code_parts)
    encoder.finish_codes()
    verdicts.in_contract_order()
    return events


def _collect_codes(encoder: _Encoder, code_parts: list) -> None:
    """Add one table's codes to the dictionary of each code system they belong to."""
    for _, systems, idx, codes in code_parts:
        if idx is None:
            encoder.collect_codes(systems[0], codes)
            continue
        for i, s in enumerate(systems):
            m = idx == i
            if m.any():
                encoder.collect_codes(s, codes.filter(pa.array(m)))


def _validate_identities(it: NormalTable, practices: _Practices, patients: _Patients,
                         verdicts: _Verdicts) -> pa.Table:
    """Check the identities (stored apart from the snapshot) and put the good rows in
    store patient order."""
    verdict, pidx = validate(it, TABLES["identities"], practices=practices.codes, patients=patients.context)
    verdicts.record("identities", it, verdict, patients.quarantined_ids)
    return _identities_table(it, verdict, pidx)


def _build_snapshot(store: Path, identities_store: Path, source: str | Path, src, normal: dict[str, NormalTable],
                    practices: _Practices, patients: _Patients, events: dict[str, _EventRows],
                    identities: pa.Table | None, encoder: _Encoder, dictionaries: dict[str, pa.Array],
                    verdicts: _Verdicts, say: Progress) -> None:
    """Write every stored table, the dictionaries and the quarantine beside the live store,
    seal the manifest and swap it in together with the identities."""
    with SnapshotBuilder(store) as build:
        build.write_arrow("practices.arrow", practices.table)
        build.write_arrow("patients.arrow", patients.table)
        tables_meta: dict = {
            "practices": {"file": "practices.arrow", "rows": practices.table.num_rows},
            "patients": {"file": "patients.arrow", "rows": patients.count, "encodings": patients.encodings}}
        offsets: dict[str, np.ndarray] = {}
        for name in INPUT_EVENT_TABLES:
            if name in events:
                say(f"building the store: encoding {name}")
            table, offsets[name], tables_meta[name] = _event_table(
                TABLES[name], events.get(name), normal.get(name), encoder, dictionaries, patients.count)
            say(f"building the store: writing {name}")
            build.write_arrow(tables_meta[name]["file"], table)
        build.write_arrow("offsets.arrow", pa.table(offsets))
        dict_meta = _write_dictionaries(build, encoder, dictionaries)
        for name, q in verdicts.quarantine.items():
            if name != "identities":
                build.write_parquet(f"quarantine/{name}.parquet", q)
        say("committing the snapshot")
        counts = {"patients": patients.count, "practices": practices.table.num_rows,
                  "localities": practices.localities, "systems": practices.systems}
        snapshot_id = build.seal(_manifest(source, src, counts, tables_meta, dict_meta, verdicts.summary,
                                           identities_store if identities is not None else None))
        _publish_with_identities(build, snapshot_id, identities_store, identities,
                                 verdicts.quarantine.get("identities"), verdicts.summary.tables.get("identities"))
        verdicts.summary.snapshot_id = snapshot_id


def _event_table(spec: Table, rows: _EventRows | None, t: NormalTable | None, encoder: _Encoder,
                 dictionaries: dict[str, pa.Array], n_patients: int) -> tuple[pa.Table, np.ndarray, dict]:
    """One event table as stored: encoded, grouped by patient (sorted by date within each),
    with its derived columns; returns the table, its per-patient offsets and its manifest entry."""
    if rows is not None:
        arrays, enc = _encode_columns(spec, rows.columns, encoder, dictionaries, rows.code_parts)
        extras = {x: _good(t.raw.column(x).combine_chunks(), rows.keep) for x in t.extras}
        pidx = rows.patient
    else:  # a missing optional table is an empty table
        arrays, enc = _encode_columns(spec, {c.name: pa.nulls(0, pa.string()) for c in spec.columns},
                                      encoder, dictionaries)
        pidx, extras = np.empty(0, np.int32), {}
    order, offsets = group_by_patient(pidx, n_patients, arrays[spec.sort_date])
    patient = gather(pidx.astype(np.int32), order)
    arrays = {k: gather(v, order) for k, v in arrays.items()}
    derived, derived_enc = _derive(spec, arrays, patient)
    arrays.update(derived)
    enc.update(derived_enc)
    contract_order = [c.name for c in spec.columns if c.name in arrays]
    table = pa.table({"patient": patient, **{k: arrays[k] for k in contract_order},
                      **{x: v.take(pa.array(order)) for x, v in extras.items()}})
    sd = arrays[spec.sort_date]
    sd = sd[sd != NULL_DAY]
    meta = {"file": f"{spec.name}.arrow", "rows": table.num_rows, "encodings": {k: enc[k] for k in contract_order},
            "sort_date": spec.sort_date,
            "date_range": [str(from_day(sd.min())), str(from_day(sd.max()))] if sd.size else None}
    return table, offsets, meta


def _write_dictionaries(build: SnapshotBuilder, encoder: _Encoder, dictionaries: dict[str, pa.Array]) -> dict:
    """Write the code, text and spell dictionaries; returns their manifest entries."""
    for s, d in encoder.code_dicts.items():
        dictionaries[f"code.{s}"] = d
    dictionaries[SPELL_DICTIONARY] = pa.concat_arrays([pa.nulls(1, pa.string()),
                                                       encoder.spells.ids.cast(pa.string())])
    meta = {}
    for name, d in sorted(dictionaries.items()):
        build.write_arrow(f"dict/{name}.arrow", pa.table({"value": d}))
        meta[name] = {"file": f"dict/{name}.arrow", "size": len(d)}
    return meta


def _manifest(source: str | Path, src, counts: dict, tables_meta: dict, dict_meta: dict,
              summary: IngestSummary, identities_store: Path | None) -> dict:
    """The snapshot's manifest: what made it, from what, and how each table is encoded."""
    held = identities_store is not None
    return {
        "contract_version": CONTRACT_VERSION,
        "casefind_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": {"path": str(Path(source).resolve()), "kind": src.kind, "tables": src.origins,
                   "ignored": src.ignored},
        "counts": counts,
        "tables": tables_meta,
        "dictionaries": dict_meta,
        "ingest": {n: {"read": s.read, "stored": s.stored, "quarantined": s.quarantined}
                   for n, s in summary.tables.items() if n != "identities"},
        "identities": {"stored_apart": held, **({"store": str(identities_store.resolve())} if held else {})},
    }


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


def no_patients(patients: TableSummary) -> IngestError:
    """The error for a delivery (or a sharded one, its shards added up) with no good patient."""
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
