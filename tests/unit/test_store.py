"""The store: round trip, patient order and offsets, encodings, atomic swap, identities apart."""
from __future__ import annotations

import os
import stat

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from casefind.contract.dates import NULL_DAY, from_day, to_day
from casefind.ingest import run_ingest
from casefind.store import Store, StoreError
from casefind.store import writer as store_writer
from casefind_testdata import GOOD, as_table, with_bad_rows, write_source


@pytest.fixture
def store(tmp_path, tiny_source):
    run_ingest(tiny_source, tmp_path / "store")
    return Store.open(tmp_path / "store")


def test_patients_sorted_by_practice_then_id(store):
    p = store.table("patients")
    assert p["patient_id"].tolist() == ["p1", "p3", "p2"]
    assert p["practice"].tolist() == [0, 0, 1]
    assert store.table("practices")["practice_code"].tolist() == ["Z00001", "Z00002"]
    assert p["death_date"].tolist() == [NULL_DAY, NULL_DAY, to_day("2025-05-01")]
    assert p["imd_decile"].tolist() == [3, 0, 7]  # 0 = missing
    assert store.manifest["counts"] == {"patients": 3, "practices": 2, "localities": 1, "systems": 1}


def test_event_round_trip_with_offsets(store):
    a = store.table("activity")
    off = a.offsets
    assert off.tolist() == [0, 2, 2, 3]  # p1 two rows, p3 none, p2 one
    assert a["patient"].tolist() == [0, 0, 2]
    # p1's rows sorted by date
    assert [str(from_day(d)) for d in a["start_date"]] == ["2024-12-01", "2025-01-01", "2024-03-01"]
    settings = a.encodings["setting"]["values"]
    assert [settings[i] for i in a["setting"]] == ["gp", "emergency_admission", "ae"]
    assert np.isnan(a["cost"][0]) and a["cost"][1:].tolist() == [3000.0, 250.5]
    icd = store.dictionary("code.icd10")
    assert icd[a["primary_diagnosis"][1]] == "I509" and a["primary_diagnosis"][0] == -1
    assert a["end_date"].tolist() == [NULL_DAY, to_day("2025-01-05"), NULL_DAY]


def test_codes_per_system_and_icd10_dot_removed(store):
    d = store.table("diagnoses")
    systems = d.encodings["code_system"]["values"]
    decoded = [(systems[s], store.dictionary(f"code.{systems[s]}")[c]) for s, c in zip(d["code_system"], d["code"])]
    assert decoded == [("snomed", "44054006"), ("snomed", "38341003"), ("icd10", "I509")]
    # sorted dictionaries: a prefix is a contiguous range
    snomed = list(store.dictionary("code.snomed"))
    assert snomed == sorted(snomed)


def test_missing_optional_table_is_empty(tmp_path):
    tables = {k: v for k, v in GOOD.items() if k not in ("experience", "identities")}
    run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    st = Store.open(tmp_path / "store")
    assert st.table("experience").num_rows == 0
    assert st.table("experience").offsets.tolist() == [0, 0, 0, 0]


def test_extra_columns_are_kept(tmp_path):
    src = write_source(tmp_path / "src", GOOD, fmt="parquet")
    t = pq.read_table(src / "activity.parquet")
    pq.write_table(t.append_column("ward", pa.array(["w1", "w2", "w3"])), src / "activity.parquet")
    run_ingest(src, tmp_path / "store")
    a = Store.open(tmp_path / "store").table("activity")
    # rows reordered with their extra value: p1 gp (w3), p1 emergency (w1), p2 ae (w2); extras
    # are stored under a prefix, so they can never take the place of a store column
    assert a.arrow.column("extra__ward").to_pylist() == ["w3", "w1", "w2"]
    assert "ward" not in a.columns


def test_csv_parquet_and_duckdb_sources_give_the_same_snapshot(tmp_path):
    ids = []
    for fmt in ("csv", "parquet"):
        src = write_source(tmp_path / fmt, with_bad_rows(), fmt=fmt)
        ids.append(run_ingest(src, tmp_path / f"store-{fmt}").snapshot_id)
    db = tmp_path / "source.duckdb"
    con = duckdb.connect(str(db))
    for name, rows in with_bad_rows().items():
        t = as_table(name, rows)  # noqa: F841 (read by duckdb below)
        con.execute(f"create table {name} as select * from t")
    con.close()
    ids.append(run_ingest(db, tmp_path / "store-db").snapshot_id)
    assert len(set(ids)) == 1


def test_snapshot_id_is_a_content_hash(tmp_path, tiny_source):
    a = run_ingest(tiny_source, tmp_path / "s1").snapshot_id
    b = run_ingest(tiny_source, tmp_path / "s2").snapshot_id
    c = run_ingest(write_source(tmp_path / "bad", with_bad_rows()), tmp_path / "s1").snapshot_id
    assert a == b != c


def test_failed_ingest_leaves_previous_store_readable(tmp_path, tiny_source, monkeypatch):
    root = tmp_path / "store"
    first = run_ingest(tiny_source, root)
    before = Store.open(root)
    a_before = before.table("activity")["start_date"].copy()

    calls = {"n": 0}
    real = store_writer.SnapshotBuilder.write_arrow

    def crash_midway(self, relpath, table):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full (simulated)")
        return real(self, relpath, table)

    monkeypatch.setattr(store_writer.SnapshotBuilder, "write_arrow", crash_midway)
    with pytest.raises(OSError, match="simulated"):
        run_ingest(write_source(tmp_path / "bad", with_bad_rows()), root)
    after = Store.open(root)
    assert after.snapshot_id == first.snapshot_id
    assert np.array_equal(after.table("activity")["start_date"], a_before)
    assert not list(root.glob(".build-*"))


def test_refuses_to_build_over_a_folder_that_is_not_a_store(tmp_path, tiny_source):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.docx").write_text("precious")
    with pytest.raises(StoreError, match="not a casefind store"):
        run_ingest(tiny_source, target)
    assert (target / "thesis.docx").read_text() == "precious"


def test_identities_are_kept_apart(tmp_path, tiny_source):
    summary = run_ingest(tiny_source, tmp_path / "store", identities_store=tmp_path / "ids")
    assert summary.identities_store == tmp_path / "ids"
    for path in (tmp_path / "store").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (b"9434765919", b"Smith", b"Jones", b"nhs_number"):
                assert secret not in data, (path, secret)
    assert stat.S_IMODE(os.stat(tmp_path / "ids").st_mode) == 0o700
    ids = Store.open(tmp_path / "ids").table("identities")
    assert ids["nhs_number"].tolist() == ["9434765919", "4010232137"]
    assert ids["patient"].tolist() == [0, 2]  # store patient index of p1 and p2


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        Store.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a casefind store"):
        Store.open(tmp_path / "empty")


def test_a_second_writer_is_refused_while_one_holds_the_store(tmp_path, tiny_source):
    root = tmp_path / "store"
    run_ingest(tiny_source, root)
    first = store_writer.SnapshotBuilder(root)  # an ingest in progress
    try:
        with pytest.raises(StoreError, match="another ingest is writing"):
            run_ingest(tiny_source, root)
        assert first.dir.exists()  # its build was not swept away
    finally:
        first.abort()
    run_ingest(tiny_source, root)  # free again


def test_leftovers_of_a_killed_build_are_cleared(tmp_path, tiny_source):
    root = tmp_path / "store"
    run_ingest(tiny_source, root)
    (root / ".build-deadbeef").mkdir()
    run_ingest(tiny_source, root)
    assert not (root / ".build-deadbeef").exists()
