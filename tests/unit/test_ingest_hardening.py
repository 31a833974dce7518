"""Ingest hardening (issue 8): each test reproduces one finding of the review.

The store keeps what lives beside its snapshots; identities belong to one snapshot;
identifying and colliding columns never reach the store; sources come as analysts have them
(folders of parts, partitions, odd Arrow types); non-finite numbers, implausible dates and
codes that could become paths are quarantined; and nothing ends in a traceback."""
from __future__ import annotations

import datetime as dt
import io
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from casefind.contract import TABLES
from casefind.contract.nhs_number import sequence
from casefind.ingest import IngestError, run_ingest
from casefind.ingest.normalise import normalise
from casefind.ingest.pipeline import IngestSummary
from casefind.store import Store, StoreError, decisions
from casefind.store import writer as store_writer
from casefind.store.identities import IdentitiesCommit, IdentitiesMismatch, open_identities
from casefind.ui import ingest_summary, store_info
from casefind_testdata import GOOD, N, as_table, write_source

NHS = [str(n) for n in sequence(999_000_000, 4)]  # valid numbers, never issued to patients


def _tables(**changes) -> dict[str, list]:
    """GOOD, with rows appended to some tables (name=[rows]) or a table left out (name=None)."""
    tables = {k: list(v) for k, v in GOOD.items()}
    for name, rows in changes.items():
        if rows is None:
            del tables[name]
        else:
            tables[name] += rows
    return tables


def _source(tmp_path, name="src", fmt="parquet", **changes):
    return write_source(tmp_path / name, _tables(**changes), fmt=fmt)


def _put(src, name: str, table: pa.Table) -> None:
    """Replace the source's file for ``name`` with ``table`` (as Parquet)."""
    folder = src / "restricted" if name == "identities" else src
    for old in (folder / f"{name}.csv", folder / f"{name}.parquet"):
        old.unlink(missing_ok=True)
    pq.write_table(table, folder / f"{name}.parquet")


def _with_column(table: pa.Table, name: str, values) -> pa.Table:
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    if name in table.column_names:
        return table.set_column(table.schema.get_field_index(name), name, arr)
    return table.append_column(name, arr)


def _typed(name: str, rows, **types) -> pa.Table:
    """The rows of a contract table as text, then the named columns cast to ``types``."""
    t = as_table(name, rows)
    for col, typ in types.items():
        t = _with_column(t, col, pc.cast(t.column(col), typ))
    return t


def _accounting_is_exact(summary: IngestSummary) -> None:
    for name, s in summary.tables.items():
        assert s.read == s.stored + sum(s.quarantined.values()), name


def _printed(show, obj) -> str:
    buf = io.StringIO()
    show(obj, Console(file=buf, width=300, color_system=None))
    return buf.getvalue()


def _bytes_of(root) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


# --- 1. the store is one thing across its life ------------------------------------------

def _add_review_log_kpis_and_lists(root) -> dict[str, bytes]:
    (root / "decisions").mkdir(parents=True, exist_ok=True)
    row = {"patient_id": ["p1"], "rule": ["frail"], "decision": ["accepted"], "date": [dt.date(2026, 1, 5)],
           "practice": ["Z00001"], "run_id": ["r1"], "reviewer": [None], "note": [None],
           "recorded_at": [dt.datetime(2026, 1, 6, tzinfo=dt.UTC)], "batch": ["b1"]}
    pq.write_table(pa.table(row, schema=decisions.SCHEMA), root / "decisions" / "batch-0001.parquet")
    (root / ".decisions.lock").write_text("")
    (root / "kpi").mkdir(exist_ok=True)
    (root / "kpi" / "history.duckdb").write_bytes(b"kpi history")
    (root / "lists").mkdir(exist_ok=True)
    (root / "lists" / "registry.json").write_text('{"lists": []}')
    beside = ("decisions", ".decisions.lock", "kpi", "lists")
    return {str(p.relative_to(root)): p.read_bytes()
            for p in root.rglob("*") if p.is_file() and p.parts[len(root.parts)] in beside}


def test_review_log_kpi_history_and_lists_survive_a_new_ingest(tmp_path):
    root = tmp_path / "store"
    run_ingest(_source(tmp_path), root)
    kept = _add_review_log_kpis_and_lists(root)
    second = run_ingest(_source(tmp_path, "src2", diagnoses=[("p3", "2021-01-01", "snomed", "1", N)]), root)
    assert Store.open(root).snapshot_id == second.snapshot_id
    for rel, data in kept.items():
        assert (root / rel).read_bytes() == data, rel
    assert Store.open(root).manifest["reviews"]["rows"] == 1


def test_a_folder_holding_only_what_lives_beside_snapshots_can_become_a_store(tmp_path):
    root = tmp_path / "store"
    _add_review_log_kpis_and_lists(root)
    run_ingest(_source(tmp_path), root)
    assert Store.open(root).n_patients == 3


def test_a_folder_holding_anything_else_is_still_refused(tmp_path):
    root = tmp_path / "store"
    _add_review_log_kpis_and_lists(root)
    (root / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match=r"not a casefind store \(found \['notes.txt'\]\)"):
        run_ingest(_source(tmp_path), root)


# --- 2. identities belong to one snapshot -----------------------------------------------

def _identities_point_at_their_patients(store_root) -> pa.Table | None:
    """The identities of the current snapshot, checked against it; None where refused."""
    try:
        ids = open_identities(store_root)
    except IdentitiesMismatch:
        return None
    stored = Store.open(store_root).table("patients").arrow.column("patient_id").to_pylist()
    assert [stored[i] for i in ids.column("patient").to_pylist()] == ids.column("patient_id").to_pylist()
    return ids


def _shifted_source(tmp_path, with_identities=True):
    """A second extract whose new patient sorts first, so every patient index moves."""
    new = {"patients": [("p0", "1960-01-01", "F", "Z00001", "2000-01-01", N, N, N, N, N)]}
    if with_identities:
        new["identities"] = [("p0", NHS[0], "Eve", "Adams", "Z00001")]
    else:
        new["identities"] = None
    return _source(tmp_path, "shifted", **new)


def test_identities_record_their_snapshot_and_open_with_it(tmp_path):
    root = tmp_path / "store"
    summary = run_ingest(_source(tmp_path), root)
    ids_root = tmp_path / "store-identities"
    manifest = json.loads((ids_root / "current" / "manifest.json").read_text())
    assert manifest["analysis_snapshot_id"] == summary.snapshot_id
    assert (ids_root / "snapshots" / summary.snapshot_id).is_dir()
    ids = _identities_point_at_their_patients(root)
    assert ids.column("nhs_number").to_pylist() == ["9434765919", "4010232137"]
    run_ingest(_shifted_source(tmp_path), root)
    ids = _identities_point_at_their_patients(root)
    assert ids.column("patient_id").to_pylist() == ["p0", "p1", "p2"]
    assert ids.column("patient").to_pylist() == [0, 1, 3]
    assert [p.name for p in (ids_root / "snapshots").iterdir()] == [Store.open(root).snapshot_id]


@pytest.mark.parametrize("same_data", [False, True], ids=["new-data", "same-data"])
def test_an_ingest_without_identities_leaves_none_that_look_current(tmp_path, same_data):
    root = tmp_path / "store"
    first = run_ingest(_source(tmp_path), root)
    src = _source(tmp_path, "no-ids", identities=None) if same_data else _shifted_source(tmp_path, False)
    second = run_ingest(src, root)
    assert (second.snapshot_id == first.snapshot_id) is same_data  # same analysis data, same id
    with pytest.raises(IdentitiesMismatch, match="ingested without identities: re-ingest with identities"):
        open_identities(root)
    assert not (tmp_path / "store-identities" / "current").exists()
    assert not list((tmp_path / "store-identities" / "snapshots").iterdir())


class Killed(BaseException):
    """The process dies here: nothing after runs, no clean-up either."""


def _die(*args, **kwargs):
    raise Killed


KILL_POINTS = {
    # the analysis snapshot is sealed, nothing else has happened
    "before-identities": (IdentitiesCommit, "prepare"),
    # identities of the new snapshot written beside the old; the first publish is the analysis swap
    "before-swap": (store_writer.SnapshotBuilder, "publish"),
    # swapped; identities of the old snapshot not yet removed
    "after-swap": (IdentitiesCommit, "finish"),
}


@pytest.mark.parametrize("second_has_identities", [True, False], ids=["with-ids", "without-ids"])
@pytest.mark.parametrize("step", list(KILL_POINTS))
def test_a_kill_during_commit_never_leaves_identities_of_another_snapshot(tmp_path, monkeypatch, step,
                                                                         second_has_identities):
    root = tmp_path / "store"
    first = run_ingest(_source(tmp_path), root)
    before = _identities_point_at_their_patients(root)
    with monkeypatch.context() as m:
        m.setattr(store_writer.SnapshotBuilder, "abort", lambda self: self._release())  # no clean-up
        m.setattr(*KILL_POINTS[step], _die)
        with pytest.raises(Killed):
            run_ingest(_shifted_source(tmp_path, second_has_identities), root)
    now = Store.open(root)
    after = _identities_point_at_their_patients(root)  # asserts they match whatever is current
    if step == "after-swap":
        assert now.snapshot_id != first.snapshot_id
        assert (after is not None) is second_has_identities
    else:
        assert now.snapshot_id == first.snapshot_id
        assert after is not None and after.equals(before)
    # the next ingest clears what the killed one left
    final = run_ingest(_shifted_source(tmp_path), root)
    assert _identities_point_at_their_patients(root).num_rows == 3
    assert [p.name for p in (tmp_path / "store-identities" / "snapshots").iterdir()] == [final.snapshot_id]


def test_info_says_whether_identities_are_held_apart_and_match(tmp_path):
    root = tmp_path / "store"
    run_ingest(_source(tmp_path), root)
    assert "held apart in a restricted store" in _printed(store_info, Store.open(root))
    ids_root = tmp_path / "store-identities"
    sid = Store.open(root).snapshot_id
    (ids_root / "snapshots" / sid).rename(ids_root / "snapshots" / "0123456789abcdef")  # another's
    out = _printed(store_info, Store.open(root))
    assert "held apart in a restricted store" not in out
    assert f"identities in {ids_root} belong to snapshot" not in out  # current link is dangling now
    assert f"no identities in {ids_root} for snapshot {sid}" in out
    run_ingest(_source(tmp_path, "no-ids", identities=None), root)
    assert "none held for this snapshot" in _printed(store_info, Store.open(root))


def test_identities_that_belong_to_another_snapshot_are_refused(tmp_path):
    root = tmp_path / "store"
    run_ingest(_source(tmp_path), root)
    ids_root = tmp_path / "store-identities"
    old = Store.open(root).snapshot_id
    # another analysis store's ingest wrote its identities here (they belong to its snapshot)
    run_ingest(_shifted_source(tmp_path), tmp_path / "other", identities_store=ids_root)
    other = Store.open(tmp_path / "other").snapshot_id
    with pytest.raises(IdentitiesMismatch, match=f"belong to snapshot {other}, the store is at {old}"):
        open_identities(root)


def test_an_identities_store_inside_the_store_is_refused(tmp_path):
    with pytest.raises(StoreError, match="must be apart from the store"):
        run_ingest(_source(tmp_path), tmp_path / "store", identities_store=tmp_path / "store" / "ids")


# --- 3. identifier columns never enter the analysis store ---------------------------------

def test_identifier_columns_are_removed_and_never_stored(tmp_path):
    bad_patient = ("b1", "1951-13-01", "F", "Z00001", "2000-01-01", N, N, N, N, N)  # quarantined
    src = _source(tmp_path, patients=[bad_patient])
    pats = pq.read_table(src / "patients.parquet")
    for name, values in {"nhs_number": NHS, "Surname": ["Smith", "Jones", "Brown", "Green"],
                         "Address Line 1": ["1 High St"] * 4, "DOB": ["1950-03-01"] * 4,
                         "ward": ["w1", "w2", "w3", "w4"]}.items():
        pats = _with_column(pats, name, values)
    _put(src, "patients", pats)
    summary = run_ingest(src, tmp_path / "store")
    assert summary.identifier_columns == {"patients": ["nhs_number", "Surname", "Address Line 1", "DOB"]}
    assert summary.extras == {"patients": ["ward"]}
    stored = _bytes_of(tmp_path / "store")
    for secret in (*NHS, "Smith", "High St", "nhs_number", "Surname"):
        assert secret.encode() not in stored, secret
    st = Store.open(tmp_path / "store")
    assert st.table("patients").columns[-1] == "extra__ward"
    assert "extra__nhs_number" not in st.quarantine("patients").column_names
    out = _printed(ingest_summary, summary)
    assert "patients: 4 column(s) that identify people removed, never stored: nhs_number, Surname" in out
    assert "Extra columns kept in patients (as extra__<name>): ward" in out


def test_a_column_of_nhs_numbers_is_removed_whatever_its_name(tmp_path):
    src = _source(tmp_path)
    act = pq.read_table(src / "activity.parquet")
    act = _with_column(act, "ref", pa.array([int(NHS[1]), int(NHS[2]), None], pa.int64()))
    act = _with_column(act, "case_no", ["1234567890", "9434765918", "0000000001"])  # 10 digits, not valid
    _put(src, "activity", act)
    summary = run_ingest(src, tmp_path / "store")
    assert summary.identifier_columns == {"activity": ["ref"]}
    cols = Store.open(tmp_path / "store").table("activity").columns
    assert "extra__case_no" in cols and not any("ref" in c for c in cols)


# --- 4. extras kept out of the way of internal names --------------------------------------

def test_extras_named_like_store_columns_do_not_replace_them(tmp_path):
    src = _source(tmp_path)
    _put(src, "activity", _with_column(pq.read_table(src / "activity.parquet"), "patient", ["x", "y", "z"]))
    _put(src, "patients", _with_column(pq.read_table(src / "patients.parquet"), "practice", [9, 9, 9]))
    pr = pq.read_table(src / "practices.parquet")
    _put(src, "practices", _with_column(_with_column(pr, "locality", ["L", "L"]), "system", ["S", "S"]))
    summary = run_ingest(src, tmp_path / "store")
    st = Store.open(tmp_path / "store")
    a = st.table("activity")
    assert a["patient"].tolist() == [0, 0, 2] and a.arrow.column("extra__patient").to_pylist() == ["z", "x", "y"]
    assert st.table("patients")["practice"].tolist() == [0, 0, 1]
    assert st.table("practices")["locality"].tolist() == [0, 0]
    assert st.table("practices").arrow.column("extra__system").to_pylist() == ["S", "S"]
    assert summary.extras == {"practices": ["locality", "system"], "patients": ["practice"],
                              "activity": ["patient"]}


def test_extras_named_like_quarantine_columns_do_not_replace_them(tmp_path):
    src = _source(tmp_path, diagnoses=[("nobody", "2020-01-01", "snomed", "38341003", N)])
    dx = pq.read_table(src / "diagnoses.parquet")
    for name in ("_reason", "_column", "_source_row", "_detail"):
        dx = _with_column(dx, name, ["mine"] * 4)
    _put(src, "diagnoses", dx)
    run_ingest(src, tmp_path / "store")
    q = Store.open(tmp_path / "store").quarantine("diagnoses")
    assert q.column("_reason").to_pylist() == ["unknown_patient"]
    assert q.column("_source_row").to_pylist() == [4]
    assert q.column("extra___reason").to_pylist() == ["mine"]


def test_a_column_named_twice_is_an_error_naming_table_and_column(tmp_path):
    src = _source(tmp_path, fmt="csv")
    text = (src / "activity.csv").read_text().splitlines()
    (src / "activity.csv").write_text("\n".join([text[0] + ',"ward","ward"'] + [r + ",a,b" for r in text[1:]]) + "\n")
    with pytest.raises(IngestError, match="table activity: column 'ward' appears more than once"):
        run_ingest(src, tmp_path / "s1")
    src = _source(tmp_path, "pq")
    pats = pq.read_table(src / "patients.parquet")
    _put(src, "patients", pa.Table.from_arrays([*pats.columns, pats.column("sex")], names=[*pats.column_names, "sex"]))
    with pytest.raises(IngestError, match="table patients: column 'sex' appears more than once"):
        run_ingest(src, tmp_path / "s2")


# --- 5. ingest reads what analysts have ----------------------------------------------------

def test_a_folder_of_parquet_parts_is_one_table(tmp_path):
    single = run_ingest(_source(tmp_path, "single"), tmp_path / "s1")
    src = _source(tmp_path, "parts")
    act = pq.read_table(src / "activity.parquet")
    (src / "activity.parquet").unlink()
    (src / "activity").mkdir()
    pq.write_table(act.slice(0, 2), src / "activity" / "part-0.parquet")
    pq.write_table(act.slice(2), src / "activity" / "part-1.parquet")
    (src / "activity" / "_SUCCESS").write_text("")  # what Spark leaves: not a part, not a warning
    summary = run_ingest(src, tmp_path / "s2")
    assert summary.tables["activity"].read == 3
    assert summary.snapshot_id == single.snapshot_id  # the same data, however it was written
    assert summary.ignored == []
    assert Store.open(tmp_path / "s2").manifest["source"]["tables"]["activity"] == "activity/"


def test_hive_partitions_become_columns(tmp_path):
    src = _source(tmp_path)
    act = pq.read_table(src / "activity.parquet")
    (src / "activity.parquet").unlink()
    for i, (year, month) in enumerate([("2025", "01"), ("2024", "03"), ("2024", "12")]):
        row = act.slice(i, 1)
        setting = row.column("setting")[0].as_py()
        folder = src / "activity" / f"year={year}" / f"month={month}" / f"setting={setting}"
        folder.mkdir(parents=True)
        pq.write_table(row.drop_columns(["setting"]), folder / "part-0.parquet")
    summary = run_ingest(src, tmp_path / "store")
    assert summary.tables["activity"].stored == 3
    assert summary.extras == {"activity": ["year", "month"]}
    a = Store.open(tmp_path / "store").table("activity")
    settings = a.encodings["setting"]["values"]
    assert [settings[i] for i in a["setting"]] == ["gp", "emergency_admission", "ae"]  # from the folders
    assert a.arrow.column("extra__month").to_pylist() == ["12", "01", "03"]  # as the paths give them


def test_whatever_is_not_used_is_listed_as_ignored(tmp_path):
    src = _source(tmp_path)
    (src / "notes").mkdir()
    (src / "notes" / "read me.txt").write_text("x")
    (src / "cohort.parquet").write_bytes(b"x")
    act = pq.read_table(src / "activity.parquet")
    (src / "activity.parquet").unlink()
    (src / "activity").mkdir()
    pq.write_table(act, src / "activity" / "part-0.parquet")
    (src / "activity" / "schema.json").write_text("{}")
    (src / "restricted" / "keys").mkdir()
    summary = run_ingest(src, tmp_path / "store")
    assert sorted(summary.ignored) == ["activity/schema.json", "cohort.parquet", "notes/", "restricted/keys/"]
    assert "ignored (not contract tables)" in _printed(ingest_summary, summary)


def test_a_table_folder_without_parquet_parts_is_an_error(tmp_path):
    src = _source(tmp_path)
    (src / "activity.parquet").unlink()
    (src / "activity").mkdir()
    (src / "activity" / "part-0.csv").write_text("patient_id\n")
    with pytest.raises(IngestError, match=r"table activity: the folder .* holds no Parquet parts"):
        run_ingest(src, tmp_path / "store")


def test_large_and_dictionary_encoded_text_reads_as_text(tmp_path):
    plain = run_ingest(_source(tmp_path, "plain"), tmp_path / "s1")
    src = _source(tmp_path, "odd")
    for name in ("patients", "activity", "practices"):
        t = pq.read_table(src / f"{name}.parquet")
        for i, col in enumerate(t.column_names):
            arr = t.column(col)
            t = t.set_column(i, col, arr.cast(pa.large_string()) if i % 2 else arr.dictionary_encode())
        _put(src, name, t)
    summary = run_ingest(src, tmp_path / "s2")
    assert summary.snapshot_id == plain.snapshot_id


def test_integer_types_are_read_when_the_values_fit(tmp_path):
    ints = {"patients": [(str(i), *r[1:]) for i, r in enumerate(GOOD["patients"], 1)],
            "activity": [("1", *GOOD["activity"][0][1:])]}
    src = _source(tmp_path, patients=None, activity=None, diagnoses=None, medications=None,
                  observations=None, experience=None, registers=None, opt_outs=None, identities=None)
    _put(src, "patients", _typed("patients", ints["patients"], patient_id=pa.uint64(), imd_decile=pa.uint8()))
    act = _typed("activity", ints["activity"], patient_id=pa.int16())
    _put(src, "activity", _with_column(act, "cost", pa.array([2**63 + 5], pa.uint64())))
    summary = run_ingest(src, tmp_path / "store")
    assert summary.tables["patients"].stored == 3
    assert summary.tables["activity"].stored == 1
    st = Store.open(tmp_path / "store")
    assert st.table("patients")["imd_decile"].tolist() == [3, 0, 7]
    assert st.table("activity")["cost"].tolist() == [float(2**63 + 5)]


@pytest.mark.parametrize("arr", [
    pa.array([["x"]] * 3, pa.list_(pa.string())), pa.array([{"v": "x"}] * 3, pa.struct([("v", pa.string())])),
    pa.array([[("k", "x")]] * 3, pa.map_(pa.string(), pa.string())), pa.array([b"x"] * 3, pa.binary()),
    pa.array([5] * 3, pa.duration("s")), pa.array([5] * 3, pa.time64("us"))], ids=lambda a: str(a.type))
def test_a_contract_column_of_an_unusable_type_is_an_error_naming_it(tmp_path, arr):
    src = _source(tmp_path)
    _put(src, "activity", _with_column(pq.read_table(src / "activity.parquet"), "provider_code", arr))
    with pytest.raises(IngestError, match=r"table activity: column provider_code has type (list|struct|map|binary|"
                                          r"duration|time64).*which the contract cannot read as text"):
        run_ingest(src, tmp_path / "store")


def test_a_duckdb_interval_column_is_an_error_naming_it(tmp_path):
    import duckdb

    db = tmp_path / "source.duckdb"
    con = duckdb.connect(str(db))
    for name, rows in GOOD.items():
        t = as_table(name, rows)  # noqa: F841 (read by duckdb below)
        con.execute(f"create table {name} as select * from t")
    con.execute("alter table activity alter provider_code type interval using interval 1 day")
    con.close()
    with pytest.raises(IngestError, match="table activity: column provider_code has type month_day_nano_interval"):
        run_ingest(db, tmp_path / "store")


def test_extras_of_unusable_types_are_dropped_with_a_note_and_quarantine_copes(tmp_path):
    src = _source(tmp_path, activity=[("p1", "2025-01-01", N, "spa", N, N, N, N)])  # one bad row
    act = pq.read_table(src / "activity.parquet")
    act = _with_column(act, "tags", pa.array([["a"], [], None, ["b", "c"]], pa.list_(pa.string())))
    act = _with_column(act, "blob", pa.array([b"\x00", b"\xff\xfe", None, b"\xff"], pa.binary()))
    act = _with_column(act, "wait", pa.array([1, 2, None, 3], pa.duration("s")))
    _put(src, "activity", act)
    summary = run_ingest(src, tmp_path / "store")
    assert list(summary.dropped_columns) == ["activity"] and list(summary.dropped_columns["activity"]) == ["tags"]
    assert summary.dropped_columns["activity"]["tags"].startswith("the store cannot hold type list<")
    assert summary.extras == {"activity": ["blob", "wait"]}
    st = Store.open(tmp_path / "store")
    q = st.quarantine("activity")
    assert q.column("_reason").to_pylist() == ["unknown_setting"]
    assert q.column("extra__blob").to_pylist() == ["b'\\xff'"]  # not UTF-8: written as Python prints it
    assert st.table("activity").arrow.column("extra__wait").type == pa.duration("s")
    assert "activity: column(s) not kept: tags (the store cannot hold type" in _printed(ingest_summary, summary)


@pytest.mark.parametrize("patients", ["header-only", "all-quarantined"])
def test_no_patients_is_an_error_and_the_store_is_left_unchanged(tmp_path, patients):
    root = tmp_path / "store"
    first = run_ingest(_source(tmp_path), root)
    src = _source(tmp_path, "bad", fmt="csv")
    rows = [] if patients == "header-only" else [("p1", "1950-03-01", "F", "Q99999", "2000-01-01", N, N, N, N, N)]
    write_source(src, {"patients": rows})
    with pytest.raises(IngestError, match="no patients could be stored") as e:
        run_ingest(src, root)
    if patients == "all-quarantined":
        assert "all 1 rows of patients break the contract (unknown_practice 1)" in str(e.value)
    assert Store.open(root).snapshot_id == first.snapshot_id
    assert _identities_point_at_their_patients(root) is not None


# --- 6. non-finite numbers and implausible dates are quarantined ---------------------------

def _one_bad_row_quarantined(tmp_path, src, table: str, reason: str, column: str) -> None:
    summary = run_ingest(src, tmp_path / "store")
    _accounting_is_exact(summary)
    assert summary.tables[table].quarantined == {reason: 1}
    q = Store.open(tmp_path / "store").quarantine(table)
    assert q.column("_column").to_pylist() == [column]


@pytest.mark.parametrize("table,column,value", [
    ("observations", "value", float("nan")),  # a required column: NaN is not missing, it is wrong
    ("activity", "cost", float("inf")),
    ("activity", "cost", float("-inf")),  # not negative_cost: not a cost at all
    ("medications", "quantity", float("nan")),
    ("experience", "value", float("-inf")),
])
def test_non_finite_parquet_numbers_are_out_of_range(tmp_path, table, column, value):
    src = _source(tmp_path)
    t = pq.read_table(src / f"{table}.parquet")
    t = _with_column(t, column, pc.cast(t.column(column), pa.float64()))
    bad = t.slice(0, 1).set_column(t.schema.get_field_index(column), column, pa.array([value]))
    _put(src, table, pa.concat_tables([t, bad]))
    _one_bad_row_quarantined(tmp_path, src, table, "out_of_range", column)


def test_a_csv_number_too_large_for_a_double_is_out_of_range(tmp_path):
    src = _source(tmp_path, fmt="csv", observations=[("p1", "2025-06-02", "snomed", "271649006", "1e400", N)])
    _one_bad_row_quarantined(tmp_path, src, "observations", "out_of_range", "value")


@pytest.mark.parametrize("value", ["0000-01-01", "1899-12-31", "2100-01-01", "9999-12-31"])
def test_implausible_text_dates_are_out_of_range(tmp_path, value):
    src = _source(tmp_path, fmt="csv", diagnoses=[("p1", value, "snomed", "38341003", N)])
    _one_bad_row_quarantined(tmp_path, src, "diagnoses", "out_of_range", "date")


@pytest.mark.parametrize("bad", [
    pa.array([-2**31], pa.int32()).cast(pa.date32()),       # date32's minimum (the store's missing day)
    pa.array([2**31 - 1], pa.int32()).cast(pa.date32()),    # and maximum
    pa.array([2**62], pa.int64()).cast(pa.timestamp("ms")),  # overflows date32 when cast
    pa.array([-2**62], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    pa.array([dt.datetime(1800, 1, 1)], pa.timestamp("us")),
], ids=lambda a: str(a.type))
def test_implausible_parquet_dates_are_out_of_range(tmp_path, bad):
    src = _source(tmp_path)
    naive = pa.timestamp(bad.type.unit) if pa.types.is_timestamp(bad.type) else bad.type
    t = _typed("diagnoses", GOOD["diagnoses"], date=naive)
    t = _with_column(t, "date", t.column("date").cast(bad.type))
    row = t.slice(0, 1).set_column(t.schema.get_field_index("date"), "date", bad)
    _put(src, "diagnoses", pa.concat_tables([t, row]))
    _one_bad_row_quarantined(tmp_path, src, "diagnoses", "out_of_range", "date")
    d = Store.open(tmp_path / "store").table("diagnoses")
    assert d.num_rows == 3 and (d["date"] > -2**31).all()


@pytest.mark.parametrize("bad", [
    pa.array([2**62, 0, None], pa.int64()).cast(pa.date64()),  # Parquet cannot hold these; DuckDB can
    pa.array([2**62, 0, None], pa.int64()).cast(pa.timestamp("s")),
    pa.array([-2**63 + 1, 0, None], pa.int64()).cast(pa.timestamp("ns")),
], ids=lambda a: str(a.type))
def test_dates_that_overflow_a_day_number_are_out_of_range_not_garbage(bad):
    t = pa.table({"patient_id": ["p1"] * 3, "date": bad, "code_system": ["snomed"] * 3, "code": ["1"] * 3})
    n = normalise(TABLES["diagnoses"], t)
    assert n.implausible["date"].tolist() == [True, False, False]
    assert n.failed["date"].tolist() == [False, False, False]
    assert n.columns["date"].to_pylist() == [None, dt.date(1970, 1, 1), None]


def test_dates_at_the_edges_of_the_window_are_kept(tmp_path):
    src = _source(tmp_path, fmt="csv", patients=[("old", "1900-01-01", "F", "Z00001", "1990-01-01", N, N, N, N, N)],
                  registers=[("p1", "palliative_care", "2025-01-01", "2099-12-31")])
    summary = run_ingest(src, tmp_path / "store")
    assert summary.quarantined_total == 0


# --- 7. names that become paths are safe -----------------------------------------------------

BAD_CODES = ["../../../evil_out/pwn", "/abs/path", "./Z00002", "=cmd|x", "Z0 0002", "Z" * 200, "z00002",
             "..", "-Z1", "Z0000\u00e9", "Z" * 17]


@pytest.mark.parametrize("code", BAD_CODES, ids=range(len(BAD_CODES)))
@pytest.mark.parametrize("column", ["practice_code", "locality_code", "system_code"])
def test_practice_locality_and_system_codes_that_could_become_paths_are_quarantined(tmp_path, column, code):
    row = dict(zip(TABLES["practices"].names, ("Z00003", "Pine", "LOC001", "North", "SYS01", "Demo ICB")))
    row[column] = code
    src = _source(tmp_path, practices=[tuple(row.values())])
    _one_bad_row_quarantined(tmp_path, src, "practices", "invalid_code", column)


@pytest.mark.parametrize("code", BAD_CODES[:6], ids=range(6))
def test_a_patients_practice_code_that_could_become_a_path_is_quarantined(tmp_path, code):
    src = _source(tmp_path, patients=[("b1", "1951-01-01", "F", code, "2000-01-01", N, N, N, N, N)])
    _one_bad_row_quarantined(tmp_path, src, "patients", "invalid_code", "practice_code")


def test_ods_style_codes_are_kept(tmp_path):
    practices = [("A1", "Short", "PCN_7-B", "x", "QWE-01", "y"), ("Y" * 16, "Longest", "LOC001", "n", "SYS01", "d")]
    src = _source(tmp_path, practices=practices)
    assert run_ingest(src, tmp_path / "store").quarantined_total == 0

