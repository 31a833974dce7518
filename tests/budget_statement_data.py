"""A budget output folder as `casefind budget FILE --year` writes it (/tmp/h/budget-interface.md),
built by hand with pyarrow for the statement and BI export tests: two localities (one with a
hostile name), four practices, 12 months of which 7 are within the data, figures with odd
pence so that rounding shows, pseudonyms in the record-level files only."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

YEAR = "2026-27"
MONTHS = [f"{2026 + (m > 12)}-{(m - 1) % 12 + 1:02d}" for m in range(4, 16)]
COMPLETE = 7
HOSTILE = '<script>alert("x")</script> & Co'
LOCALITIES = {"L1": "North", "L2": HOSTILE}
# code: (name, locality, people, monthly budget, monthly actual base)
PRACTICES = {"P1": ("Abbey Surgery", "L1", 120, 10_000.333, 9_800.25),
             "P2": ("Bridge Practice", "L1", 80, 6_500.125, 7_100.6),
             "P3": ("Castle Medical", "L2", 60, 5_000.49, 4_200.5),
             "P4": ("Dale Health", "L2", 40, 3_333.333, 3_600.45)}
PSEUDONYMS = [f"pz{n:06d}q" for n in range(1, 9)]
SIMULATION = [  # the Year of Care handbook's simulation table (/work/shared/domain.md, "Money")
    ("0-0.5%", 2_854, 10_179.0, 9_854.0), ("0.5-2%", 9_203, 7_454.0, 7_341.0),
    ("2-5%", 19_930, 4_537.0, 4_555.0), ("5-10%", 33_941, 3_085.0, 3_136.0)]


def _start(month: str) -> dt.date:
    y, m = map(int, month.split("-"))
    return dt.date(y, m, 1)


def practice_month(code: str, i: int) -> tuple[float, float]:
    """(budget, actual) of practice ``code`` in month ``i`` (0 = April); no actual past the data."""
    _, _, _, budget, base = PRACTICES[code]
    actual = base * (1 + 0.03 * ((i * 7 + len(code)) % 5 - 2)) + 0.37 * i if i < COMPLETE else 0.0
    return budget, actual


def _unit_rows() -> list[dict]:
    rows = []
    units = {("practice", c): (p[0], p[1], [c]) for c, p in PRACTICES.items()}
    for loc, name in LOCALITIES.items():
        units[("locality", loc)] = (name, "SYS01", [c for c, p in PRACTICES.items() if p[1] == loc])
    units[("system", "SYS01")] = ("Demo ICB", None, list(PRACTICES))
    for (level, code), (name, parent, members) in units.items():
        todate_actual = 0.0
        for i, month in enumerate(MONTHS):
            budget = sum(practice_month(c, i)[0] for c in members)
            actual = sum(practice_month(c, i)[1] for c in members)
            people = sum(PRACTICES[c][2] for c in members) + i
            todate_actual += actual
            rest = sum(practice_month(c, j)[0] for c in members for j in range(i + 1, 12))
            forecast = todate_actual + rest if i < COMPLETE else None
            base = {"level": level, "unit_code": code, "unit_name": name, "parent_code": parent, "month": month,
                    "month_start": _start(month), "people": people, "cohort_days": people * 30}
            rows.append({**base, "category": "all", "budget": budget, "actual": actual, "variance": budget - actual,
                         "forecast": forecast, "complete": i < COMPLETE})
            rows.append({**base, "category": "2_physical", "budget": budget / 2, "actual": actual / 3,
                         "variance": budget / 2 - actual / 3, "forecast": None, "complete": i < COMPLETE})
    return rows


MONTHLY_SCHEMA = pa.schema([
    ("level", pa.string()), ("unit_code", pa.string()), ("unit_name", pa.string()), ("parent_code", pa.string()),
    ("month", pa.string()), ("month_start", pa.date32()), ("category", pa.string()), ("people", pa.int64()),
    ("cohort_days", pa.int64()), ("budget", pa.float64()), ("actual", pa.float64()), ("variance", pa.float64()),
    ("forecast", pa.float64()), ("complete", pa.bool_())])


def _tariffs() -> pa.Table:
    rows = [("0_none", "No long-term condition", 400, 4, None, 310.456, 298.1, 0.025, 305.5525, 0.0, "computed"),
            ("1_physical", "1 long-term condition", 150, 2, None, 1_204.2, 1_150.75, 0.025, 1_179.52, 24.0, "computed"),
            ("2_physical", "2 long-term conditions", 90, 1, None, 2_980.0, 2_801.0, 0.025, 2_871.03, 24.0, "computed"),
            ("3_mental", "=HYPERLINK(\"x\") mental health", 6, 0, "2_physical", 5_100.0, 5_100.0, 0.0, 2_871.03,
             0.0, "manual")]
    names = ("category", "label", "people", "trimmed", "merged_into", "baseline_mean", "trimmed_mean", "uplift",
             "tariff", "incentive", "source")
    types = (pa.string(), pa.string(), pa.int64(), pa.int64(), pa.string(), *[pa.float64()] * 5, pa.string())
    return pa.table({n: pa.array([r[k] for r in rows], t) for k, (n, t) in enumerate(zip(names, types))})


def _movement() -> pa.Table:
    rows = []
    for i, month in enumerate(MONTHS):
        rows.append({"month": month, "joined": 3 + i % 3, "left_died": i % 2, "left_deregistered": 1 if i == 4 else 0,
                     "left_no_longer_qualifies": i % 4 == 0, "cost_joiners": 1_500.5 * (1 + i % 3) + 0.49,
                     "cost_leavers": 9_250.25 * (i % 2) + 333.333, "budget_joiners": 700.7 * (1 + i % 3),
                     "budget_leavers": 1_100.1 * (i % 2)})
    schema = pa.schema([("month", pa.string()), *[(n, pa.int64()) for n in ("joined", "left_died",
                       "left_deregistered", "left_no_longer_qualifies")],
                        *[(n, pa.float64()) for n in ("cost_joiners", "cost_leavers", "budget_joiners",
                                                        "budget_leavers")]])
    return pa.Table.from_pylist([{**r, "left_no_longer_qualifies": int(r["left_no_longer_qualifies"])} for r in rows],
                                schema)


def _shadow() -> pa.Table:
    rows = []
    for scope, scale in (("whole_population", 40.0), ("cohort", 1.0)):
        rows.append({"scope": scope, "level": "system", "unit_code": "SYS01", "unit_name": "Demo ICB",
                     "people": int(300 * scale), "budget": 299_999.5 * scale, "actual": 301_234.49 * scale})
        for loc, name in LOCALITIES.items():
            rows.append({"scope": scope, "level": "locality", "unit_code": loc, "unit_name": name,
                         "people": int(150 * scale), "budget": 150_000.25 * scale, "actual": 149_000.75 * scale})
    for r in rows:
        r["variance"] = r["budget"] - r["actual"]
    return pa.Table.from_pylist(rows)


def _records() -> tuple[pa.Table, pa.Table]:
    register = pa.table({
        "patient_id": PSEUDONYMS, "practice_code": ["P1", "P2", "P3", "P4"] * 2,
        "locality_code": ["L1", "L1", "L2", "L2"] * 2, "system_code": ["SYS01"] * 8,
        "category": ["1_physical"] * 8, "joined": pa.array([dt.date(2026, 4, 1)] * 8, pa.date32()),
        "left": pa.array([None] * 7 + [dt.date(2026, 9, 3)], pa.date32()),
        "join_reason": ["in_cohort_at_start"] * 8, "leave_reason": [None] * 7 + ["died"],
        "days_in_year": pa.array([365] * 7 + [156], pa.int64()), "budget": [1179.52] * 8})
    tagged = pa.table({
        "patient_id": PSEUDONYMS[:4], "practice_code": ["P1", "P2", "P3", "P4"], "category": ["1_physical"] * 4,
        "record": pa.array([10, 11, 12, 13], pa.int64()), "spell_id": ["s1", None, "s3", "s4"],
        "start_date": pa.array([dt.date(2026, 5, 2)] * 4, pa.date32()),
        "setting": ["emergency_admission", "ae", "gp", "outpatient"], "provider_code": ["RXX", "=cmd|' /C calc'!A0",
                                                                                         None, "RYY"],
        "funding": ["activity"] * 4, "cost": [3000.0, 250.5, 42.0, 150.0], "month": ["2026-05"] * 4})
    return register, tagged


def meta(**changes) -> dict:
    system = [r for r in _unit_rows() if r["level"] == "system" and r["category"] == "all"]
    budget = sum(r["budget"] for r in system)
    actual = sum(r["actual"] for r in system)
    data = {"budget": "ltc_year_of_care", "title": "Long-term conditions Year of Care", "year": YEAR,
            "year_start": "2026-04-01", "year_end": "2027-03-31", "file": "rules/budgets/ltc_year_of_care.yml",
            "file_sha256": "ab" * 32, "store_snapshot": "snap-0001", "as_of": "2026-10-31", "run_id": "run-42",
            "profile": "flat", "profile_weights": [1 / 12] * 12, "baseline_year": "2025-26",
            "trim": {"method": "cap", "percentile": 99}, "totals": {"people_start": 300, "people_end": 311,
                                                                    "budget": budget, "actual": actual,
                                                                    "variance": budget - actual},
            "risk_share": {"rule": ["first 2% of the budget: 100% provider", "beyond: 50/50"],
                           "variance": budget - actual, "commissioner_share": 1_234.5, "provider_share": -2_345.25,
                           "carried_forward": 0.0, "working": ["variance = budget - actual", HOSTILE]},
            "outcomes": [{"kpi": "emergency_admissions_per_1000", "title": "Emergency admissions per 1,000",
                          "target": 95, "actual": 101.26, "met": False, "adjustment": -5_000.0,
                          "working": "101.26 > 95: reduction of £5,000"}],
            "adjusted_total": budget - 5_000.0, "notes": ["Synthetic data: for testing only."]}
    data.update(changes)
    return data


def budget_folder(root: Path, *, simulation: bool = True, **meta_changes) -> Path:
    """Write the folder under ``root``; its path."""
    folder = Path(root) / f"budget-ltc_year_of_care-{YEAR}"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(_unit_rows(), MONTHLY_SCHEMA), folder / "monthly.parquet")
    pq.write_table(_tariffs(), folder / "tariffs.parquet")
    pq.write_table(_movement(), folder / "movement.parquet")
    pq.write_table(_shadow(), folder / "shadow.parquet")
    register, tagged = _records()
    pq.write_table(register, folder / "register.parquet")
    pq.write_table(tagged, folder / "tagged_activity.parquet")
    (folder / "statement.json").write_text(json.dumps(meta(**meta_changes)), encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps({"files": []}), encoding="utf-8")
    if simulation:
        rows = [{"cohort": c, "year": y, "patients": n, "baseline_mean": b, "scenario_mean": s,
                 "difference": s - b, "baseline_total": n * b, "scenario_total": n * s}
                for y in (1, 2) for c, n, b, s in SIMULATION]
        pq.write_table(pa.Table.from_pylist(rows), folder / "simulation.parquet")
        (folder / "simulation.json").write_text(json.dumps({"scenario": "scenarios/fewer_emergency_admissions.yml",
                                                            "assumptions": ["emergency admissions -10% in 0-0.5%"]}))
    return folder
