"""Issue 8, "decisions recorded wrong": each test reproduces one finding of a hostile test of
`casefind review import` / `review record`, and shows it is refused (or read correctly)."""
from __future__ import annotations

import csv
import datetime as dt
import fcntl
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_review import read_rows, run_list

from casefind.errors import CasefindError
from casefind.lists import review
from casefind.lists.review import import_reviews, parse_date
from casefind.store import StoreBusy, decisions, listings
from casefind_testdata import cli

TODAY = dt.date(2026, 12, 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with two registered frail runs (2026-09-30 and 2026-10-31), no decisions."""
    root = tmp_path_factory.mktemp("hardening")
    assert cli("synth", "--patients", 12000, "--seed", 8, "--out", root / "src").exit_code == 0
    assert cli("ingest", root / "src", "--store", root / "store").exit_code == 0
    return root, run_list(root, "2026-09-30"), run_list(root, "2026-10-31")


@pytest.fixture
def store(world, tmp_path):
    """A copy of the world's store for one test, so each test starts with an empty log."""
    root, _, _ = world
    shutil.copytree(root / "store", tmp_path / "store", symlinks=True)
    return tmp_path / "store"


def _rows(path: Path) -> list[dict]:
    """A list file's rows by machine column name: a practice's file has instruction lines
    above its header and plain column titles (issue 12); list.csv has neither."""
    return read_rows(path)


def _practice_files(run_dir: Path) -> tuple[Path, Path]:
    """The first two practices' files that list someone (every practice has a file)."""
    first, second = [p for p in sorted((run_dir / "practices").glob("*.csv")) if _rows(p)][:2]
    return first, second


def _write(path: Path, rows: list[dict], *, delimiter: str = ",", encoding: str = "utf-8",
           extra_lines: str = "") -> Path:
    with path.open("w", newline="", encoding=encoding) as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)
        f.write(extra_lines)
    return path


def _import(path: Path, store: Path, *more):
    return cli("review", "import", path, "--store", store, *more)


def _refused(result, *expected: str) -> str:
    """The one-line-per-problem output of a refused import, checked for each expected text
    and for Python's None."""
    out = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    for text in expected:
        assert text in out, out
    assert "None" not in out
    return out


def _decided(store: Path, patient_id: str) -> list[tuple]:
    log = decisions.read_log(store)
    log = log.filter(pc.and_(pc.equal(log.column("patient_id"), patient_id),
                             pc.not_equal(log.column("decision"), "listed")))
    return sorted(zip(*(log.column(c).to_pylist() for c in ("decision", "date", "practice", "run_id"))))


def test_a_row_for_another_practices_patient_is_refused(world, store, tmp_path):
    _, run_dir, _ = world
    mine, theirs = _practice_files(run_dir)
    rows, foreign = _rows(mine), _rows(theirs)[0]
    stolen = {**foreign, "decision": "declined", "decided_on": "2026-10-05"}
    relabelled = {**stolen, "practice": mine.stem}
    path = _write(tmp_path / mine.name, rows + [stolen, relabelled])
    _refused(_import(path, store),
             f"row {len(rows) + 2}: patient '{foreign['patient_id']}' is practice {theirs.stem}'s, "
             f"but this is practice {mine.stem}'s file",
             f"row {len(rows) + 3}: patient '{foreign['patient_id']}' was listed for practice {theirs.stem}, "
             f"not '{mine.stem}'")
    assert decisions.batches(store) == []
    assert _import(_write(tmp_path / mine.name, rows), store).exit_code == 0  # the practice's own rows are fine


def test_a_changed_run_id_is_refused_and_cannot_record_a_decision_twice(world, store, tmp_path):
    _, first_run, second_run = world
    first = {r["patient_id"]: r for r in _rows(_practice_files(first_run)[0])}
    second = {r["patient_id"]: r for r in _rows(second_run / "list.csv")}
    pid = next(p for p in first if p in second)
    decided = {**first[pid], "decision": "declined", "decided_on": "2026-11-02"}
    assert _import(_write(tmp_path / "a.csv", [decided]), store).exit_code == 0

    made_up = {**decided, "run_id": "0123456789ab"}
    other_run = {**decided, "run_id": second[pid]["run_id"]}
    _refused(_import(_write(tmp_path / "b.csv", [made_up, other_run]), store),
             "row 2: run '0123456789ab' is not a list this store's runs wrote",
             f"row 3: as_of 2026-09-30 is not the as_of of run {second[pid]['run_id']} (2026-10-31)")
    # the row made consistent with the other run: it was listed there too, but the decision is not doubled
    assert _import(_write(tmp_path / "c.csv", [{**other_run, "as_of": "2026-10-31"}]), store).exit_code == 0
    assert [d[:2] for d in _decided(store, pid)] == [("declined", dt.date(2026, 11, 2))]


def test_one_decision_per_patient_per_day(world, store, tmp_path):
    _, run_dir, _ = world
    rows = _rows(_practice_files(run_dir)[0])
    on_day = {"decided_on": "2026-10-05"}
    both = [{**rows[0], **on_day, "decision": "accepted"}, {**rows[0], **on_day, "decision": "declined"}]
    _refused(_import(_write(tmp_path / "both.csv", both), store),
             f"row 3: patient '{rows[0]['patient_id']}' is declined on 2026-10-05 here but accepted in row 2")
    assert decisions.batches(store) == []

    assert _import(_write(tmp_path / "first.csv", both[:1]), store).exit_code == 0
    _refused(_import(_write(tmp_path / "second.csv", both[1:]), store),
             f"row 2: patient '{rows[0]['patient_id']}' already has the decision accepted for 2026-10-05")
    again = _import(_write(tmp_path / "again.csv", both[:1]), store)
    assert again.exit_code == 0 and len(decisions.batches(store)) == 1  # the same decision again adds nothing
    r = cli("review", "record", "--store", store, "--rule", "frail", "--patient", rows[0]["patient_id"],
            "--decision", "declined", "--on", "2026-10-05")
    assert r.exit_code == 1 and "already has the decision accepted" in r.output
    assert [d[0] for d in _decided(store, rows[0]["patient_id"])] == ["accepted"]


def test_a_different_decision_recorded_meanwhile_refuses_the_file(world, store, tmp_path, monkeypatch):
    """Another import records a decision between this file's checks and its append: the
    append, under the lock, still refuses the file and names the row."""
    _, run_dir, _ = world
    rows = _rows(_practice_files(run_dir)[0])
    accepted = {**rows[0], "decision": "accepted", "decided_on": "2026-10-05"}
    assert _import(_write(tmp_path / "first.csv", [accepted]), store).exit_code == 0
    checked_before = review._OnePerDay
    monkeypatch.setattr(review, "_OnePerDay", lambda log: checked_before(decisions.SCHEMA.empty_table()))
    with pytest.raises(review.ReviewImportError) as refused:
        import_reviews(_write(tmp_path / "second.csv", [rows[1], {**accepted, "decision": "declined"}]), store,
                       today=TODAY)
    assert refused.value.problems == [f"row 3: patient '{rows[0]['patient_id']}' already has the decision accepted "
                                      "for 2026-10-05; a second, different decision that day (declined) is refused"]
    assert len(decisions.batches(store)) == 1


@pytest.mark.parametrize("value", ["2026-11-07garbage", "31/02/2026", "2026-13-01", "07/11/2026 09:30",
                                   "7 Nov 2026"])
def test_decided_on_is_parsed_strictly(world, store, tmp_path, value):
    _, run_dir, _ = world
    rows = _rows(_practice_files(run_dir)[0])
    path = _write(tmp_path / "dates.csv", [{**rows[0], "decision": "declined", "decided_on": value}])
    _refused(_import(path, store), f"row 2: decided_on '{value}' is not a date")
    assert decisions.batches(store) == []


def test_dates_as_excel_uk_saves_them_are_read(world, store, tmp_path):
    _, run_dir, _ = world
    rows = _rows(_practice_files(run_dir)[0])[:3]
    uk = [{**r, "as_of": "30/09/2026"} for r in rows]
    uk[0].update(decision="declined", decided_on="05/10/2026")
    uk[1].update(decision="accepted", decided_on="06/10/2026 00:00")
    uk[2].update(decision="already known", decided_on="2026-10-07 00:00:00")
    r = _import(_write(tmp_path / "uk.csv", uk), store)
    assert r.exit_code == 0, r.output
    got = [_decided(store, row["patient_id"])[0][:2] for row in rows]
    assert got == [("declined", dt.date(2026, 10, 5)), ("accepted", dt.date(2026, 10, 6)),
                   ("already_known", dt.date(2026, 10, 7))]


def test_parse_date_accepts_only_whole_dates():
    same_day = {parse_date(text) for text in ("2026-11-07", "07/11/2026", "7/11/2026 00:00:00", "2026-11-07T00:00")}
    assert same_day == {dt.date(2026, 11, 7)}
    for bad in ("2026-11-07garbage", "2026-11-7", "11/2026", "2026-11-07 00:01", ""):
        with pytest.raises(ValueError):
            parse_date(bad)


def test_never_listed_patients_unknown_rules_and_practices_are_refused(world, store, tmp_path):
    _, run_dir, _ = world
    rows = _rows(_practice_files(run_dir)[0])
    declined = {"decision": "declined", "decided_on": "2026-10-05"}
    bad = [{**rows[0], **declined, "patient_id": "no-such-patient"}, {**rows[1], **declined, "rule": "fral"},
           {**rows[2], **declined, "practice": "XYZ"}, {**rows[3], **declined, "run_id": ""}]
    _refused(_import(_write(tmp_path / "bad.csv", bad), store),
             f"row 2: patient 'no-such-patient' was not on the list of run {rows[0]['run_id']}",
             f"row 3: rule 'fral' is not the rule of run {rows[1]['run_id']} (frail)",
             f"row 4: patient '{rows[2]['patient_id']}' was listed for practice {rows[2]['practice']}, not 'XYZ'",
             "row 5: run_id is empty")
    assert decisions.batches(store) == []


@pytest.mark.parametrize("delimiter, encoding, summary_encoding", [
    (";", "cp1252", "Windows-1252"), ("\t", "utf-8-sig", "UTF-8 (with BOM)"), (",", "utf-8", "UTF-8"),
    ("\t", "utf-16", "UTF-16")])
def test_files_as_spreadsheets_save_them_are_read(world, store, tmp_path, delimiter, encoding, summary_encoding):
    _, run_dir, _ = world
    rows = _rows(_practice_files(run_dir)[0])
    rows[0].update(decision="declined", decided_on="2026-10-05", reviewer="Dr Zoë Ní",
                   note="frailty – café visit")
    blank_rows = (delimiter * (len(rows[0]) - 1) + "\r\n") * 2 + "\r\n"
    path = _write(tmp_path / "saved.csv", rows, delimiter=delimiter, encoding=encoding, extra_lines=blank_rows)
    summary = import_reviews(path, store, today=TODAY)
    assert (summary.rows, summary.listed_added, summary.encoding) == (len(rows), len(rows), summary_encoding)
    log = decisions.read_log(store)
    decided = log.filter(pc.equal(log.column("decision"), "declined")).to_pylist()
    assert [(d["patient_id"], d["reviewer"], d["note"]) for d in decided] == [
        (rows[0]["patient_id"], "Dr Zoë Ní", "frailty – café visit")]


def test_cells_made_spreadsheet_safe_are_restored(world, store, tmp_path):
    _, run_dir, _ = world
    rows = _rows(_practice_files(run_dir)[0])
    rows[0].update(decision="'-declined", decided_on="2026-10-05", reviewer="'@dr_who", note="'=no formula here")
    r = _import(_write(tmp_path / "safe.csv", rows[:1]), store)
    assert r.exit_code == 1 and "decision '-declined'" in r.output  # a decision is a word, whatever its quote
    rows[0]["decision"] = "declined"
    assert _import(_write(tmp_path / "safe.csv", rows[:1]), store).exit_code == 0
    decided = [d for d in decisions.read_log(store).to_pylist() if d["decision"] == "declined"]
    assert [(d["reviewer"], d["note"]) for d in decided] == [("@dr_who", "=no formula here")]


def test_a_parquet_list_is_checked_too(world, store, tmp_path):
    _, run_dir, _ = world
    assert _import(run_dir, store).exit_code == 0  # the run folder's list.parquet, undecided
    t = pq.read_table(run_dir / "list.parquet")
    practices = t.column("practice").to_pylist()
    other = next(p for p in practices if p != practices[0])
    moved = [other] + practices[1:]
    t = t.set_column(t.schema.get_field_index("practice"), "practice", pa.array(moved, pa.string()))
    pq.write_table(t, tmp_path / "moved.parquet")
    _refused(_import(tmp_path / "moved.parquet", store),
             f"row 2: patient '{t.column('patient_id')[0].as_py()}' was listed for practice {practices[0]}, "
             f"not '{other}'")


def test_record_needs_a_listed_patient_of_a_registered_rule(world, store):
    _, run_dir, _ = world
    row = _rows(run_dir / "list.csv")[0]
    record = ("review", "record", "--store", store, "--patient", row["patient_id"], "--decision", "declined")
    r = cli(*record, "--rule", "fral", "--on", "2026-10-20")
    assert r.exit_code == 2 and "did you mean 'frail'?" in r.output
    r = cli(*record, "--rule", "frail", "--on", "2026-09-01")
    assert r.exit_code == 2 and "first listed by rule frail as of 2026-09-30" in r.output
    r = cli("review", "record", "--store", store, "--rule", "frail", "--patient", "no-such-patient",
            "--decision", "declined")
    assert r.exit_code == 2 and "was never listed by rule frail" in r.output
    assert decisions.batches(store) == []
    assert cli(*record, "--rule", "frail", "--on", "2026-10-20").exit_code == 0
    assert _decided(store, row["patient_id"]) == [("declined", dt.date(2026, 10, 20), row["practice"], None)]


def test_the_registry_holds_each_run_once(world, store):
    _, first_run, second_run = world
    runs = listings.runs(store)
    assert [r.as_of for r in runs] == [dt.date(2026, 9, 30), dt.date(2026, 10, 31)]
    assert listings.rules(store) == {"frail"} and listings.runs(store, "other") == []
    first = runs[0]
    assert first.listed.num_rows == len(_rows(first_run / "list.csv"))
    assert runs[1].listed.num_rows == len(_rows(second_run / "list.csv"))
    assert listings.get(store, "0123456789ab") is None and listings.get(store, "../../etc") is None
    kw = dict(rule="frail", as_of=dt.date(2026, 9, 30), snapshot_id=first.snapshot_id, listed=first.listed)
    for bad in ("0123456789AB", "0123456789a", "0123456789ab\n", "../0123456789", first.run_id):
        with pytest.raises(listings.ListingError):
            listings.record(store, run_id=bad, **kw)
    twice = pa.concat_tables([first.listed, first.listed.slice(0, 1)])
    with pytest.raises(listings.ListingError, match="listed twice"):
        listings.record(store, run_id="0123456789ab", **{**kw, "listed": twice})
    with pytest.raises(listings.ListingError):
        listings.record(store, run_id="0123456789ab", **{**kw, "rule": "../frail"})
    assert sorted(p.name for p in listings.lists_dir(store).iterdir()) == sorted(
        f"{r.run_id}.parquet" for r in runs)  # nothing half-written left behind
    assert isinstance(listings.ListingError("x"), CasefindError)


def test_the_log_keeps_one_decision_per_day_under_its_lock(world, store, tmp_path):
    _, run_dir, _ = world
    row = _rows(run_dir / "list.csv")[0]

    def decision(value: str, run_id: str | None) -> pa.Table:
        return pa.Table.from_pylist([{"patient_id": row["patient_id"], "rule": "frail", "decision": value,
                                      "date": dt.date(2026, 10, 5), "practice": row["practice"], "run_id": run_id,
                                      "reviewer": None, "note": None}], schema=decisions.INPUT_SCHEMA)

    assert decisions.append(store, decision("accepted", row["run_id"]), one_per_day=True)[0] is not None
    with pytest.raises(decisions.DecisionConflict, match="already has the decision accepted"):
        decisions.append(store, decision("declined", None), one_per_day=True)
    batch, _, already = decisions.append(store, decision("accepted", None), one_per_day=True)
    assert (batch, already) == (None, 1)  # the same decision that day, whatever run it names
    assert decisions.append(store, decision("accepted", None))[0] is not None  # the plain log: one per run id
    with open(store / decisions.LOCK, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(StoreBusy) as busy:
            import_reviews(_write(tmp_path / "x.csv", [row]), store, today=TODAY)
    assert busy.value.exit_code == 5
