"""The QOF register rules of the shipped multimorbidity rule, on every engine.

NHS England QOF business rules (v49/v50): a person is on a register with a diagnosis code of
the register's cluster up to the achievement date (here as_of), the latest of which is not
followed by a code of the register's resolved cluster (a resolved code on the same day as the
latest diagnosis takes the person off), at or above the register's age. A later diagnosis
after a resolved code puts the person back. Each case is one patient of one small store; the
features are rules/multimorbidity.yml's own, evaluated by each engine."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from spec_helpers import ENGINES, PRACTICES, patient

from casefind.ingest import run_ingest
from casefind.rules.compile import compile_rule
from casefind.store import Store
from casefind_testdata import write_source

ROOT = Path(__file__).parents[2]
RULE = ROOT / "rules" / "multimorbidity.yml"
PUBLISHED = ROOT / "rules" / "codelists" / "published"


def _first_code(path: Path, category: str, cluster: str | None = None) -> str:
    """The first code of ``category`` (and ``cluster``) that no other category of the file holds."""
    rows = list(csv.DictReader(open(path, newline="")))
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


AS_OF = "2026-10-31"
# patient -> (birth date, [(date, code)], {feature: expected})
CASES = {
    "dm": ("1950-01-01", [("2020-01-01", dx("diabetes"))], {"diabetes": True}),
    "dm_then_resolved": ("1950-01-01", [("2020-01-01", dx("diabetes")), ("2022-01-01", res("diabetes"))],
                         {"diabetes": False}),
    "dm_resolved_same_day": ("1950-01-01", [("2020-01-01", dx("diabetes")), ("2020-01-01", res("diabetes"))],
                             {"diabetes": False}),
    "dm_rediagnosed_after_resolved": ("1950-01-01", [("2018-01-01", dx("diabetes")), ("2020-01-01", res("diabetes")),
                                                     ("2023-05-01", dx("diabetes"))], {"diabetes": True}),
    "dm_resolved_before_first_dx": ("1950-01-01", [("2015-01-01", res("diabetes")), ("2020-01-01", dx("diabetes"))],
                                    {"diabetes": True}),
    "dm_resolved_after_as_of": ("1950-01-01", [("2020-01-01", dx("diabetes")), ("2026-11-01", res("diabetes"))],
                                {"diabetes": True}),  # events after as_of are invisible
    "dm_aged_16": ("2010-01-01", [("2025-01-01", dx("diabetes"))], {"diabetes": False}),   # DM017: 17+
    "dm_aged_17": ("2009-01-01", [("2025-01-01", dx("diabetes"))], {"diabetes": True}),
    "ckd_then_stage_1_2": ("1950-01-01", [("2020-01-01", dx("chronic_kidney_disease")),
                                          ("2021-01-01", res("chronic_kidney_disease", "ckd1and2_cod"))],
                           {"chronic_kidney_disease": False}),
    "ckd_then_resolved": ("1950-01-01", [("2020-01-01", dx("chronic_kidney_disease")),
                                         ("2021-01-01", res("chronic_kidney_disease", "ckdres_cod"))],
                          {"chronic_kidney_disease": False}),
    "ckd_aged_17": ("2009-06-01", [("2025-01-01", dx("chronic_kidney_disease"))], {"chronic_kidney_disease": False}),
    "depression_2005": ("1950-01-01", [("2005-06-01", dx("depression"))], {"depression": False}),   # before 2006-04-01
    "depression_2006": ("1950-01-01", [("2006-04-01", dx("depression"))], {"depression": True}),
    "depression_resolved": ("1950-01-01", [("2019-01-01", dx("depression")), ("2024-01-01", res("depression"))],
                            {"depression": False}),
    "depression_aged_17": ("2009-01-01", [("2025-01-01", dx("depression"))], {"depression": False}),
    "asthma_aged_5": ("2021-01-01", [("2025-01-01", dx("asthma"))], {"asthma": False}),   # AST005: 6+
    "asthma_aged_6": ("2020-01-01", [("2025-01-01", dx("asthma"))], {"asthma": True}),
    "epilepsy_aged_17": ("2009-01-01", [("2025-01-01", dx("epilepsy"))], {"epilepsy": False}),   # EP001: 18+
    "epilepsy_resolved_then_again": ("1950-01-01", [("2010-01-01", dx("epilepsy")), ("2012-01-01", res("epilepsy")),
                                                    ("2024-01-01", dx("epilepsy"))], {"epilepsy": True}),
    "ra_aged_15": ("2011-01-01", [("2025-01-01", dx("rheumatoid_arthritis"))], {"rheumatoid_arthritis": False}),
    "ra_aged_16": ("2010-01-01", [("2025-01-01", dx("rheumatoid_arthritis"))], {"rheumatoid_arthritis": True}),
    "hypertension_child": ("2016-01-01", [("2025-01-01", dx("hypertension"))], {"hypertension": True}),  # all ages
    "several": ("1940-01-01", [("2015-01-01", dx("diabetes")), ("2016-01-01", dx("hypertension")),
                               ("2017-01-01", dx("hypertension")), ("2018-01-01", res("hypertension")),
                               ("2019-01-01", dx("heart_failure")), ("2020-01-01", dx("copd")),
                               ("2021-01-01", dx("dementia")), ("2021-02-01", "363346000")],  # cancer: starter code
                {"diabetes": True, "hypertension": False, "heart_failure": True, "copd": True, "dementia": True,
                 "cancer": True, "ltc_count": 5}),
    "hypothyroid_only": ("1950-01-01", [("2020-01-01", dx("hypothyroidism"))], {"ltc_count": 0}),  # not a QOF register
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registers")
    tables = {"practices": PRACTICES, "patients": [patient(p, birth=b) for p, (b, _, _) in CASES.items()],
              "diagnoses": [(p, d, "snomed", code, "primary_care") for p, (_, rows, _) in CASES.items()
                            for d, code in rows]}
    run_ingest(write_source(tmp / "src", tables), tmp / "store")
    return Store.open(tmp / "store")


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_register_rules(store, engine):
    rule = compile_rule(RULE)
    assert str(rule.as_of) == AS_OF
    out = ENGINES[engine].evaluate(store, rule.features, rule.as_of, rule.population).to_pylist()
    ids = store.table("patients")["patient_id"].tolist()
    got = {ids[r["patient"]]: r for r in out}
    wrong = {(p, k): (got[p][k], v) for p, (_, _, want) in CASES.items() for k, v in want.items() if got[p][k] != v}
    assert not wrong, f"(patient, feature): (got, expected) {wrong}"


def test_the_shipped_rules_share_the_register_definitions():
    """segments.yml counts long-term conditions exactly as multimorbidity.yml does."""
    mm, seg = compile_rule(RULE), compile_rule(ROOT / "rules" / "segments.yml")
    names = [n for n in mm.features if n not in ("emergency_12m", "cost_12m")]
    assert all(seg.features[n] == mm.features[n] for n in names)
    assert {n: seg.codelists[n] for n in mm.codelists} == mm.codelists
