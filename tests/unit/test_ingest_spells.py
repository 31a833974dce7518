"""Contract v2 on ingest: spell numbers shared by activity, diagnoses and procedures; the
spells' quarantine reasons; the derived CIP columns (cips_position, previous_discharge) at
their edges; and v1 sources, which ingest as before.

A patient's admissions in the CIP tests below, with what ingest derives (T = TRANSFER_DAYS,
"OH" = discharged to other_hospital; previous_discharge is the end of the latest earlier
CIP spell that ended on or before the admission's start):

    case                         admissions (start..end, destination)       cips  previous
    same-day readmission         01-01..01-05 home, 01-05..01-07            1, 1  -, 01-05
    readmission 29/30/31 days    01-01..01-02 home, then 29/30/31 days on   1, 1  -, 01-02
    transfer same day / T / T+1  01-01..01-05 OH, 01-05 / 01-07 / 01-08     1, 2  -, -
                                                              (T + 1:)      1, 1  -, 01-05
    chain, then readmission      01-01..01-05 OH, 01-06..01-10 OH,          1, 2, 3, 1
                                 01-12..01-20 home, 02-01..02-03            -, -, -, 01-20
"""
from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from casefind.contract.dates import NULL_DAY, from_day
from casefind.contract.schema import ADMISSION_SETTINGS, DISCHARGE_DESTINATIONS, MAX_POSITION, SETTINGS, TRANSFER_DAYS
from casefind.ingest import run_ingest, spells
from casefind.store import Store
from casefind_testdata import GOOD, N, as_table, write_source

PRACTICES = GOOD["practices"]


def person(pid: str) -> tuple:
    return (pid, "1950-01-01", "F", "Z00001", "2000-01-01", N, N, N, N, N)


def adm(pid, start, end=None, dest="home", setting="emergency_admission", spell=None) -> tuple:
    return (pid, start, end, setting, N, N, N, dest, spell)


def day(iso: str, plus: int = 0) -> str:
    return (dt.date.fromisoformat(iso) + dt.timedelta(days=plus)).isoformat()


def ingest(tmp_path, tables: dict, fmt: str = "csv"):
    """Ingest event tables (patients: everyone they name, plus ann)."""
    pids = sorted({"ann", *(r[0] for rows in tables.values() for r in rows)} - {"nobody"})
    tables = {"practices": PRACTICES, "patients": [person(p) for p in pids], **tables}
    summary = run_ingest(write_source(tmp_path / "src", tables, fmt), tmp_path / "store")
    return summary, Store.open(tmp_path / "store")


def rows_of(store: Store, table: str, *columns: str) -> list[tuple]:
    """(patient_id, column values...) in store order; dates as ISO text, nulls as None."""
    t = store.table(table)
    ids = store.table("patients")["patient_id"]
    out = []
    for i in range(t.num_rows):
        row = [ids[t["patient"][i]]]
        for c in columns:
            v = t[c][i]
            kind = t.encodings[c]["kind"]
            if kind == "date":
                row.append(None if v == NULL_DAY else str(from_day(v)))
            elif kind in ("int", "spell"):
                row.append(None if v == 0 else int(v))
            elif kind == "enum":
                row.append(None if v < 0 else t.encodings[c]["values"][v])
            else:
                row.append(v)
        out.append(tuple(row))
    return out


def cips(tmp_path, activity: list[tuple]) -> list[tuple]:
    """(patient, start, cips_position, previous_discharge) of each activity row."""
    _, store = ingest(tmp_path, {"activity": activity})
    return [(p, s, c, d) for p, s, c, d in rows_of(store, "activity", "start_date", "cips_position",
                                                    "previous_discharge")]


# --- spell numbers -------------------------------------------------------------------------

def test_spell_numbers_are_one_dictionary_shared_by_every_table(tmp_path):
    activity = [adm("ann", "2025-01-01", "2025-01-03", spell="RXX-9"),
                adm("bob", "2025-02-01", "2025-02-02", spell="A1"),
                adm("ann", "2025-03-01", "2025-03-04", spell="RXX-10"),
                ("ann", "2025-04-01", N, "gp", N, N, N, N, N)]
    diagnoses = [("ann", "2025-01-01", "icd10", "J18.9", "acute", "RXX-9", "1"),
                 ("ann", "2025-01-01", "icd10", "I10", "acute", "RXX-9", "2"),
                 ("bob", "2025-02-01", "icd10", "I50.9", "acute", "A1", "1"),
                 ("ann", "2025-03-01", "icd10", "J44.1", "acute", "RXX-10", "1"),
                 ("ann", "2024-01-01", "snomed", "38341003", "primary_care", N, N)]
    procedures = [("bob", "2025-02-01", "opcs4", "K40.1", "A1", "1"),
                  ("ann", "2025-03-02", "opcs4", "K491", "RXX-10", N)]
    summary, store = ingest(tmp_path, {"activity": activity, "diagnoses": diagnoses, "procedures": procedures})
    assert summary.quarantined_total == 0
    names = store.dictionary("spell")
    assert names[0] is None and sorted(names[1:]) == ["A1", "RXX-10", "RXX-9"]  # entry n: spell n's source id
    assert store.manifest["dictionaries"]["spell"]["size"] == 4
    assert store.spell_ids(store.table("activity")["spell_id"]).tolist() == ["RXX-9", "RXX-10", None, "A1"]
    for table in ("activity", "diagnoses", "procedures"):
        assert store.table(table).encodings["spell_id"] == {"kind": "spell", "dictionary": "spell", "null": 0}
        assert store.table(table).arrow.schema.field("spell_id").type == pa.int32()
    date_of = {"activity": "start_date", "diagnoses": "date", "procedures": "date"}
    shown = {t: [(r[0], None if r[1] is None else names[r[1]]) + r[2:] for r in rows_of(store, t, "spell_id", d)]
             for t, d in date_of.items()}
    assert shown["activity"] == [("ann", "RXX-9", "2025-01-01"), ("ann", "RXX-10", "2025-03-01"),
                                 ("ann", None, "2025-04-01"), ("bob", "A1", "2025-02-01")]
    assert shown["diagnoses"] == [("ann", None, "2024-01-01"), ("ann", "RXX-9", "2025-01-01"),
                                  ("ann", "RXX-9", "2025-01-01"), ("ann", "RXX-10", "2025-03-01"),
                                  ("bob", "A1", "2025-02-01")]
    assert shown["procedures"] == [("ann", "RXX-10", "2025-03-02"), ("bob", "A1", "2025-02-01")]
    # the same number in every table: a diagnosis joins its admission by number
    act = {r[1]: r for r in rows_of(store, "activity", "spell_id") if r[1]}
    for table in ("diagnoses", "procedures"):
        for pid, number in rows_of(store, table, "spell_id"):
            assert number is None or act[number][0] == pid
    assert [r[1:] for r in rows_of(store, "diagnoses", "position")] == [(None,), (1,), (2,), (1,), (1,)]
    assert [r[1:] for r in rows_of(store, "procedures", "position")] == [(None,), (1,)]


def test_spell_ids_given_as_integers_and_as_text_are_the_same_spell(tmp_path):
    src = write_source(tmp_path / "src", {"practices": PRACTICES, "patients": [person("ann")]}, "parquet")
    act = as_table("activity", [adm("ann", "2025-01-01", "2025-01-02", spell="x")])
    act = act.set_column(act.schema.get_field_index("spell_id"), "spell_id", pa.array([123456789012], pa.int64()))
    pq.write_table(act, src / "activity.parquet")
    pq.write_table(as_table("diagnoses", [("ann", "2025-01-01", "icd10", "J189", "acute", " 123456789012 ", "1")]),
                   src / "diagnoses.parquet")
    summary = run_ingest(src, tmp_path / "store")
    assert summary.quarantined_total == 0
    store = Store.open(tmp_path / "store")
    assert list(store.dictionary("spell")) == [None, "123456789012"]
    assert store.table("activity")["spell_id"].tolist() == [1] and store.table("diagnoses")["spell_id"].tolist() == [1]


def test_opcs4_and_icd10_codes_lose_their_dot_in_every_table(tmp_path):
    _, store = ingest(tmp_path, {
        "activity": [adm("ann", "2025-01-01", "2025-01-02", spell="S1")],
        "diagnoses": [("ann", "2025-01-01", "opcs4", "K40.1", "acute", "S1", N),
                      ("ann", "2025-01-01", "icd10", "J18.9", "acute", "S1", "1")],
        "procedures": [("ann", "2025-01-01", "opcs4", "K40.1", "S1", "1"),
                       ("ann", "2025-01-01", "opcs4", "K49", "S1", "2")]})
    assert list(store.dictionary("code.opcs4")) == ["K401", "K49"]
    assert list(store.dictionary("code.icd10")) == ["J189"]
    assert store.table("procedures").encodings["code"]["dictionaries"] == {"opcs4": "code.opcs4"}


# --- quarantine -------------------------------------------------------------------------------

def test_a_spell_is_one_activity_row_and_the_first_good_copy_is_kept(tmp_path):
    summary, store = ingest(tmp_path, {"activity": [
        ("ann", "2025-01-01", N, "spa", N, N, N, N, "S1"),  # bad (unknown_setting): does not claim S1
        adm("ann", "2025-01-02", "2025-01-03", spell="S1"),
        adm("bob", "2025-02-01", "2025-02-02", spell="S1"),  # another patient, same spell id
        adm("ann", "2025-01-05", "2025-01-06", spell="S1"),
        adm("ann", "2025-03-01", "2025-03-02"), adm("ann", "2025-04-01", "2025-04-02"),  # no spell_id: not spells
    ]})
    assert summary.tables["activity"].quarantined == {"unknown_setting": 1, "duplicate_spell": 2}
    q = store.quarantine("activity")
    assert list(zip(q.column("_source_row").to_pylist(), q.column("_reason").to_pylist(),
                    q.column("_column").to_pylist())) == [
        (1, "unknown_setting", "setting"), (3, "duplicate_spell", "spell_id"), (4, "duplicate_spell", "spell_id")]
    assert rows_of(store, "activity", "start_date", "spell_id") == [
        ("ann", "2025-01-02", 1), ("ann", "2025-03-01", None), ("ann", "2025-04-01", None)]


def test_diagnoses_and_procedures_name_a_stored_spell_of_the_same_patient(tmp_path):
    summary, store = ingest(tmp_path, {
        "activity": [adm("ann", "2025-01-01", "2025-01-03", spell="S1"),
                     ("bob", "2025-02-01", "2025-01-01", "emergency_admission", N, N, N, N, "S2"),  # end_before_start
                     adm("bob", "2025-03-01", "2025-03-02", spell="S3")],
        "diagnoses": [("ann", "2025-01-01", "icd10", "J189", "acute", "S1", "1"),
                      ("bob", "2025-01-01", "icd10", "J189", "acute", "S1", "1"),   # ann's spell
                      ("bob", "2025-02-01", "icd10", "J189", "acute", "S2", "1"),   # its spell was quarantined
                      ("bob", "2025-03-01", "icd10", "J189", "acute", "s3", "1"),   # ids are exact
                      ("bob", "2025-03-01", "icd10", "J189", "acute", "S3", "1")],
        "procedures": [("bob", "2025-03-01", "opcs4", "K401", "S3", "1"),
                       ("bob", "2025-03-01", "opcs4", "K401", "S1", "1"),
                       ("ann", "2025-01-01", "opcs4", "K401", "S4", N)]})
    assert summary.tables["activity"].quarantined == {"end_before_start": 1}
    assert summary.tables["diagnoses"].quarantined == {"unknown_spell": 3}
    assert summary.tables["procedures"].quarantined == {"unknown_spell": 2}
    assert store.quarantine("diagnoses").column("_source_row").to_pylist() == [2, 3, 4]
    assert set(store.quarantine("procedures").column("_column").to_pylist()) == {"spell_id"}
    assert [r[:2] for r in rows_of(store, "diagnoses", "spell_id")] == [("ann", 1), ("bob", 2)]


def test_no_activity_table_means_no_spells(tmp_path):
    summary, _ = ingest(tmp_path, {"diagnoses": [("ann", "2025-01-01", "icd10", "J189", "acute", "S1", "1"),
                                                 ("ann", "2025-01-01", "icd10", "J189", "acute", N, N)]})
    assert summary.tables["diagnoses"].quarantined == {"unknown_spell": 1}


@pytest.mark.parametrize("position,reason", [
    ("0", "out_of_range"), ("100", "out_of_range"), (str(MAX_POSITION), None), ("1", None), ("2.5", "out_of_range"),
    ("-1", "out_of_range"), ("first", "unparseable_number"), ("1e400", "out_of_range"), ("", None)])
def test_positions_are_whole_numbers_from_1_to_max_position(tmp_path, position, reason):
    summary, store = ingest(tmp_path, {
        "activity": [adm("ann", "2025-01-01", "2025-01-02", spell="S1")],
        "diagnoses": [("ann", "2025-01-01", "icd10", "J189", "acute", "S1", position)],
        "procedures": [("ann", "2025-01-01", "opcs4", "K401", "S1", position)]})
    for table in ("diagnoses", "procedures"):
        assert summary.tables[table].quarantined == ({reason: 1} if reason else {}), table
    if reason is None:
        want = int(position) if position else None
        assert rows_of(store, "procedures", "position") == [("ann", want)]
        assert store.table("procedures").arrow.schema.field("position").type == pa.int8()


def test_a_position_needs_a_spell(tmp_path):
    summary, store = ingest(tmp_path, {
        "activity": [adm("ann", "2025-01-01", "2025-01-02", spell="S1")],
        "diagnoses": [("ann", "2025-01-01", "icd10", "J189", "acute", N, "1"),
                      ("ann", "2025-01-01", "icd10", "J189", "acute", "S1", N)],  # a spell without a position: kept
        "procedures": [("ann", "2025-01-01", "opcs4", "K401", N, "1"), ("ann", "2025-01-01", "opcs4", "K401", N, N)]})
    assert summary.tables["diagnoses"].quarantined == {"position_without_spell": 1}
    assert summary.tables["procedures"].quarantined == {"position_without_spell": 1}
    assert store.quarantine("diagnoses").column("_column").to_pylist() == ["position"]
    assert rows_of(store, "procedures", "spell_id", "position") == [("ann", None, None)]


def test_procedures_are_opcs4(tmp_path):
    summary, _ = ingest(tmp_path, {"activity": [adm("ann", "2025-01-01", "2025-01-02", spell="S1")],
                                   "procedures": [("ann", "2025-01-01", "snomed", "80146002", "S1", "1"),
                                                  ("ann", "2025-01-01", "OPCS4", "K401", "S1", "1"),
                                                  ("ann", "2025-01-01", "opcs4", "K401", "S1", "1")]})
    assert summary.tables["procedures"].quarantined == {"unknown_code_system": 2}


def test_a_source_column_named_like_a_derived_one_is_dropped_and_never_read(tmp_path):
    src = write_source(tmp_path / "src", {"practices": PRACTICES, "patients": [person("ann")]}, "parquet")
    act = as_table("activity", [adm("ann", "2025-01-01", "2025-01-02"), adm("ann", "2025-01-10", "2025-01-12")])
    act = act.append_column("cips_position", pa.array(["7", "oops"])).append_column(
        "previous_discharge", pa.array(["1999-01-01", None]))
    pq.write_table(act, src / "activity.parquet")
    summary = run_ingest(src, tmp_path / "store")
    assert summary.quarantined_total == 0
    assert set(summary.dropped_columns["activity"]) == {"cips_position", "previous_discharge"}
    assert all(why.startswith("derived on ingest") for why in summary.dropped_columns["activity"].values())
    assert "activity" not in summary.missing_columns or "cips_position" not in summary.missing_columns["activity"]
    store = Store.open(tmp_path / "store")
    assert rows_of(store, "activity", "cips_position", "previous_discharge") == [
        ("ann", 1, None), ("ann", 1, "2025-01-02")]
    assert not any(c.startswith("extra__") for c in store.table("activity").columns)


# --- derived CIP columns ------------------------------------------------------------------------

def test_same_day_readmission(tmp_path):
    assert cips(tmp_path, [adm("ann", "2025-01-01", "2025-01-05"), adm("ann", "2025-01-05", "2025-01-07")]) == [
        ("ann", "2025-01-01", 1, None), ("ann", "2025-01-05", 1, "2025-01-05")]


@pytest.mark.parametrize("gap", [29, 30, 31])
def test_readmission_days_after_discharge(tmp_path, gap):
    assert cips(tmp_path, [adm("ann", "2025-01-01", "2025-01-02"), adm("ann", day("2025-01-02", gap))]) == [
        ("ann", "2025-01-01", 1, None), ("ann", day("2025-01-02", gap), 1, "2025-01-02")]


@pytest.mark.parametrize("gap,transfer", [(0, True), (1, True), (TRANSFER_DAYS, True), (TRANSFER_DAYS + 1, False)])
def test_transfer_within_transfer_days_of_a_discharge_to_another_hospital(tmp_path, gap, transfer):
    start = day("2025-01-05", gap)
    got = cips(tmp_path, [adm("ann", "2025-01-01", "2025-01-05", dest="other_hospital"),
                          adm("ann", start, day(start, 3))])
    assert got == [("ann", "2025-01-01", 1, None),
                   ("ann", start, 2, None) if transfer else ("ann", start, 1, "2025-01-05")]


@pytest.mark.parametrize("dest", ["home", "care_home", "died", "other", None])
def test_only_a_discharge_to_another_hospital_is_a_transfer(tmp_path, dest):
    assert cips(tmp_path, [adm("ann", "2025-01-01", "2025-01-05", dest=dest), adm("ann", "2025-01-05")]) == [
        ("ann", "2025-01-01", 1, None), ("ann", "2025-01-05", 1, "2025-01-05")]


def test_a_chain_of_two_transfers_then_a_readmission_counts_from_the_end_of_the_chain(tmp_path):
    assert cips(tmp_path, [
        adm("ann", "2025-01-01", "2025-01-05", dest="other_hospital"),
        adm("ann", "2025-01-06", "2025-01-10", dest="other_hospital", setting="elective_admission"),
        adm("ann", "2025-01-12", "2025-01-20", dest="home"),
        adm("ann", "2025-02-01", "2025-02-03"),
        adm("ann", "2025-02-10"),
    ]) == [("ann", "2025-01-01", 1, None), ("ann", "2025-01-06", 2, None), ("ann", "2025-01-12", 3, None),
           ("ann", "2025-02-01", 1, "2025-01-20"), ("ann", "2025-02-10", 1, "2025-02-03")]


def test_a_chain_that_ends_with_a_discharge_to_another_hospital_still_ends(tmp_path):
    """Transferred out and not seen again within TRANSFER_DAYS: the chain ended there."""
    assert cips(tmp_path, [adm("ann", "2025-01-01", "2025-01-05", dest="other_hospital"),
                           adm("ann", "2025-01-06", "2025-01-09", dest="other_hospital"),
                           adm("ann", "2025-01-30")]) == [
        ("ann", "2025-01-01", 1, None), ("ann", "2025-01-06", 2, None), ("ann", "2025-01-30", 1, "2025-01-09")]


def test_an_elective_spell_is_a_previous_discharge(tmp_path):
    assert cips(tmp_path, [adm("ann", "2025-01-01", "2025-01-03", setting="elective_admission"),
                           adm("ann", "2025-01-10", "2025-01-12")]) == [
        ("ann", "2025-01-01", 1, None), ("ann", "2025-01-10", 1, "2025-01-03")]


def test_rows_that_are_not_admissions_have_no_cip_values_and_break_no_chain(tmp_path):
    got = cips(tmp_path, [
        adm("ann", "2025-01-01", "2025-01-05", dest="other_hospital"),
        ("ann", "2025-01-05", N, "ae", N, N, N, N, N),
        ("ann", "2025-01-06", "2025-01-06", "outpatient", N, N, N, "home", N),
        adm("ann", "2025-01-06", "2025-01-08"),
        ("ann", "2025-01-20", N, "gp", N, N, N, N, N)])
    assert got == [("ann", "2025-01-01", 1, None), ("ann", "2025-01-05", None, None), ("ann", "2025-01-06", None, None),
                   ("ann", "2025-01-06", 2, None), ("ann", "2025-01-20", None, None)]


def test_overlapping_spells_are_not_transfers(tmp_path):
    got = cips(tmp_path, [
        adm("ann", "2024-06-01", "2024-06-03"),
        adm("ann", "2025-01-01", "2025-01-20", dest="other_hospital"),
        adm("ann", "2025-01-05", "2025-01-06"),     # starts inside the one before: a CIP spell of its own
        adm("ann", "2025-01-25", "2025-01-26"),     # the latest end on or before its start: 01-20
    ])
    assert got == [("ann", "2024-06-01", 1, None), ("ann", "2025-01-01", 1, "2024-06-03"),
                   ("ann", "2025-01-05", 1, "2024-06-03"), ("ann", "2025-01-25", 1, "2025-01-20")]


def test_admissions_on_one_day_are_taken_in_order_of_their_end(tmp_path):
    """Source order does not matter: the same-day spell (transferred out) came first."""
    got = cips(tmp_path, [adm("ann", "2025-01-05", "2025-01-09"),
                          adm("ann", "2025-01-05", "2025-01-05", dest="other_hospital")])
    assert sorted(got, key=lambda r: r[2]) == [("ann", "2025-01-05", 1, None), ("ann", "2025-01-05", 2, None)]


def test_no_end_date_ends_no_chain(tmp_path):
    got = cips(tmp_path, [
        adm("ann", "2024-06-01", "2024-06-03"),
        adm("ann", "2025-01-01", None, dest="other_hospital"),   # still in hospital: not a transfer...
        adm("ann", "2025-01-02", "2025-01-05", dest="other_hospital"),
        adm("ann", "2025-01-06", None),                           # ...this chain has no end
        adm("ann", "2025-03-01", "2025-03-02"),
    ])
    assert got == [("ann", "2024-06-01", 1, None), ("ann", "2025-01-01", 1, "2024-06-03"),
                   ("ann", "2025-01-02", 1, "2024-06-03"), ("ann", "2025-01-06", 2, None),
                   ("ann", "2025-03-01", 1, "2024-06-03")]


def test_patients_do_not_share_chains(tmp_path):
    got = cips(tmp_path, [adm("ann", "2025-01-01", "2025-01-05", dest="other_hospital"), adm("bob", "2025-01-05"),
                          adm("bob", "2025-01-06", "2025-01-07", dest="other_hospital"), adm("cat", "2025-01-07")])
    assert got == [("ann", "2025-01-01", 1, None), ("bob", "2025-01-05", 1, None), ("bob", "2025-01-06", 1, None),
                   ("cat", "2025-01-07", 1, None)]


# --- the derivation itself: a reference, looking backwards only, and its limits ---------------

_E, _OTHER = SETTINGS.index("emergency_admission"), DISCHARGE_DESTINATIONS.index("other_hospital")
_ADMIT = [SETTINGS.index(s) for s in ADMISSION_SETTINGS]


def _reference(patient, start, end, setting, dest):
    """The schema's definition, written plainly, one patient at a time."""
    n = len(patient)
    pos, prev = [0] * n, [NULL_DAY] * n
    for p in set(patient.tolist()):
        rows = [i for i in range(n) if patient[i] == p and setting[i] in _ADMIT]
        rows.sort(key=lambda i: (start[i], end[i] if end[i] != NULL_DAY else 2**31, i))
        chains = []  # [rows of a chain], in order
        for k, i in enumerate(rows):
            j = rows[k - 1] if k else None
            if (j is not None and dest[j] == _OTHER and end[j] != NULL_DAY
                    and 0 <= start[i] - end[j] <= TRANSFER_DAYS):
                chains[-1].append(i)
                pos[i] = min(pos[j] + 1, MAX_POSITION)
                continue
            ends = [end[c[-1]] for c in chains if end[c[-1]] != NULL_DAY and end[c[-1]] <= start[i]]
            prev[i] = max(ends) if ends else NULL_DAY
            pos[i] = 1
            chains.append([i])
    return np.array(pos), np.array(prev)


def _random_activity(rng, n, patients=6, span=60):
    patient = np.sort(rng.integers(0, patients, n)).astype(np.int32)
    start = rng.integers(20000, 20000 + span, n).astype(np.int32)
    end = np.where(rng.random(n) < 0.15, NULL_DAY, start + rng.integers(0, 6, n)).astype(np.int32)
    setting = rng.choice(np.array([_E, _ADMIT[1], SETTINGS.index("ae"), SETTINGS.index("gp")], np.int8), n)
    dest = rng.choice(np.array([_OTHER, _OTHER, 0, -1], np.int8), n)
    return patient, start, end, setting, dest


@pytest.mark.parametrize("seed", range(30))
def test_derivation_matches_the_definition(seed):
    rng = np.random.default_rng(seed)
    cols = _random_activity(rng, int(rng.integers(1, 80)))
    pos, prev = spells.derive(*cols)
    want_pos, want_prev = _reference(*cols)
    assert pos.tolist() == want_pos.tolist()
    assert prev.tolist() == want_prev.tolist()


@pytest.mark.parametrize("seed", range(10))
def test_derivation_looks_only_backwards(seed):
    """Leaving out every row that starts after a date changes nothing for the rows before it."""
    rng = np.random.default_rng(seed)
    cols = _random_activity(rng, 200)
    pos, prev = spells.derive(*cols)
    for cutoff in range(20000, 20060, 7):
        keep = cols[1] <= cutoff
        p2, v2 = spells.derive(*(c[keep] for c in cols))
        assert p2.tolist() == pos[keep].tolist() and v2.tolist() == prev[keep].tolist()


def test_a_long_chain_of_transfers_stops_counting_at_max_position():
    n = MAX_POSITION + 20
    start = (20000 + 2 * np.arange(n)).astype(np.int32)
    pos, prev = spells.derive(np.zeros(n, np.int32), start, start + 1, np.full(n, _E, np.int8),
                              np.full(n, _OTHER, np.int8))
    assert pos.dtype == np.int8 and pos.tolist() == [*range(1, MAX_POSITION + 1), *[MAX_POSITION] * 20]
    assert (prev == NULL_DAY).all()


def test_derivation_is_fast_at_scale():
    """A million patients, 200,000 admissions among 3 million rows: well under a second."""
    import time

    rng = np.random.default_rng(0)
    n = 3_000_000
    patient = np.sort(rng.integers(0, 1_000_000, n)).astype(np.int32)
    start = rng.integers(19000, 20500, n).astype(np.int32)
    setting = np.where(rng.random(n) < 0.067, _E, SETTINGS.index("gp")).astype(np.int8)
    args = (patient, start, (start + rng.integers(0, 8, n)).astype(np.int32), setting,
            rng.integers(-1, len(DISCHARGE_DESTINATIONS), n).astype(np.int8))
    spells.derive(*args)  # compiled (or loaded from the cache) first
    t0 = time.perf_counter()
    pos, _ = spells.derive(*args)
    assert time.perf_counter() - t0 < 2.0
    assert ((pos > 0) == (setting == _E)).all()


# --- v1 sources ---------------------------------------------------------------------------------

def test_a_v1_source_ingests_as_before(tmp_path):
    """GOOD is v1-shaped: no spell_id or position columns, no procedures file."""
    src = write_source(tmp_path / "src", GOOD)
    assert not (src / "procedures.csv").exists()
    summary = run_ingest(src, tmp_path / "store")
    assert summary.quarantined_total == 0
    assert {n: (s.read, s.stored) for n, s in summary.tables.items()} == {
        n: (len(rows), len(rows)) for n, rows in GOOD.items()}
    assert summary.missing_columns == {"activity": ["spell_id", "funding"], "diagnoses": ["spell_id", "position"]}
    assert summary.dropped_columns == {}
    store = Store.open(tmp_path / "store")
    assert store.manifest["contract_version"] == "2"
    proc = store.table("procedures")
    assert proc.num_rows == 0 and proc.columns == ["patient", "date", "code_system", "code", "spell_id", "position"]
    assert proc.offsets.tolist() == [0] * (store.n_patients + 1)
    assert (store.table("activity")["spell_id"] == 0).all() and (store.table("diagnoses")["position"] == 0).all()
    assert list(store.dictionary("spell")) == [None]
    # the CIP columns are derived from v1's columns all the same
    assert rows_of(store, "activity", "setting", "cips_position", "previous_discharge") == [
        ("p1", "gp", None, None), ("p1", "emergency_admission", 1, None), ("p2", "ae", None, None)]
    assert store.manifest["tables"]["activity"]["encodings"]["cips_position"]["derived"] is True


def test_every_contract_column_is_stored_in_contract_order(tmp_path):
    from casefind.contract import INPUT_EVENT_TABLES, TABLES

    _, store = ingest(tmp_path, {"activity": [adm("ann", "2025-01-01", "2025-01-02", spell="S1")]})
    for name in INPUT_EVENT_TABLES:
        want = ["patient", *[c.name for c in TABLES[name].columns if c.kind != "patient_id"]]
        assert store.table(name).columns == want, name
        assert list(store.table(name).encodings) == want[1:], name


def test_cip_values_depend_on_dates_not_on_source_order(tmp_path):
    rows = [adm("ann", "2025-01-01", "2025-01-05", dest="other_hospital"), adm("ann", "2025-01-06", "2025-01-08"),
            adm("ann", "2025-01-20", "2025-01-21"), ("ann", "2025-01-07", N, "gp", N, N, N, N, N)]
    results = set()
    for i, perm in enumerate(itertools.permutations(rows)):
        if i % 5:
            continue
        got = cips(tmp_path / str(i), list(perm))
        results.add(tuple(sorted(got, key=lambda r: (r[1], r[2] or 0))))
    assert len(results) == 1
    assert sorted(results.pop(), key=lambda r: r[1]) == [
        ("ann", "2025-01-01", 1, None), ("ann", "2025-01-06", 2, None), ("ann", "2025-01-07", None, None),
        ("ann", "2025-01-20", 1, "2025-01-08")]
