"""The readmission KPI of rules/kpis/triple_aim.yml (kind: ratio), on every engine.

NHS Digital I02040: emergency admissions within 0-29 days (inclusive) of the last, previous
discharge from hospital, over the continuous inpatient (CIP) spells discharged; transfers
chain into one CIP spell; cancer and obstetric admissions are excluded. For the period
2026-10 (its end D = 2026-10-31, 31 days) the discharges counted are those in
(D - 31 - 30 days, D - 30 days] = (2026-08-31, 2026-10-01], so each has its 30 days.

    patient  spells (start..end, destination)                      readmitted  discharges
    r0       09-08..09-10 home; 09-10..09-12 home (same day)        1           2
    r29      09-01..09-01 home; 09-30..10-02 home (29 days)         1           1 (10-02 is after)
    r30      09-01..09-01 home; 10-01..10-01 home (30 days)         0           2
    tr       09-01..09-05 other hospital; 09-06..09-10 home         1           2 (the transfer
             (a transfer: one CIP spell); 09-20..09-21 home                        is not one)
    ca       09-01..09-01 home; 09-05..09-06 home, cancer primary   0           1 (cancer out)
    total                                                           3           8  = 37.5%
"""
from __future__ import annotations

import pytest

from casefind.ingest import run_ingest
from casefind.kpis import compute
from casefind.kpis.periods import parse
from casefind.store import Store
from casefind_testdata import write_source
from spec_helpers import source_tables

title = "Emergency readmissions KPI"

KPIS = """\
kpis: readmissions
codelists:
  cancer_or_obstetrics: {system: icd10, prefixes: ["C", "O"]}
features:
  discharged_in_period: count(activity, setting in ("emergency_admission", "elective_admission")
      and not discharge_destination in ("other_hospital", "died") and end_date > as_of - period - days(30)
      and end_date <= as_of - days(30) and not spell_has(diagnoses, position == 1, codelist=cancer_or_obstetrics))
  readmitted_in_period: count(activity, setting == "emergency_admission" and cips_position == 1
      and days_between(previous_discharge, start_date) <= 29 and previous_discharge > as_of - period - days(30)
      and previous_discharge <= as_of - days(30)
      and not spell_has(diagnoses, position == 1, codelist=cancer_or_obstetrics))
measures:
  readmissions_30d:
    title: Emergency readmissions within 30 days of discharge
    domain: population_health
    kind: ratio
    population: registered and alive
    value: readmitted_in_period
    denominator: discharged_in_period
"""


ACTIVITY = """
    patient | spell_id | start_date | end_date   | setting             | discharge_destination | cost
    --------+----------+------------+------------+---------------------+-----------------------+-----
    r0      | A1       | 2026-09-08 | 2026-09-10 | emergency_admission | home                  | 2000
    r0      | A2       | 2026-09-10 | 2026-09-12 | emergency_admission | home                  | 2000
    r29     | B1       | 2026-09-01 | 2026-09-01 | elective_admission  | home                  | 2000
    r29     | B2       | 2026-09-30 | 2026-10-02 | emergency_admission | home                  | 2000
    r30     | C1       | 2026-09-01 | 2026-09-01 | emergency_admission | home                  | 2000
    r30     | C2       | 2026-10-01 | 2026-10-01 | emergency_admission | home                  | 2000
    tr      | D1       | 2026-09-01 | 2026-09-05 | emergency_admission | other_hospital        | 2000
    tr      | D2       | 2026-09-06 | 2026-09-10 | emergency_admission | home                  | 2000
    tr      | D3       | 2026-09-20 | 2026-09-21 | emergency_admission | home                  | 2000
    ca      | E1       | 2026-09-01 | 2026-09-01 | emergency_admission | home                  | 2000
    ca      | E2       | 2026-09-05 | 2026-09-06 | emergency_admission | home                  | 2000
"""
DIAGNOSES = """
    patient | date       | code_system | code | source | spell_id | position
    --------+------------+-------------+------+--------+----------+---------
    ca      | 2026-09-05 | icd10       | C509 | acute  | E2       | 1
    r0      | 2026-09-10 | icd10       | J440 | acute  | A2       | 1
"""


def test_readmissions_over_discharges(tmp_path, engine):
    run_ingest(write_source(tmp_path / "src", source_tables({"activity": ACTIVITY, "diagnoses": DIAGNOSES})),
               tmp_path / "store")
    (tmp_path / "k.yml").write_text(KPIS)
    store = Store.open(tmp_path / "store")
    ksets = compute.compile_for(tmp_path / "k.yml", [parse("2026-10")])
    res = compute.compute(store, ksets, compute.evaluate(store, ksets, engine), "t").to_pylist()
    system = [r for r in res if r["level"] == "system" and not r["breakdown"]]
    assert len(system) == 1
    row = system[0]
    assert (row["numerator"], row["denominator"]) == (3, 8)
    assert row["value"] == pytest.approx(37.5)
    assert row["lower"] < 37.5 < row["upper"]  # Wilson, as a proportion of the 8 discharges
