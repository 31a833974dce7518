"""The cohort register and the capitated budget on a hand-made store whose answers are known:
pro-rating by days across joins, leaves, deaths and deregistrations, leap years, the
lead-provider tariffs, acceptance by a clinician, conservation, and both engines agreeing."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from casefind.budgets import history
from casefind.budgets.run import run_budget
from casefind.budgets.years import parse_year
from casefind.engines.base import ENGINES
from casefind.store import decisions
from casefind_testdata import cli, write_source

N = None


def _d(first: int, month: int, day: int) -> str:
    """A date in financial year ``first`` (April of ``first`` to March of the next)."""
    return dt.date(first + (month < 4), month, day).isoformat()


def make_store(root, first: int):
    """Seven people with known stories in the year starting 1 April ``first``; z (never in
    the cohort) spans the data from the baseline year to the year's last day."""
    y = first
    pal = "palliative_care"
    tables = {
        "practices": [("P1", "One", "L1", "North", "S1", "Sys"), ("P2", "Two", "L1", "North", "S1", "Sys"),
                      ("P3", "Three", "L2", "South", "S1", "Sys")],
        "patients": [
            ("a", "1950-01-01", "F", "P1", "2000-01-01", N, N, "2", N, N),              # all year, high need
            ("b", "1950-01-01", "M", "P1", "2000-01-01", N, _d(y, 6, 15), "5", N, N),   # dies 15 June
            ("c", "1950-01-01", "F", "P2", _d(y, 9, 10), N, N, "9", N, N),              # registers 10 September
            ("d", "1950-01-01", "M", "P2", "2000-01-01", _d(y, 11, 30), N, "9", N, N),  # deregisters 30 November
            ("e", "1950-01-01", "F", "P3", "2000-01-01", N, N, "5", N, N),              # palliative from 20 August
            ("f", "1950-01-01", "M", "P3", "2000-01-01", N, N, "9", N, N),              # six sessions: incentive
            ("z", "1950-01-01", "F", "P3", "2000-01-01", N, N, "1", N, N),              # never in
        ],
        "registers": [("e", pal, _d(y, 8, 20), N), ("z", pal, "2001-01-01", N)],
        "activity": [
            ("z", _d(y - 1, 4, 1), N, "gp", "10", N, N, N),
            ("z", _d(y, 3, 31), N, "gp", "10", N, N, N),
            ("a", _d(y, 4, 10), N, "gp", "40", N, "GP1", N),
            ("a", _d(y, 10, 3), N, "emergency_admission", "3000", N, "RX1", "home", N, "activity"),
            ("a", _d(y, 12, 3), N, "outpatient", "1000", N, "RX1", N, N, "block"),        # block: out of scope
            ("a", _d(y, 1, 3), N, "social_care", "500", N, N, N),                          # setting out of scope
            ("b", _d(y, 5, 1), N, "gp", "42", N, N, N),
            ("d", _d(y, 12, 5), N, "gp", "300", N, N, N),                                  # after leaving
            ("e", _d(y, 7, 31), N, "community", "60", N, N, N),
            ("e", _d(y, 9, 1), N, "community", "500", N, N, N),                            # after leaving
            ("a", _d(y - 1, 6, 1), N, "gp", "100", N, N, N),                               # baseline year
        ] + [("f", _d(y, m, 2), N, "community", "60", N, N, N) for m in (4, 5, 6, 7, 8, 9)],
    }
    write_source(root / "src", tables)
    r = cli("ingest", root / "src", "--store", root / "store")
    assert r.exit_code == 0, r.output
    return root / "store"


COHORT = 'cohort: {when: "not exists(registers, register == \\"palliative_care\\", active)"}\n'
SERVICES = "services: {settings: [gp, emergency_admission, outpatient, community]}\n"


def budget_file(root, body: str, name: str = "test_budget"):
    path = root / "rules" / "budgets" / f"{name}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"budget: {name}\n" + body)
    return path


def one_tariff(root, tariff: float):
    return budget_file(root, COHORT + SERVICES + f"categories:\n  everyone: {{tariff: {tariff}}}\nprofile: flat\n")


def run(root, path, first: int, engine: str = "native"):
    return run_budget(path, root / "store", parse_year(f"{first}-{(first + 1) % 100:02d}"), root / "out",
                      engine=engine)


@pytest.fixture(scope="module")
def year2026(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget2026")
    make_store(root, 2026)
    return root


@pytest.fixture(scope="module")
def year2027(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget2027")  # 2027-28 holds 29 February 2028: 366 days
    make_store(root, 2027)
    return root


def _register(result) -> dict[str, dict]:
    return {r["patient_id"]: r for r in result.tables["register"].to_pylist()}


# (patient, days in 2026-27, joined, left, join reason, leave reason)
STORIES_2026 = [
    ("a", 365, "2026-04-01", None, "in_cohort_at_start", None),
    ("b", 30 + 31 + 15, "2026-04-01", "2026-06-15", "in_cohort_at_start", "died"),
    ("c", 21 + 31 + 30 + 31 + 31 + 28 + 31, "2026-09-10", None, "meets_rule", None),
    ("d", 30 + 31 + 30 + 31 + 31 + 30 + 31 + 30, "2026-04-01", "2026-11-30", "in_cohort_at_start", "deregistered"),
    ("e", 30 + 31 + 30 + 31, "2026-04-01", "2026-07-31", "in_cohort_at_start", "no_longer_qualifies"),
    ("f", 365, "2026-04-01", None, "in_cohort_at_start", None),
]


@pytest.mark.parametrize("engine", list(ENGINES))
def test_days_joins_and_leaves_are_pro_rated_by_day(year2026, engine):
    """A tariff of 365 a year in a 365-day year is £1 a day in the cohort, whatever the story."""
    result = run(year2026, one_tariff(year2026, 365), 2026, engine)
    reg = _register(result)
    assert set(reg) == {s[0] for s in STORIES_2026}  # z is never in
    for pid, days, joined, left, why_in, why_out in STORIES_2026:
        row = reg[pid]
        assert row["days_in_year"] == days, pid
        assert row["budget"] == pytest.approx(days, abs=1e-9), pid
        assert str(row["joined"]) == joined and (str(row["left"]) if row["left"] else None) == left, pid
        assert (row["join_reason"], row["leave_reason"]) == (why_in, why_out), pid


def test_a_leap_year_divides_by_366(year2027):
    """2027-28 has 366 days: a whole year is the whole tariff, a day is tariff / 366."""
    result = run(year2027, one_tariff(year2027, 732), 2027)
    reg = _register(result)
    assert result.statement["year_days"] == 366
    assert reg["a"]["days_in_year"] == 366 and reg["a"]["budget"] == pytest.approx(732)
    assert reg["c"]["days_in_year"] == 21 + 31 + 30 + 31 + 31 + 29 + 31  # February 2028 has 29 days
    assert reg["c"]["budget"] == pytest.approx(732 * 204 / 366)
    assert reg["b"]["budget"] == pytest.approx(732 * 76 / 366)
    assert sum(result.statement["profile_weights"]) == pytest.approx(1.0)
    assert result.statement["profile_weights"][10] == pytest.approx(29 / 366)


LEAD = COHORT + SERVICES + """features:
  sessions_12m: count(activity, setting == "community", within=months(12))
categories:
  high: {label: high need, when: "imd_decile <= 3", tariff: 260}
  medium: {label: medium need, when: "imd_decile <= 6", tariff: 150}
  low: {label: low need, tariff: 70}
tariffs:
  incentive: {amount: 24, when: "sessions_12m >= 6", label: maintenance (six sessions)}
profile: flat
"""


@pytest.mark.parametrize("engine", list(ENGINES))
def test_lead_provider_tariffs_add_up_exactly(year2026, engine):
    """Lead-provider tariffs by need, "low £70, medium £150, high £260 a year; long-term
    maintenance incentive £24 (6 sessions)": the whole-year members a (high) and f (low,
    six sessions) cost 260 + 70 + 24; the rest are pro-rated by their days."""
    result = run(year2026, budget_file(year2026, LEAD), 2026, engine)
    reg = _register(result)
    assert (reg["a"]["category"], reg["a"]["budget"]) == ("high", pytest.approx(260))
    assert (reg["f"]["category"], reg["f"]["budget"]) == ("low", pytest.approx(70 + 24))
    assert reg["b"]["budget"] == pytest.approx(150 * 76 / 365)
    assert reg["c"]["budget"] == pytest.approx(70 * 203 / 365)
    assert reg["d"]["budget"] == pytest.approx(70 * 244 / 365)
    assert reg["e"]["budget"] == pytest.approx(150 * 122 / 365)
    expected = 260 + 94 + (150 * 76 + 70 * 203 + 70 * 244 + 150 * 122) / 365
    assert result.statement["totals"]["budget"] == pytest.approx(expected)
    tariffs = {r["category"]: r for r in result.tables["tariffs"].to_pylist()}
    assert [tariffs[c]["tariff"] for c in ("low", "medium", "high")] == [70, 150, 260]
    assert {r["incentive"] for r in tariffs.values()} == {24.0}
    assert {r["source"] for r in tariffs.values()} == {"manual"}


def test_in_scope_spend_is_tagged_and_adds_up(year2026):
    """Actual = in-scope spend of members on their days in: not the block-funded record, the
    social care one, nor what d and e spent after leaving; the tagged records sum to it."""
    result = run(year2026, one_tariff(year2026, 365), 2026)
    tagged = result.tables["tagged_activity"]
    assert sorted(tagged["cost"].to_pylist()) == sorted([40, 3000, 42, 60] + [60] * 6)
    assert set(tagged["funding"].to_pylist()) == {"activity"}
    assert result.statement["totals"]["actual"] == pytest.approx(sum(tagged["cost"].to_pylist()))
    monthly = result.tables["monthly"]
    _conserved(monthly)
    october = monthly.filter(pc.and_(pc.equal(monthly["month"], "2026-10"), pc.equal(monthly["level"], "practice")))
    p1 = next(r for r in october.to_pylist() if r["unit_code"] == "P1" and r["category"] == "all")
    assert p1["actual"] == 3000 and p1["people"] == 1 and p1["budget"] == pytest.approx(31)


def _conserved(monthly) -> None:
    """Practices sum to their localities, localities to the system, categories to all."""
    rows = monthly.to_pylist()
    key = {(r["level"], r["unit_code"], r["category"], r["month"]): r for r in rows}
    for r in rows:
        if r["level"] == "system":
            continue
        parent = key[("locality" if r["level"] == "practice" else "system", r["parent_code"], r["category"],
                      r["month"])]
        children = [x for x in rows if x["level"] == r["level"] and x["parent_code"] == r["parent_code"]
                    and x["category"] == r["category"] and x["month"] == r["month"]]
        for col in ("budget", "actual", "people", "cohort_days"):
            assert sum(x[col] for x in children) == pytest.approx(parent[col]), (col, r)
    for r in rows:
        if r["category"] == "all":
            here = (r["level"], r["unit_code"], r["month"])
            parts = [x for x in rows if (x["level"], x["unit_code"], x["month"]) == here and x["category"] != "all"]
            assert sum(x["budget"] for x in parts) == pytest.approx(r["budget"])


def test_movement_counts_joiners_and_leavers(year2026):
    result = run(year2026, one_tariff(year2026, 365), 2026)
    mv = {r["month"]: r for r in result.tables["movement"].to_pylist()}
    assert mv["2026-09"]["joined"] == 1 and mv["2026-06"]["left_died"] == 1
    assert mv["2026-11"]["left_deregistered"] == 1 and mv["2026-08"]["left_no_longer_qualifies"] == 1
    assert sum(r["joined"] for r in mv.values()) == 1
    assert mv["2026-06"]["budget_leavers"] == pytest.approx(76)
    assert mv["2026-06"]["cost_leavers"] == pytest.approx(42)   # b's spend in the 12 months before dying
    assert mv["2026-08"]["cost_leavers"] == pytest.approx(60)


def test_shadow_budgets_side_by_side(year2026):
    result = run(year2026, one_tariff(year2026, 365), 2026)
    shadow = {(r["scope"], r["level"], r["unit_code"]): r for r in result.tables["shadow"].to_pylist()}
    cohort = shadow[("cohort", "system", "S1")]
    assert cohort["budget"] == pytest.approx(sum(s[1] for s in STORIES_2026))
    assert cohort["actual"] == pytest.approx(result.statement["totals"]["actual"])
    whole = shadow[("whole_population", "system", "S1")]
    assert whole["people"] == 7
    assert whole["actual"] >= cohort["actual"]


def test_a_clinicians_acceptance_joins_on_the_decision_day(year2026):
    root = year2026
    rows = [{"patient_id": "a", "rule": "frail", "decision": "accepted", "date": dt.date(2026, 7, 10),
             "practice": "P1", "run_id": "r1", "reviewer": None, "note": None},
            {"patient_id": "c", "rule": "frail", "decision": "declined", "date": dt.date(2026, 9, 20),
             "practice": "P2", "run_id": "r1", "reviewer": None, "note": None}]
    decisions.append(root / "store", pa.Table.from_pylist(rows, schema=decisions.INPUT_SCHEMA))
    path = budget_file(root, 'cohort: {when: "age >= 200", accepted_by_clinician: true, list: frail}\n'
                       "categories:\n  everyone: {tariff: 365}\n", name="accepted")
    reg = _register(run(root, path, 2026))
    assert set(reg) == {"a"}
    assert (str(reg["a"]["joined"]), reg["a"]["join_reason"]) == ("2026-07-10", "accepted_by_clinician")
    assert reg["a"]["days_in_year"] == 22 + 31 + 30 + 31 + 30 + 31 + 31 + 28 + 31


def test_the_register_is_kept_in_duckdb_and_replaced_on_rerun(year2026):
    path = one_tariff(year2026, 365)
    first = run(year2026, path, 2026)
    again = run(year2026, path, 2026)
    rows = history.read(again.register_db, "test_budget", "2026-27").to_pylist()
    assert len(rows) == 6 + 3  # six joins, three leaves: the re-run replaced the first run's rows
    assert {r["run_id"] for r in rows} == {first.run_id}
    leaves = {r["patient_id"]: (str(r["change_date"]), r["reason"]) for r in rows if r["change"] == "leave"}
    assert leaves == {"b": ("2026-06-15", "died"), "d": ("2026-11-30", "deregistered"),
                      "e": ("2026-07-31", "no_longer_qualifies")}
    written = pq.read_table(again.folder / "register.parquet")
    assert written.num_rows == 6 and (again.folder / "manifest.json").exists()


def test_partial_year_keeps_the_last_months_cohort(tmp_path):
    """With data to 31 October only, later months are budgeted on October's cohort and
    flagged incomplete; the forecast is actual to date plus the budget for the rest."""
    make_store(tmp_path, 2026)
    src = tmp_path / "src" / "activity.csv"
    lines = [ln for ln in src.read_text().splitlines() if "2027-03-31" not in ln and "2026-12-0" not in ln
             and "2027-01-03" not in ln]
    src.write_text("\n".join(lines) + "\n" + "z,2026-10-31,,gp,10,,,,,\n")
    assert cli("ingest", tmp_path / "src", "--store", tmp_path / "store").exit_code == 0
    result = run(tmp_path, one_tariff(tmp_path, 365), 2026)
    reg = _register(result)
    assert reg["d"]["left"] is None and reg["d"]["days_in_year"] == 365  # deregistration after the data
    monthly = result.tables["monthly"].filter(pc.and_(pc.equal(result.tables["monthly"]["level"], "system"),
                                                      pc.equal(result.tables["monthly"]["category"], "all")))
    complete = monthly["complete"].to_pylist()
    assert complete == [True] * 7 + [False] * 5
    assert monthly["forecast"].to_pylist()[7:] == [None] * 5
    budget = np.array(monthly["budget"].to_pylist())
    actual = np.array(monthly["actual"].to_pylist())
    assert monthly["forecast"].to_pylist()[6] == pytest.approx(actual[:7].sum() + budget[7:].sum())
    assert result.statement["totals"]["months_complete"] == 7


SETTINGS = "services: {settings: [gp, emergency_admission, outpatient, community]"


@pytest.mark.parametrize("services, costs", [
    (SETTINGS + ", include_providers: [RX1]}\n", [3000]),
    (SETTINGS + ", exclude_providers: [RX1]}\n", [40, 42, 60] + [60] * 6),
    (SETTINGS + ", exclude_funding: [national]}\n", [40, 3000, 1000, 42, 60] + [60] * 6),  # block now in
])
def test_services_in_scope_by_provider_and_funding(year2026, services, costs):
    path = budget_file(year2026, COHORT + services + "categories:\n  everyone: {tariff: 365}\n", name="scoped")
    tagged = run(year2026, path, 2026).tables["tagged_activity"]
    assert sorted(tagged["cost"].to_pylist()) == sorted(costs)


def test_a_second_writer_of_the_register_is_refused(tmp_path):
    path = tmp_path / "budgets.duckdb"
    table = pa.table({"patient_id": ["a"], "change_date": pa.array([dt.date(2026, 4, 1)]), "change": ["join"],
                      "reason": ["meets_rule"]})
    with history._lock(path), pytest.raises(history.RegisterLocked):
        history.write(path, "b", "2026-27", table, "r")
    assert history.write(path, "b", "2026-27", table, "r") == 1
    with pytest.raises(history.RegisterDbError):
        history.read(tmp_path / "none.duckdb")


def test_the_provider_share_carried_forward_is_brought_into_next_year(year2026):
    body = (COHORT + SERVICES + "categories:\n  everyone: {tariff: 3650}\nprofile: flat\n"
            "risk_share: {bands: [{provider: 1.0}], carry_forward: 0.5}\n")
    path = budget_file(year2026, body, name="carry")
    first = run(year2026, path, 2026).statement
    carried = first["risk_share"]["carried_forward"]
    assert carried == pytest.approx(first["risk_share"]["provider_share"] / 2) and carried > 0
    assert first["brought_forward"] == 0.0
    second = run(year2026, path, 2027).statement  # the data ends on 2027-03-31: no month of 2027-28 complete
    assert second["brought_forward"] == pytest.approx(carried)
    assert second["totals"]["months_complete"] == 0
    assert second["adjusted_total"] == pytest.approx(second["totals"]["budget"] + carried)
    assert any("brought forward" in n for n in second["notes"])


def test_a_cohort_with_nobody_in_it_gives_empty_tables_and_zero_budget(year2026):
    path = budget_file(year2026, 'cohort: {when: "age >= 200"}\ncategories:\n  everyone: {tariff: 100}\n'
                       "profile: baseline\n", name="empty")
    result = run(year2026, path, 2026)
    assert result.tables["register"].num_rows == 0 and result.tables["tagged_activity"].num_rows == 0
    assert result.statement["totals"]["budget"] == 0 and result.statement["totals"]["people_end"] == 0
    assert sum(result.statement["profile_weights"]) == pytest.approx(1.0)  # no baseline cost: by days
    assert result.tables["movement"].num_rows == 12
