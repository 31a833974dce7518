"""The QOF register rules of the shipped multimorbidity rule, on every engine.

NHS England QOF business rules (v49/v50): a person is on a register with a diagnosis code of
the register's cluster up to the achievement date (here as_of), the latest of which is not
followed by a code of the register's resolved cluster (a resolved code on the same day as the
latest diagnosis takes the person off), at or above the register's age. A later diagnosis
after a resolved code puts the person back. Each patient of one small store is a case; the
features are rules/multimorbidity.yml's own. In the diagnoses table, `dx CATEGORY` is the
first code only that category of the published QOF codelist holds, `resolved CATEGORY
[CLUSTER]` the same of the resolved codelist; other codes are as written."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ascii_tables import parse_table, typed
from casefind.ingest import run_ingest
from casefind.rules.compile import compile_rule
from casefind.store import Store
from casefind_testdata import write_source
from spec_helpers import ENGINES, source_tables

title = "QOF registers"

ROOT = Path(__file__).parents[3]
RULE = ROOT / "rules" / "multimorbidity.yml"
PUBLISHED = ROOT / "rules" / "codelists" / "published"
AS_OF = "2026-10-31"

PATIENTS = """
    patient                       | birth_date
    ------------------------------+-----------
    dm                            | 1950-01-01
    dm_then_resolved              | 1950-01-01
    dm_resolved_same_day          | 1950-01-01
    dm_rediagnosed_after_resolved | 1950-01-01
    dm_resolved_before_first_dx   | 1950-01-01
    dm_resolved_after_as_of       | 1950-01-01
    dm_aged_16                    | 2010-01-01
    dm_aged_17                    | 2009-01-01
    ckd_then_stage_1_2            | 1950-01-01
    ckd_then_resolved             | 1950-01-01
    ckd_aged_17                   | 2009-06-01
    depression_2005               | 1950-01-01
    depression_2006               | 1950-01-01
    depression_resolved           | 1950-01-01
    depression_aged_17            | 2009-01-01
    asthma_aged_5                 | 2021-01-01
    asthma_aged_6                 | 2020-01-01
    epilepsy_aged_17              | 2009-01-01
    epilepsy_resolved_then_again  | 1950-01-01
    ra_aged_15                    | 2011-01-01
    ra_aged_16                    | 2010-01-01
    hypertension_child            | 2016-01-01
    several                       | 1940-01-01
    hypothyroid_only              | 1950-01-01
"""
DIAGNOSES = """
    patient                       | date       | code
    ------------------------------+------------+---------------------------------------------
    dm                            | 2020-01-01 | dx diabetes
    dm_then_resolved              | 2020-01-01 | dx diabetes
    dm_then_resolved              | 2022-01-01 | resolved diabetes
    dm_resolved_same_day          | 2020-01-01 | dx diabetes
    dm_resolved_same_day          | 2020-01-01 | resolved diabetes
    dm_rediagnosed_after_resolved | 2018-01-01 | dx diabetes
    dm_rediagnosed_after_resolved | 2020-01-01 | resolved diabetes
    dm_rediagnosed_after_resolved | 2023-05-01 | dx diabetes
    dm_resolved_before_first_dx   | 2015-01-01 | resolved diabetes
    dm_resolved_before_first_dx   | 2020-01-01 | dx diabetes
    dm_resolved_after_as_of       | 2020-01-01 | dx diabetes
    dm_resolved_after_as_of       | 2026-11-01 | resolved diabetes
    dm_aged_16                    | 2025-01-01 | dx diabetes
    dm_aged_17                    | 2025-01-01 | dx diabetes
    ckd_then_stage_1_2            | 2020-01-01 | dx chronic_kidney_disease
    ckd_then_stage_1_2            | 2021-01-01 | resolved chronic_kidney_disease ckd1and2_cod
    ckd_then_resolved             | 2020-01-01 | dx chronic_kidney_disease
    ckd_then_resolved             | 2021-01-01 | resolved chronic_kidney_disease ckdres_cod
    ckd_aged_17                   | 2025-01-01 | dx chronic_kidney_disease
    depression_2005               | 2005-06-01 | dx depression
    depression_2006               | 2006-04-01 | dx depression
    depression_resolved           | 2019-01-01 | dx depression
    depression_resolved           | 2024-01-01 | resolved depression
    depression_aged_17            | 2025-01-01 | dx depression
    asthma_aged_5                 | 2025-01-01 | dx asthma
    asthma_aged_6                 | 2025-01-01 | dx asthma
    epilepsy_aged_17              | 2025-01-01 | dx epilepsy
    epilepsy_resolved_then_again  | 2010-01-01 | dx epilepsy
    epilepsy_resolved_then_again  | 2012-01-01 | resolved epilepsy
    epilepsy_resolved_then_again  | 2024-01-01 | dx epilepsy
    ra_aged_15                    | 2025-01-01 | dx rheumatoid_arthritis
    ra_aged_16                    | 2025-01-01 | dx rheumatoid_arthritis
    hypertension_child            | 2025-01-01 | dx hypertension
    several                       | 2015-01-01 | dx diabetes
    several                       | 2016-01-01 | dx hypertension
    several                       | 2017-01-01 | dx hypertension
    several                       | 2018-01-01 | resolved hypertension
    several                       | 2019-01-01 | dx heart_failure
    several                       | 2020-01-01 | dx copd
    several                       | 2021-01-01 | dx dementia
    several                       | 2021-02-01 | 363346000
    hypothyroid_only              | 2020-01-01 | dx hypothyroidism
"""
# patient, feature of rules/multimorbidity.yml, its value at as_of
EXPECTED = """
    patient                       | feature                | value
    ------------------------------+------------------------+------
    dm                            | diabetes               | true
    dm_then_resolved              | diabetes               | false
    dm_resolved_same_day          | diabetes               | false
    dm_rediagnosed_after_resolved | diabetes               | true
    dm_resolved_before_first_dx   | diabetes               | true
    dm_resolved_after_as_of       | diabetes               | true
    dm_aged_16                    | diabetes               | false
    dm_aged_17                    | diabetes               | true
    ckd_then_stage_1_2            | chronic_kidney_disease | false
    ckd_then_resolved             | chronic_kidney_disease | false
    ckd_aged_17                   | chronic_kidney_disease | false
    depression_2005               | depression             | false
    depression_2006               | depression             | true
    depression_resolved           | depression             | false
    depression_aged_17            | depression             | false
    asthma_aged_5                 | asthma                 | false
    asthma_aged_6                 | asthma                 | true
    epilepsy_aged_17              | epilepsy               | false
    epilepsy_resolved_then_again  | epilepsy               | true
    ra_aged_15                    | rheumatoid_arthritis   | false
    ra_aged_16                    | rheumatoid_arthritis   | true
    hypertension_child            | hypertension           | true
    several                       | diabetes               | true
    several                       | hypertension           | false
    several                       | heart_failure          | true
    several                       | copd                   | true
    several                       | dementia               | true
    several                       | cancer                 | true
    several                       | ltc_count              | 5
    hypothyroid_only              | ltc_count              | 0
"""


def _first_code(path: Path, category: str, cluster: str | None = None) -> str:
    """The first code of ``category`` (and ``cluster``) that no other category of the file holds."""
    rows = list(csv.DictReader(path.read_text().splitlines()))
    elsewhere = {r["code"] for r in rows if r["category"] != category}
    for r in rows:
        if (r["category"] == category and r["code"] not in elsewhere
                and (cluster is None or cluster in r["cluster"].split(";"))):
            return r["code"]
    raise AssertionError(f"no {category} code in {path.name}")


def dx(category: str) -> str:
    return _first_code(PUBLISHED / "qof_snomed.csv", category)


def res(category: str, cluster: str | None = None) -> str:
    return _first_code(PUBLISHED / "qof_resolved_snomed.csv", category, cluster)


def code(cell: str) -> str:
    """``dx CATEGORY`` or ``resolved CATEGORY [CLUSTER]`` as a published code; else the cell."""
    kind, *rest = cell.split()
    if kind == "dx":
        return _first_code(PUBLISHED / "qof_snomed.csv", *rest)
    if kind == "resolved":
        return _first_code(PUBLISHED / "qof_resolved_snomed.csv", *rest)
    return cell


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registers")
    tables = source_tables({"patients": PATIENTS})
    tables["diagnoses"] = [(r["patient"], r["date"], "snomed", code(r["code"]), "primary_care")
                           for r in parse_table(DIAGNOSES)]
    run_ingest(write_source(tmp / "src", tables), tmp / "store")
    return Store.open(tmp / "store")


def test_register_rules(store, engine):
    rule = compile_rule(RULE)
    assert str(rule.as_of) == AS_OF
    out = ENGINES[engine].evaluate(store, rule.features, rule.as_of, rule.population).to_pylist()
    ids = store.table("patients")["patient_id"].tolist()
    got = {ids[r["patient"]]: r for r in out}
    want = [(r["patient"], r["feature"], typed(r["value"])) for r in parse_table(EXPECTED)]
    wrong = {(p, k): (got[p][k], v) for p, k, v in want if got[p][k] != v}
    assert not wrong, f"(patient, feature): (got, expected) {wrong}"


def test_the_shipped_rules_share_the_register_definitions():
    """segments.yml counts long-term conditions exactly as multimorbidity.yml does."""
    mm, seg = compile_rule(RULE), compile_rule(ROOT / "rules" / "segments.yml")
    names = [n for n in mm.features if n not in ("emergency_12m", "cost_12m")]
    assert all(seg.features[n] == mm.features[n] for n in names)
    assert {n: seg.codelists[n] for n in mm.codelists} == mm.codelists
