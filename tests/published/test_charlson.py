"""Charlson comorbidity index, SHMI weights, against the specification's mapping."""
import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "spec"))
from spec_helpers import ENGINES, PRACTICES, patient  # noqa: E402

from casefind.ingest import run_ingest  # noqa: E402
from casefind.rules.compile import compile_rule  # noqa: E402
from casefind.store import Store  # noqa: E402
from casefind_testdata import write_source  # noqa: E402

RULE = Path(__file__).parents[2] / "rules" / "charlson.yml"

SHMI_WEIGHTS = {  # the specification's weight per condition
    "acute_myocardial_infarction": 5, "cerebrovascular_accident": 11, "congestive_heart_failure": 13,
    "connective_tissue_disorder": 4, "dementia": 14, "diabetes": 3, "liver_disease": 8, "peptic_ulcer": 9,
    "peripheral_vascular_disease": 6, "pulmonary_disease": 4, "cancer": 8, "diabetes_complications": -1,
    "paraplegia": 1, "renal_disease": 10, "metastatic_cancer": 14, "severe_liver_disease": 18, "hiv": 2,
}


def test_codelist_weights():
    rows = list(csv.DictReader(open(RULE.parent / "codelists" / "charlson_shmi_icd10.csv")))
    got = {r["category"]: float(r["weight"]) for r in rows}
    assert got == SHMI_WEIGHTS


def dx(pid, code):
    return (pid, "2026-06-01", "icd10", code, "acute")


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_scores(tmp_path, engine):
    tables = {
        "practices": PRACTICES,
        "patients": [patient(p) for p in ("hf_dem", "diab", "twice", "none")],
        "diagnoses": [
            dx("hf_dem", "I500"), dx("hf_dem", "F03"),        # 13 + 14 = 27 -> 21+
            dx("diab", "E119"), dx("diab", "E112"),           # 3 + (-1) = 2 -> 1-5
            dx("twice", "J440"), dx("twice", "J449"),         # pulmonary once: 4 -> 1-5
            dx("none", "I10"),                                # hypertension: not a Charlson condition
        ],
    }
    run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    rule = compile_rule(RULE)
    store = Store.open(tmp_path / "store")
    out = ENGINES[engine](store, rule.features, rule.as_of, rule.population).to_pylist()
    ids = store.table("patients")["patient_id"].tolist()
    got = {ids[r["patient"]]: (r["charlson"], r["charlson_group"], r["charlson_conditions"]) for r in out}
    assert got == {"hf_dem": (27.0, "21+", 2), "diab": (2.0, "1-5", 2), "twice": (4.0, "1-5", 1),
                   "none": (0.0, "0", 0)}
