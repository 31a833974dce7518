"""Issue 12, "the list files a GP gets": each practice's CSV has the decision columns first,
plain titles, instructions naming the allowed values, numbers as published, terms in the
evidence, plurals right, a BOM, and exists even when nobody is listed; a file opened and
saved by Excel (UK) imports."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
import shutil
from pathlib import Path

import pytest

from casefind.lists.practice_file import DECISION_VALUES, ListAbout, csv_text, import_name, instructions
from casefind.lists.reasons import fill
from casefind.lists.review import import_reviews
from casefind.rules.compile import compile_rule
from casefind.rules.errors import RuleError
from casefind.store import decisions
from casefind_testdata import cli, synthetic_store

RULES = Path(__file__).parents[2] / "rules"
TODAY = dt.date(2026, 12, 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("gp")
    store = synthetic_store(root, 6000, 12)
    for rule in ("frail", "high_utilisers"):
        assert cli("run", RULES / f"{rule}.yml", "--store", store, "--out", root / "lists").exit_code == 0
    return root, store


@pytest.fixture
def store(world, tmp_path):
    shutil.copytree(world[1], tmp_path / "store", symlinks=True)
    return tmp_path / "store"


def _practice_file(world, rule: str = "frail") -> Path:
    folder = next((world[0] / "lists").glob(f"{rule}-*")) / "practices"
    return next(p for p in sorted(folder.glob("*.csv")) if len(_records(p)) > 7)


def _records(path: Path, encoding: str = "utf-8-sig") -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding=encoding), newline="")))


def _table(path: Path) -> tuple[list[str], list[dict]]:
    """(the header titles, rows by title) below the instruction lines."""
    records = _records(path)
    at = next(i for i, r in enumerate(records) if r and not r[0].startswith("#"))
    return records[at], [dict(zip(records[at], r)) for r in records[at + 1:]]


def test_the_practice_file_is_shaped_for_a_gp(world):
    path = _practice_file(world)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8 ("£", not "Â£")
    records = _records(path)
    preamble = [r[0] for r in records if r and r[0].startswith("#")]
    assert len(preamble) >= 4 and all(len(r) == 1 for r in records[:len(preamble)])
    assert all(v in " ".join(preamble) for v in DECISION_VALUES)
    header, rows = _table(path)
    assert header[:4] == ["Decision", "Decided on", "Reviewer", "Note"]
    assert header[-4:] == ["Run", "Rule", "List as of", "Practice"]
    assert not [h for h in header if "_" in h or h.startswith(("include:", "exclude:"))], header
    assert [import_name(h) for h in header[:4]] == ["decision", "decided_on", "reviewer", "note"]
    assert {r["Meets: recent crisis"] for r in rows} <= {"yes", "no"}


@pytest.mark.parametrize("rule, column, places", [
    ("frail", "eFI", 2), ("high_utilisers", "Cost, 12 months", 0), ("high_utilisers", "Cost percentile", 1)])
def test_numbers_are_rounded_as_published(world, rule, column, places):
    _, rows = _table(_practice_file(world, rule))
    values = [r[column] for r in rows if r[column]]
    assert values
    decimals = [len(v.partition(".")[2]) for v in values]
    assert max(decimals) <= places, values[:5]


def test_the_evidence_names_each_codes_term_from_the_codelist(world):
    terms = {r["code"]: r["term"] for r in csv.DictReader(
        (RULES / "codelists" / "published" / "efi_snomed.csv").open(encoding="utf-8"))}
    _, rows = _table(_practice_file(world))
    found = [m for r in rows for m in re.finditer(r"\d{4}-\d{2}-\d{2} ([^;]+?) \(snomed (\d+)\)",
                                                   r["Evidence: moderate or severe frailty"])]
    assert found
    for m in found:
        assert m[1] == " ".join(terms[m[2]].split()), m[0]


def test_reasons_use_the_singular_for_one():
    assert fill("{n} emergency admission{n|s}", {"n": 1}) == "1 emergency admission"
    assert fill("{n} emergency admission{n|s}", {"n": 3}) == "3 emergency admissions"
    assert fill("{n} {n|person|people}", {"n": 0}) == "0 people"
    assert fill("{n} {n|person|people}", {"n": 1.0}) == "1 person"


def test_the_shipped_lists_have_no_wrong_plurals(world):
    for rule in ("frail", "high_utilisers"):
        folder = next((world[0] / "lists").glob(f"{rule}-*"))
        text = (folder / "list.csv").read_text()
        assert "1 emergency admissions" not in text
    assert "1 emergency admission in" in (next((world[0] / "lists").glob("frail-*")) / "list.csv").read_text()


@pytest.mark.parametrize("template, message", [
    ("{sex} admission{sex|s}", "chooses a plural by a number"),
    ("{n} admission{n|s=1}", "is not a plain {name} nor a plural"),
    ("{n} admission{n|a|b|c}", "is not a plain {name} nor a plural"),
    ("{n} admission{nn|s}", "not a feature"),
])
def test_a_bad_plural_field_is_refused_when_the_rule_compiles(tmp_path, template, message):
    path = tmp_path / "r.yml"
    path.write_text('rule: r\nas_of: "2026-10-31"\npopulation: age >= 0\nfeatures:\n  n: count(activity)\n'
                    f"criteria:\n  include:\n    busy: {{when: n >= 1, reason: \"{template}\"}}\n")
    with pytest.raises(RuleError) as e:
        compile_rule(path)
    assert message in str(e.value)


def test_a_formula_in_a_value_is_neutralised_in_the_csv():
    text = csv_text(["Why listed", "Note"], [["=HYPERLINK(\"http://x\")", "@SUM(A1)"], ["-5", "+cmd"]],
                    ["# =not a formula either"])
    cells = [c for r in csv.reader(io.StringIO(text)) for c in r]
    assert "'=HYPERLINK(\"http://x\")" in cells and "'@SUM(A1)" in cells and "'+cmd" in cells
    assert "-5" in cells  # a plain number stays a number
    assert not [c for c in cells if c[:1] in "=+@" or (c[:1] == "-" and c != "-5")]


def test_a_practice_nobody_is_listed_for_still_gets_its_files(world, tmp_path):
    r = cli("run", RULES / "frail.yml", "--store", world[1], "--out", tmp_path, "--param", "min_age=150")
    assert r.exit_code == 0, r.output
    folder = tmp_path / "frail-2026-10-31" / "practices"
    files = sorted(folder.glob("*.csv"))
    assert files and sorted(p.stem for p in folder.glob("*.xlsx")) == [p.stem for p in files]
    for path in files:
        text = path.read_text(encoding="utf-8-sig")
        assert f"Nobody from practice {path.stem} is on this list" in text
        assert _table(path)[1] == []
    summary = import_reviews(files[0], world[1], today=TODAY)  # an empty file imports, recording nothing
    assert summary.rows == 0 and summary.batch is None


def _excel_uk(path: Path, dst: Path, decided: dict[int, tuple[str, str]], encoding: str) -> list[dict]:
    """The file as Excel (UK) saves it: dates DD/MM/YYYY, instruction rows padded with empty
    cells to the sheet's width, CRLF, in ``encoding`` (cp1252 is Excel's plain "CSV")."""
    records = _records(path)
    at = next(i for i, r in enumerate(records) if r and not r[0].startswith("#"))
    header, width = records[at], len(records[at])
    out = [r + [""] * (width - len(r)) for r in records[:at]] + [header]
    rows = []
    for i, r in enumerate(records[at + 1:]):
        r = [re.sub(r"^(\d{4})-(\d{2})-(\d{2})$", r"\3/\2/\1", c) for c in r]
        if i in decided:
            r[0], r[1] = decided[i]
        out.append(r)
        rows.append(dict(zip(header, r)))
    with dst.open("w", newline="", encoding=encoding) as f:
        csv.writer(f, lineterminator="\r\n").writerows(out)
    return rows


@pytest.mark.parametrize("encoding", ["cp1252", "utf-8-sig"])
def test_a_list_saved_by_excel_uk_imports(world, store, tmp_path, encoding):
    path = _practice_file(world)
    saved = tmp_path / path.name
    rows = _excel_uk(path, saved, {0: ("declined", "05/11/2026"), 1: ("Accepted", "1/11/2026"),
                                   2: ("already known", "")}, encoding)
    assert "£" in saved.read_text(encoding=encoding)  # the evidence's costs survive the encoding
    summary = import_reviews(saved, store, today=TODAY, decided_on=dt.date(2026, 11, 20))
    assert summary.decisions_added == {"declined": 1, "accepted": 1, "already_known": 1}
    log = decisions.read_log(store).to_pylist()
    got = {(r["patient_id"], r["decision"], r["date"]) for r in log if r["decision"] != "listed"}
    pid = "Patient ID (pseudonymised)"
    assert got == {(rows[0][pid], "declined", dt.date(2026, 11, 5)), (rows[1][pid], "accepted", dt.date(2026, 11, 1)),
                   (rows[2][pid], "already_known", dt.date(2026, 11, 20))}


def test_a_refused_excel_file_names_each_problem_without_none(world, store, tmp_path):
    path = _practice_file(world)
    saved = tmp_path / path.name
    _excel_uk(path, saved, {0: ("declined", "31/02/2026"), 1: ("maybe", "")}, "cp1252")
    records = _records(saved, "cp1252")
    at = next(i for i, r in enumerate(records) if r and not r[0].startswith("#"))
    records[at + 3][records[at].index("Patient ID (pseudonymised)")] = ""
    with saved.open("w", newline="", encoding="cp1252") as f:
        csv.writer(f).writerows(records)
    r = cli("review", "import", saved, "--store", store)
    out = " ".join(r.output.split())
    assert r.exit_code == 1
    for expected in (f"row {at + 2}: decided_on '31/02/2026' is not a date", f"row {at + 3}: decision 'maybe'",
                     f"row {at + 4}: patient_id is empty"):
        assert expected in out, out
    assert "None" not in out


def test_the_about_line_says_how_many_are_listed():
    about = ListAbout("frail", "Frailty", "1.0", dt.date(2026, 10, 31), "0123456789ab")
    one = csv_text(["Decision"], [], instructions(about, "Z1", 1))
    assert "1 patient listed for practice Z1" in one and "31/10/2026" in one
