"""Fuzzed sources: whatever an extract looks like, ingest answers with a CasefindError or a
store that keeps its promises: every row read is stored or quarantined, no column that
identifies people is in the analysis store, and no source column takes an internal name."""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casefind.contract import ANALYSIS_TABLES, TABLES
from casefind.contract.nhs_number import sequence
from casefind.contract.quarantine import REASONS
from casefind.contract.schema import EXTRA_PREFIX, IDENTIFIER_NAMES, MAX_POSITION
from casefind.errors import CasefindError
from casefind.ingest import run_ingest
from casefind.ingest.normalise import is_identifier_name
from casefind.store import Store
from casefind_testdata import BAD, GOOD, as_table

SECRETS = [str(n) for n in sequence(999_100_000, 40)]  # planted NHS numbers: never in the store
SECRET_SET = set(SECRETS) | {int(s) for s in SECRETS}
BAD_CODES = ["../../../evil_out/pwn", "/abs/path", "./Z00002", "=cmd|x", "Z0 1", "Z" * 200]
COLLIDING = ["patient", "practice", "locality", "system", "_reason", "_column", "_source_row", "_detail",
             "extra__ward", "", "Patient_ID", "patient_id", "cips_position", "previous_discharge"]
IDENTIFYING = [*IDENTIFIER_NAMES, "NHS Number", "Address Line 1", "Post Code"]
STORE_COLUMNS = {"patient", "practice", "locality", "system"}
BOOKKEEPING = {"_source_row": pa.int64(), "_reason": pa.string(), "_column": pa.string(), "_detail": pa.string()}
CORRUPTIONS = ["wrong_type", "non_finite", "date_extreme", "huge_number", "duplicate_name", "colliding_extra",
               "identifier_extra", "nhs_values_extra", "bad_code", "odd_encoding", "drop_column", "no_rows"]


# contract v2: a spell of p1 with a diagnosis and a procedure in it, and rows that break the
# spells' rules (a duplicate spell, spells of nobody or of another patient, a position
# without a spell or out of range, a code system procedures do not take)
SPELLS = {
    "activity": [("p1", "2025-02-01", "2025-02-03", "emergency_admission", None, "J189", "RXX", "other_hospital", "S1"),
                 ("p1", "2025-02-04", "2025-02-06", "elective_admission", None, None, None, "home", "S2")],
    "diagnoses": [("p1", "2025-02-01", "icd10", "J18.9", "acute", "S1", "1"),
                  ("p1", "2025-02-04", "icd10", "I10", "acute", "S2", "2")],
    "procedures": [("p1", "2025-02-02", "opcs4", "K40.1", "S1", "1"), ("p1", "2025-02-05", "opcs4", "K49", "S2", None)],
}
SPELL_BAD = [
    ("activity", ("p3", "2023-05-01", "2023-05-02", "elective_admission", None, None, None, "home", "S1")),
    ("diagnoses", ("p3", "2023-05-01", "icd10", "J189", "acute", "S1", "2")),
    ("diagnoses", ("p1", "2025-02-01", "icd10", "J189", "acute", None, "2")),
    ("procedures", ("p1", "2025-02-02", "opcs4", "K401", "S9", "1")),
    ("procedures", ("p1", "2025-02-02", "opcs4", "K401", "S1", "100")),
    ("procedures", ("p1", "2025-02-02", "icd10", "K401", "S1", "1")),
    ("procedures", ("nobody", "2025-02-02", "opcs4", "K401", "S1", "1")),
]


def _values(draw, n: int, strategy) -> list:
    return draw(st.lists(strategy, min_size=n, max_size=n))


def _wrong_type(draw, n: int) -> pa.Array:
    kind = draw(st.sampled_from(["int64", "uint64", "float64", "bool", "date32", "timestamp", "list",
                                 "struct", "binary", "null"]))
    if kind == "int64":
        return pa.array(_values(draw, n, st.integers(-2**63, 2**63 - 1)), pa.int64())
    if kind == "uint64":
        return pa.array(_values(draw, n, st.integers(0, 2**64 - 1)), pa.uint64())
    if kind == "float64":
        return pa.array(_values(draw, n, st.floats()), pa.float64())
    if kind == "bool":
        return pa.array(_values(draw, n, st.booleans()))
    if kind == "date32":
        return pa.array(_values(draw, n, st.integers(-2**31, 2**31 - 1)), pa.int32()).cast(pa.date32())
    if kind == "timestamp":
        return pa.array(_values(draw, n, st.integers(-2**62, 2**62)), pa.int64()).cast(pa.timestamp("ms"))
    if kind == "list":
        return pa.array([[str(i)] for i in range(n)])
    if kind == "struct":
        return pa.array([{"a": i} for i in range(n)])
    if kind == "binary":
        return pa.array([bytes([i % 256, 255]) for i in range(n)], pa.binary())
    return pa.nulls(n)


def _columns(name: str, t: pa.Table, kinds: tuple[str, ...] = (), patterned: bool = False) -> list[str]:
    """The table's contract columns of these kinds (or with a pattern) that it still has."""
    return [c.name for c in TABLES[name].columns
            if c.name in t.column_names and (c.kind in kinds or (patterned and c.pattern))]


def _set(t: pa.Table, column: str, arr: pa.Array) -> pa.Table:
    return t.set_column(t.column_names.index(column), column, arr)


def _corrupt(draw, tables: dict[str, pa.Table], kind: str) -> None:
    name = draw(st.sampled_from(sorted(tables)))
    t = tables[name]
    n = t.num_rows
    if kind == "wrong_type" and t.num_columns:
        tables[name] = _set(t, draw(st.sampled_from(t.column_names)), _wrong_type(draw, n))
    elif kind == "non_finite" and (cols := _columns(name, t, ("float", "int"))):
        values = _values(draw, n, st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 5.0, 1e308]))
        tables[name] = _set(t, draw(st.sampled_from(cols)), pa.array(values, pa.float64()))
    elif kind == "date_extreme" and (cols := _columns(name, t, ("date",))):
        if draw(st.booleans()):
            arr = pa.array(_values(draw, n, st.sampled_from(
                ["0000-01-01", "9999-12-31", "1899-12-31", "2100-01-01", "1900-01-01", "2099-12-31",
                 "2020-02-30", "2020-01-01", None])), pa.string())
        else:
            arr = pa.array(_values(draw, n, st.sampled_from([-2**31, 2**31 - 1, 0, 18262, -25567])),
                           pa.int32()).cast(pa.date32())
        tables[name] = _set(t, draw(st.sampled_from(cols)), arr)
    elif kind == "huge_number" and (cols := _columns(name, t, ("float", "int"))):
        arr = pa.array(_values(draw, n, st.sampled_from(
            ["1e400", "-1e400", "99999999999999999999", "1e-400", "0x10", "1_000", "nan", "3"])), pa.string())
        tables[name] = _set(t, draw(st.sampled_from(cols)), arr)
    elif kind == "duplicate_name" and t.num_columns:
        i = draw(st.integers(0, t.num_columns - 1))
        tables[name] = t.append_column(t.field(i), t.column(i))
    elif kind == "colliding_extra":
        tables[name] = t.append_column(draw(st.sampled_from(COLLIDING)), pa.array(
            _values(draw, n, st.sampled_from(["x", "1", "-1", "unknown_patient", None])), pa.string()))
    elif kind == "identifier_extra":
        tables[name] = t.append_column(draw(st.sampled_from(IDENTIFYING)),
                                       pa.array(_values(draw, n, st.sampled_from(SECRETS)), pa.string()))
    elif kind == "nhs_values_extra":
        values = _values(draw, n, st.sampled_from(SECRETS))
        arr = pa.array([int(v) for v in values], pa.int64()) if draw(st.booleans()) else pa.array(values)
        tables[name] = t.append_column("ref", arr)
    elif kind == "bad_code" and n and (cols := _columns(name, t, patterned=True)):
        column = draw(st.sampled_from(cols))
        values = t.column(t.column_names.index(column)).to_pylist()  # the first, if the name is duplicated
        values[draw(st.integers(0, n - 1))] = draw(st.sampled_from(BAD_CODES))
        tables[name] = _set(t, column, pa.array(values, pa.string()))
    elif kind == "odd_encoding" and (cols := [f.name for f in t.schema if pa.types.is_string(f.type)]):
        column = draw(st.sampled_from(cols))
        arr = t.column(t.column_names.index(column))
        tables[name] = _set(t, column, arr.dictionary_encode() if draw(st.booleans()) else arr.cast(pa.large_string()))
    elif kind == "drop_column" and t.num_columns:
        tables[name] = t.remove_column(draw(st.integers(0, t.num_columns - 1)))
    elif kind == "no_rows":
        tables[name] = t.slice(0, 0)


def _as_csv_text(t: pa.Table) -> pa.Table:
    cols = []
    for col in t.columns:
        try:
            cols.append(pc.cast(col, pa.string()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            cols.append(pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string()))
    return pa.Table.from_arrays(cols, names=t.column_names)


def _write_hive(folder: Path, t: pa.Table, key: str) -> None:
    """Rows split over ``key=value`` folders; a contract column used as the key leaves the files."""
    if key in t.column_names:
        i = t.column_names.index(key)
        try:
            values = pc.cast(t.column(i), pa.string()).to_pylist()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = [None if v is None else str(v) for v in t.column(i).to_pylist()]
        t = t.remove_column(i)
    else:
        values = [["2025", "01", "a b", "x/y"][i % 4] for i in range(t.num_rows)]
    if t.num_rows == 0:
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, folder / "part-0.parquet")
    for value in sorted(set(values), key=str):
        rows = [i for i, v in enumerate(values) if v == value]
        text = "__HIVE_DEFAULT_PARTITION__" if value is None else quote(value, safe="")
        part = folder / f"{quote(key, safe='')}={text}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(t.take(pa.array(rows, pa.int64())), part / "part-0.parquet")


def _write(root: Path, tables: dict[str, pa.Table], fmt: str, hive_key: str) -> None:
    for name, t in tables.items():
        folder = root / "restricted" if name == "identities" else root
        folder.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            pacsv.write_csv(_as_csv_text(t), folder / f"{name}.csv")
        elif fmt == "parquet":
            pq.write_table(t, folder / f"{name}.parquet")
        elif fmt == "parts":
            (folder / name).mkdir()
            half = t.num_rows // 2
            pq.write_table(t.slice(0, half), folder / name / "part-0.parquet")
            pq.write_table(t.slice(half), folder / name / "part-1.parquet")
        else:
            _write_hive(folder / name, t, hive_key)


@st.composite
def extracts(draw):
    rows = {n: list(r) for n, r in GOOD.items()}
    if draw(st.booleans()):  # a v2 source: spells, and procedures
        for name, extra in SPELLS.items():
            rows[name] = rows.get(name, []) + extra
        for table, row in draw(st.lists(st.sampled_from(SPELL_BAD), max_size=3)):
            rows[table].append(row)
    for table, row, _ in draw(st.lists(st.sampled_from(BAD), max_size=6)):
        rows[table].append(row)
    tables = {n: as_table(n, r) for n, r in rows.items()}
    for kind in draw(st.lists(st.sampled_from(CORRUPTIONS), max_size=4)):
        _corrupt(draw, tables, kind)
    fmt = draw(st.sampled_from(["csv", "parquet", "parts", "hive"]))
    hive_key = draw(st.sampled_from(["year", "setting", "patient", "_reason", "nhs_number", "code_system"]))
    return tables, fmt, hive_key


def _stored_and_quarantined_files(snapshot: Path):
    for path in sorted(snapshot.rglob("*.arrow")):
        yield path, pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    for path in sorted(snapshot.rglob("*.parquet")):
        yield path, pq.read_table(path)


def _holds_no_secret(path: Path, t: pa.Table) -> None:
    for name in t.column_names:
        plain = name.removeprefix(EXTRA_PREFIX)
        assert not is_identifier_name(plain), (path, name)
        col = t.column(name)
        if pa.types.is_string(col.type) or pa.types.is_integer(col.type):
            assert not (set(col.drop_null().to_pylist()) & SECRET_SET), (path, name)


def _no_internal_name_is_taken(store: Store) -> None:
    for name in ANALYSIS_TABLES:
        t = store.table(name)
        for col in t.columns:
            assert col in TABLES[name].names or col in STORE_COLUMNS or col.startswith(EXTRA_PREFIX), (name, col)
        if name in TABLES and TABLES[name].per_patient_events:
            assert t.arrow.schema.field("patient").type == pa.int32()
            assert (np.diff(t["patient"]) >= 0).all()  # still the store's sorted patient index
        q = store.quarantine(name)
        if q.num_columns:
            for col, typ in BOOKKEEPING.items():
                assert q.schema.field(col).type == typ, (name, col)
            assert set(q.column("_reason").to_pylist()) <= set(REASONS)
            assert set(q.column("_column").to_pylist()) <= set(TABLES[name].names) | {None}
            for col in q.column_names:
                assert col in TABLES[name].names or col in BOOKKEEPING or col.startswith(EXTRA_PREFIX), (name, col)


def _spells_keep_their_promises(store: Store) -> None:
    """Spell numbers are unique in activity and every other table's are its, of the same
    patient; the derived columns are within their bounds."""
    act = store.table("activity")
    numbers = act["spell_id"][act["spell_id"] > 0]
    assert len(np.unique(numbers)) == len(numbers)
    assert len(store.dictionary("spell")) == len(numbers) + 1
    owner = dict(zip(act["spell_id"].tolist(), act["patient"].tolist()))
    for name in ("diagnoses", "procedures"):
        t = store.table(name)
        for number, patient in zip(t["spell_id"].tolist(), t["patient"].tolist()):
            assert number == 0 or owner[number] == patient, name
    assert ((act["cips_position"] >= 0) & (act["cips_position"] <= MAX_POSITION)).all()


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(extracts())
def test_ingest_keeps_its_promises_or_says_why(extract):
    tables, fmt, hive_key = extract
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write(root / "src", tables, fmt, hive_key)
        try:
            summary = run_ingest(root / "src", root / "store")
        except CasefindError as e:
            assert str(e)  # a message for the analyst, and nothing else escapes
            return
        assert set(summary.tables) == set(tables)  # procedures included, when given
        for name, s in summary.tables.items():
            assert s.read == tables[name].num_rows, name
            assert s.read == s.stored + sum(s.quarantined.values()), name
        store = Store.open(root / "store")
        _spells_keep_their_promises(store)
        for path, t in _stored_and_quarantined_files(store.dir):
            _holds_no_secret(path, t)
        _no_internal_name_is_taken(store)
