"""The monthly cycle on one store, twice: ingest → run → review import → kpi → report, then
next month's extract ingested over the same store. Decisions, the lists runs wrote and the
KPI history survive the second ingest, and the next run honours last month's decisions."""
from __future__ import annotations

import csv
from pathlib import Path

import duckdb
from test_review import read_rows

from casefind.store import Store, decisions, listings
from casefind_testdata import cli

ROOT = Path(__file__).parents[2]
FRAIL = ROOT / "rules" / "frail.yml"
TRIPLE_AIM = ROOT / "rules" / "kpis" / "triple_aim.yml"


def _decline_first(practice_file: Path, out: Path) -> str:
    rows = read_rows(practice_file)  # the GP's file: instruction lines, plain titles
    rows[0].update(decision="declined", decided_on="2026-10-05", reviewer="Dr A", note="seen in clinic")
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows[0]["patient_id"]


def _month(root: Path, as_of: str, period: str) -> Path:
    r = cli("synth", "--patients", 3000, "--seed", 11, "--out", root / "extract", "--as-of", as_of)
    assert r.exit_code == 0, r.output
    r = cli("ingest", root / "extract", "--store", root / "store")
    assert r.exit_code == 0, r.output
    r = cli("run", FRAIL, "--store", root / "store", "--out", root / "lists", "--as-of", as_of)
    assert r.exit_code == 0, r.output
    r = cli("kpi", TRIPLE_AIM, "--store", root / "store", "--period", period)
    assert r.exit_code == 0, r.output
    r = cli("report", "--store", root / "store", "--period", period, "--out", root / f"pack-{period}.html")
    assert r.exit_code == 0, r.output
    return root / "lists" / f"frail-{as_of}"


def test_two_months_on_one_store(tmp_path):
    store = tmp_path / "store"
    september = _month(tmp_path, "2026-09-30", "2026-09")
    practice_file = sorted((september / "practices").glob("*.csv"))[0]
    declined = _decline_first(practice_file, tmp_path / "filled.csv")
    r = cli("review", "import", tmp_path / "filled.csv", "--store", store)
    assert r.exit_code == 0, r.output
    before = decisions.read_log(store).num_rows
    snapshot_before = Store.open(store).snapshot_id

    october = _month(tmp_path, "2026-10-31", "2026-10")

    assert Store.open(store).snapshot_id != snapshot_before  # the new extract was ingested
    assert decisions.read_log(store).num_rows == before      # the decisions survived it
    assert {r.rule for r in listings.runs(store)} == {"frail"} and len(listings.runs(store)) == 2
    with (october / "list.csv").open(newline="", encoding="utf-8-sig") as f:
        listed = {row["patient_id"] for row in csv.DictReader(f)}
    assert declined not in listed                            # and the next run honoured them
    con = duckdb.connect(str(store / "kpi" / "history.duckdb"), read_only=True)
    periods = {p for (p,) in con.execute("select distinct period from kpi_results").fetchall()}
    con.close()
    assert periods == {"2026-09", "2026-10"}                 # the history kept last month
    assert (tmp_path / "pack-2026-10.html").read_text().count("2026-09") > 0
