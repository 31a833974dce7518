"""The named offline workbook (issue 12): a practice's clinicians and administrators download
the latest list as .xlsx with NHS number (3-3-4), name, date of birth and age beside the
pseudonym, audited as an identifiable export; Excel fills in the Decision drop-down; `casefind
review import` reads it back by the pseudonym and the next run's ``reviewed()`` sees it.
Analysts and other practices get no names."""
from __future__ import annotations

import datetime as dt
import io
import json
import re

import pytest
from openpyxl import load_workbook
from tests.app.conftest import make_world
from tests.casefind_testdata import cli

from casefind import audit
from casefind.lists.xlsx import IG_WARNING, NAMED_TITLES, named_workbook
from casefind.project import shipped_rules
from casefind.store import listings

NHS_334 = re.compile(r"\d{3} \d{3} \d{4}")


@pytest.fixture(scope="module")
def world(built_store, tmp_path_factory):
    return make_world(built_store, tmp_path_factory.mktemp("named-workbook"))


def _download(world, user: str, practice: str):
    return world.client(user).get(f"/practice/{practice}/frail.xlsx")


def _list_sheet(data: bytes):
    wb = load_workbook(io.BytesIO(data))
    return wb, wb["List"]


def _columns(sheet) -> dict[str, int]:
    return {str(c.value): c.column for c in sheet[2] if c.value is not None}


def test_a_clinician_gets_the_list_by_name_and_it_is_audited(world):
    a = world.practices[0]
    r = _download(world, "clin_a", a)
    assert r.status_code == 200 and r.headers["content-disposition"].endswith(f'-{a}-named.xlsx"')
    wb, sheet = _list_sheet(r.content)
    assert sheet["A1"].value == IG_WARNING
    assert IG_WARNING == "Contains patient identifiable data - handle under your practice's IG policy"
    assert wb["Instructions"]["A1"].value.startswith(IG_WARNING)
    assert sheet.oddHeader.center.text == IG_WARNING  # printed on every page
    cols = _columns(sheet)
    pseudonym = cols["Patient ID (pseudonymised)"]
    assert [cols[t] for t in NAMED_TITLES] == [pseudonym + 1, pseudonym + 2, pseudonym + 3, pseudonym + 4]
    rows = list(sheet.iter_rows(min_row=3, values_only=True))
    assert sorted(r[pseudonym - 1] for r in rows) == world.listed[a]
    nhs = [r[cols["NHS number"] - 1] for r in rows]
    assert all(NHS_334.fullmatch(n) for n in nhs) and {n.replace(" ", "") for n in nhs} <= world.nhs_numbers
    names = [r[cols["Name"] - 1] for r in rows]
    assert all(n.split(",")[0].title() in {f.title() for f in world.names} for n in names)
    born, age = rows[0][cols["Date of birth"] - 1], rows[0][cols["Age today"] - 1]
    today = dt.date.today()
    assert isinstance(born, dt.datetime) and age == today.year - born.year - ((today.month, today.day) <
                                                                              (born.month, born.day))
    assert sheet.cell(3, cols["Date of birth"]).number_format == "DD/MM/YYYY"
    dv = sheet.data_validations.dataValidation
    assert len(dv) == 1 and dv[0].formula1 == '"accepted,declined,already_known"'
    letter = sheet.cell(2, cols["Decision"]).column_letter
    assert str(dv[0].sqref).startswith(f"{letter}3:{letter}")  # the drop-down on every row, below the header

    entry = audit.entries(world.store, action="export_list", user="clin_a")[-1]
    assert entry["practice"] == a and entry["run_id"] == world.run_id and entry["rule"] == "frail"
    assert entry["detail"]["identifiable"] is True and entry["detail"]["format"] == "xlsx"
    assert entry["detail"]["rows"] == entry["detail"]["revealed"] == len(world.listed[a])
    assert sorted(entry["patient_ids"]) == world.listed[a]
    assert not any(n.replace(" ", "") in json.dumps(entry) for n in nhs)  # the log holds pseudonyms only


def test_a_practice_admin_gets_it_by_name_too(world):
    r = _download(world, "admin_a", world.practices[0])
    assert r.status_code == 200
    _, sheet = _list_sheet(r.content)
    assert "NHS number" in _columns(sheet)


@pytest.mark.parametrize("user", ["analyst", "auditor", "clin_b"])
def test_no_one_else_gets_practice_a_s_workbook(world, user):
    before = len(audit.entries(world.store, action="export_list"))
    r = _download(world, user, world.practices[0])
    assert r.status_code == 404
    assert not any(n in r.text for n in world.nhs_numbers)
    assert len(audit.entries(world.store, action="export_list")) == before  # nothing was exported


def test_signed_out_gets_401(world):
    assert world.client().get(f"/practice/{world.practices[0]}/frail.xlsx").status_code == 401


def test_the_filled_in_named_workbook_imports_and_the_next_run_sees_it(built_store, tmp_path):
    world = make_world(built_store, tmp_path)  # its own copy: a new run of it changes which list is latest
    a = world.practices[0]
    wb, sheet = _list_sheet(_download(world, "clin_a", a).content)
    cols = _columns(sheet)
    as_of = listings.get(world.store, world.run_id).as_of
    chosen = {}
    for i, decision in zip(range(3, 6), ("declined", "accepted", "already_known")):
        sheet.cell(i, cols["Decision"]).value = decision  # as Excel stores a drop-down choice
        sheet.cell(i, cols["Decided on"]).value = dt.datetime.combine(as_of, dt.time())  # a typed date
        chosen[sheet.cell(i, cols["Patient ID (pseudonymised)"]).value] = decision
    filled = tmp_path / "filled.xlsx"
    wb.save(filled)

    r = cli("review", "import", filled, "--store", world.store, "--reviewer", "Dr A")
    assert r.exit_code == 0, r.output
    r = cli("review", "show", "--store", world.store, "--json")
    assert r.exit_code == 0, r.output
    mine = [s for s in json.loads(r.output) if s["practice"] == a]
    assert [(s["reviewed"], s["accepted"], s["declined"], s["already_known"]) for s in mine] == [(3, 1, 1, 1)]

    out = tmp_path / "out-next"
    r = cli("run", shipped_rules() / "frail.yml", "--store", world.store, "--out", out, "--as-of", as_of.isoformat())
    assert r.exit_code == 0, r.output
    again = listings.runs(world.store)[-1]
    assert again.run_id != world.run_id
    assert not set(chosen) & set(again.practice_of)  # declined and known patients are left off the next list
    manifest = json.loads(next(out.glob("*/manifest.json")).read_text())
    assert manifest["excluded"]["declined_recently"] >= 1 and manifest["excluded"]["already_known"] >= 2


def test_names_and_cells_are_neutralised_against_formulas(world, tmp_path):
    """A name (or any text) that starts like a formula stays text in the workbook."""
    a = world.practices[0]
    source = next((world.out).glob(f"*/practices/{a}.xlsx"))
    first = world.listed[a][0]
    person = ("943 476 5919", '=HYPERLINK("http://x","y")', dt.date(1940, 1, 2), 86)
    data, n = named_workbook(source, {first: person}, a)
    _, sheet = _list_sheet(data)
    cols = _columns(sheet)
    cell = next(sheet.cell(i, cols["Name"]) for i in range(3, n + 3)
                if sheet.cell(i, cols["Patient ID (pseudonymised)"]).value == first)
    assert cell.data_type == "s" and cell.quotePrefix and cell.value.startswith("=HYPERLINK")
    others = [sheet.cell(i, cols["Name"]).value for i in range(3, n + 3)
              if sheet.cell(i, cols["Patient ID (pseudonymised)"]).value != first]
    assert n == len(world.listed[a]) and all(v is None for v in others)  # no identity given: blank, not guessed


def test_the_cli_writes_the_same_named_workbook(world, tmp_path):
    a, b = world.practices
    run_folder = next(world.out.glob("frail-*"))
    out = tmp_path / "named.xlsx"
    r = cli("reidentify", "--store", world.store, "--practice", a, run_folder, "--output", out, "--role", "clinician",
            "--user", "dr_cli", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["rows"] == summary["identified"] == len(world.listed[a])
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    _, sheet = _list_sheet(out.read_bytes())
    assert sheet["A1"].value == IG_WARNING
    cols = _columns(sheet)
    assert all(NHS_334.fullmatch(r[cols["NHS number"] - 1]) for r in sheet.iter_rows(min_row=3, values_only=True))
    entry = audit.entries(world.store, action="reidentify", user="dr_cli")[-1]
    assert entry["practice"] == a and entry["detail"]["format"] == "xlsx"
    assert entry["detail"]["rows"] == len(world.listed[a])

    wrong = cli("reidentify", "--store", world.store, "--practice", a, run_folder / "practices" / f"{b}.xlsx",
                "--output", tmp_path / "wrong.xlsx", "--role", "clinician")
    assert wrong.exit_code == 2 and "another practice" in wrong.output and not (tmp_path / "wrong.xlsx").exists()
    csv_in = cli("reidentify", "--store", world.store, "--practice", a, run_folder / "list.csv",
                 "--output", tmp_path / "x.xlsx", "--role", "clinician")
    assert csv_in.exit_code == 2 and "practices/<CODE>.xlsx" in " ".join(csv_in.output.split())


def test_a_refused_reidentification_sends_nothing(world, monkeypatch):
    """identities_for refuses the whole request (a listed patient has moved practice since
    the run; it audits that itself): the download answers 409 and sends no workbook."""
    from casefind.app.views import pages
    from casefind.reidentify import ReidentificationRefused

    def refuse(*args, **kw):
        raise ReidentificationRefused("1 of the patients asked for is not registered at the practice")

    monkeypatch.setattr(pages.bridge, "identities_for", refuse)
    r = _download(world, "clin_a", world.practices[0])
    assert r.status_code == 409 and "new run" in r.text
    assert "spreadsheetml" not in r.headers.get("content-type", "")


def test_an_empty_list_is_still_recorded_as_an_export(world, monkeypatch):
    from casefind.app.work import Work

    monkeypatch.setattr(Work, "rows", lambda self, listing, practice: [])
    r = _download(world, "clin_a", world.practices[0])
    assert r.status_code == 200
    entry = audit.entries(world.store, action="export_list", user="clin_a")[-1]
    assert entry["detail"] == {"format": "xlsx", "identifiable": True, "rows": 0}
