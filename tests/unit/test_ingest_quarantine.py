"""Every quarantine reason: one bad row in, that reason and a count of one out, good rows kept."""
from __future__ import annotations

import pytest

from casefind.contract.quarantine import REASONS
from casefind.ingest import IngestError, StrictModeError, run_ingest
from casefind.store import Store
from casefind_testdata import BAD, GOOD, N, with_bad_rows, write_source

# reasons added by the ingest hardening (the shared BAD list does not have them yet)
HARDENING_BAD = [
    ("practices", ("../../evil", "Escape", "LOC001", "North", "SYS01", "Demo ICB"), "invalid_code"),
    ("patients", ("b11", "1851-01-01", "F", "Z00001", "2000-01-01", N, N, N, N, N), "out_of_range"),
    ("activity", ("p1", "2025-01-01", N, "gp", "1e400", N, N, N), "out_of_range"),
    ("activity", ("p1", "2025-01-01", N, "community", "60", N, N, N, N, "grant"), "unknown_funding"),
]
ALL_BAD = BAD + HARDENING_BAD

# contract v2: spells. The good rows a spell's bad rows refer to (p1's admission S1, with a
# diagnosis and a procedure in it), then one bad row per reason.
SPELL_GOOD = {
    "activity": [("p1", "2025-02-01", "2025-02-03", "emergency_admission", N, "J189", "RXX", "home", "S1")],
    "diagnoses": [("p1", "2025-02-01", "icd10", "J18.9", "acute", "S1", "1")],
    "procedures": [("p1", "2025-02-02", "opcs4", "K40.1", "S1", "1")],
}
SPELL_BAD = [
    ("activity", ("p3", "2023-05-01", "2023-05-02", "elective_admission", N, N, N, "home", "S1"), "duplicate_spell"),
    ("diagnoses", ("p3", "2023-05-01", "icd10", "J189", "acute", "S1", "2"), "unknown_spell"),  # p1's spell
    ("diagnoses", ("p1", "2025-02-01", "icd10", "J189", "acute", "S9", N), "unknown_spell"),  # no such spell
    ("diagnoses", ("p1", "2025-02-01", "icd10", "J189", "acute", N, "2"), "position_without_spell"),
    ("diagnoses", ("p1", "2025-02-01", "icd10", "J189", "acute", "S1", "0"), "out_of_range"),
    ("procedures", ("p1", "2025-02-02", "opcs4", "K401", N, "2"), "position_without_spell"),
    ("procedures", ("p1", "2025-02-02", "opcs4", "K401", "S1", "100"), "out_of_range"),
    ("procedures", ("p1", "2025-02-02", "opcs4", "K401", "S1", "1.5"), "out_of_range"),
    ("procedures", ("p1", "2025-02-02", "icd10", "K401", "S1", "1"), "unknown_code_system"),
    ("procedures", ("p1", "2025-02-02", "opcs4", "K401", "S2", "1"), "unknown_spell"),
    ("procedures", ("nobody", "2025-02-02", "opcs4", "K401", "S1", "1"), "unknown_patient"),
    ("procedures", ("p1", "2025-02-02", "opcs4", N, "S1", "1"), "missing_value"),
]


def _spell_tables() -> dict[str, list]:
    tables = {k: list(v) for k, v in GOOD.items()}
    for name, rows in SPELL_GOOD.items():
        tables[name] = tables.get(name, []) + rows
    return tables


def test_every_reason_is_exercised():
    assert {reason for _, _, reason in ALL_BAD + SPELL_BAD} == set(REASONS)


@pytest.mark.parametrize("table,row,reason", ALL_BAD, ids=[f"{t}-{r}-{i}" for i, (t, _, r) in enumerate(ALL_BAD)])
def test_one_bad_row(tmp_path, table, row, reason):
    tables = {k: list(v) for k, v in GOOD.items()}
    tables[table].append(row)
    summary = run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    assert summary.tables[table].quarantined == {reason: 1}
    assert summary.tables[table].stored == len(GOOD[table])
    others = {n: s.quarantined for n, s in summary.tables.items() if n != table and s.quarantined}
    assert others == {}
    if table != "identities":
        q = Store.open(tmp_path / "store").quarantine(table)
        assert q.column("_reason").to_pylist() == [reason]
        assert q.column("_source_row").to_pylist() == [len(GOOD[table]) + 1]
        # the row is kept verbatim
        assert tuple(q.column(c).to_pylist()[0] for c in q.column_names[:len(row)]) == row


@pytest.mark.parametrize("table,row,reason", SPELL_BAD,
                         ids=[f"{t}-{r}-{i}" for i, (t, _, r) in enumerate(SPELL_BAD)])
def test_one_bad_spell_row(tmp_path, table, row, reason):
    tables = _spell_tables()
    good = len(tables[table])
    tables[table].append(row)
    summary = run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    assert summary.tables[table].quarantined == {reason: 1}
    assert summary.tables[table].stored == good
    others = {n: s.quarantined for n, s in summary.tables.items() if n != table and s.quarantined}
    assert others == {}
    q = Store.open(tmp_path / "store").quarantine(table)
    assert q.column("_reason").to_pylist() == [reason]
    assert q.column("_source_row").to_pylist() == [good + 1]
    assert tuple(q.column(c).to_pylist()[0] for c in q.column_names[:len(row)]) == row


def test_all_bad_rows_at_once(tmp_path):
    summary = run_ingest(write_source(tmp_path / "src", with_bad_rows()), tmp_path / "store")
    for table in GOOD:
        expected = {}
        for t, _, reason in BAD:
            if t == table:
                expected[reason] = expected.get(reason, 0) + 1
        assert summary.tables[table].quarantined == expected, table
        assert summary.tables[table].stored == len(GOOD[table])
    assert summary.quarantined_total == len(BAD)


def test_events_of_a_quarantined_patient_say_why(tmp_path):
    tables = {k: list(v) for k, v in GOOD.items()}
    tables["patients"].append(("b1", "1951-13-01", "F", "Z00001", "2000-01-01", None, None, None, None, None))
    tables["diagnoses"].append(("b1", "2020-01-01", "snomed", "38341003", None))
    run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    q = Store.open(tmp_path / "store").quarantine("diagnoses")
    assert q.column("_reason").to_pylist() == ["unknown_patient"]
    assert q.column("_detail").to_pylist() == ["patient row quarantined in patients"]


def test_strict_mode_fails_and_changes_nothing(tmp_path):
    store = tmp_path / "store"
    first = run_ingest(write_source(tmp_path / "good", GOOD), store, strict=True)
    with pytest.raises(StrictModeError) as e:
        run_ingest(write_source(tmp_path / "bad", with_bad_rows()), store, strict=True)
    assert e.value.summary.quarantined_total == len(BAD)
    assert Store.open(store).snapshot_id == first.snapshot_id


def test_missing_required_table_and_column(tmp_path):
    tables = {k: v for k, v in GOOD.items() if k != "practices"}
    with pytest.raises(IngestError, match=r"required table.*practices"):
        run_ingest(write_source(tmp_path / "a", tables), tmp_path / "s1")
    src = write_source(tmp_path / "b", GOOD)
    import pyarrow.csv as pacsv

    t = pacsv.read_csv(src / "activity.csv").drop_columns(["setting"])
    pacsv.write_csv(t, src / "activity.csv")
    with pytest.raises(IngestError, match=r"activity: missing column.*setting"):
        run_ingest(src, tmp_path / "s2")


def test_duplicate_first_good_row_is_kept_even_if_a_bad_copy_comes_first(tmp_path):
    tables = {k: list(v) for k, v in GOOD.items()}
    tables["patients"].insert(0, ("p1", "not a date", "F", "Z00001", "2000-01-01", None, None, None, None, None))
    summary = run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    assert summary.tables["patients"].quarantined == {"unparseable_date": 1}
    assert summary.tables["patients"].stored == 3
