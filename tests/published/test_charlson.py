"""Charlson comorbidity index, SHMI weights, against the specification's mapping."""
import csv
from pathlib import Path

import pytest

from casefind.ingest import run_ingest
from casefind.rules.compile import compile_rule
from casefind.store import Store
from casefind_testdata import write_source
from spec_helpers import ENGINES, PRACTICES, patient

RULE = Path(__file__).parents[2] / "rules" / "charlson.yml"

SHMI_WEIGHTS = {  # the specification's weight per condition
    "acute_myocardial_infarction": 5, "cerebrovascular_accident": 11, "congestive_heart_failure": 13,
    "connective_tissue_disorder": 4, "dementia": 14, "diabetes": 3, "liver_disease": 8, "peptic_ulcer": 9,
    "peripheral_vascular_disease": 6, "pulmonary_disease": 4, "cancer": 8, "diabetes_complications": -1,
    "paraplegia": 1, "renal_disease": 10, "metastatic_cancer": 14, "severe_liver_disease": 18, "hiv": 2,
}


def test_codelist_weights():
    with open(RULE.parent / "codelists" / "charlson_shmi_icd10.csv") as f:
        rows = list(csv.DictReader(f))
    got = {r["category"]: float(r["weight"]) for r in rows}
    assert got == SHMI_WEIGHTS


ADMITTED = "2026-06-01"


def dx(pid, code, position=2, spell=None, date=ADMITTED):
    return (pid, date, "icd10", code, "acute", spell or f"S-{pid}", str(position))


def admission(pid, start=ADMITTED, spell=None, setting="emergency_admission"):
    return (pid, start, start, setting, "2000", None, "RXX01", "home", spell or f"S-{pid}")


def evaluate(tmp_path, engine, diagnoses: dict[str, list[str]], extra: dict | None = None) -> dict[str, tuple]:
    """(points before the floor, index, group, conditions) of each patient, for the
    secondary diagnoses (ICD-10) of their one admission this year (the index spell)."""
    extra = extra or {}
    tables = {"practices": PRACTICES, "patients": [patient(p) for p in diagnoses],
              "activity": [admission(p) for p in diagnoses if p not in extra.get("unadmitted", ())]
              + extra.get("activity", []),
              "diagnoses": [dx(p, code) for p, codes in diagnoses.items() for code in codes]
              + extra.get("diagnoses", [])}
    run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    rule = compile_rule(RULE)
    store = Store.open(tmp_path / "store")
    out = ENGINES[engine].evaluate(store, rule.features, rule.as_of, rule.population).to_pylist()
    ids = store.table("patients")["patient_id"].tolist()
    return {ids[r["patient"]]: (r["charlson_points"], r["charlson"], r["charlson_group"], r["charlson_conditions"])
            for r in out}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_the_index_spell_and_its_secondary_diagnoses(tmp_path, engine):
    """SHMI scores a spell: the index spell is the latest admission in 12 months, and its
    comorbidities are its diagnoses besides the primary one. An earlier spell's diagnoses,
    a primary diagnosis and primary care codes do not count; no admission, no index."""
    got = evaluate(tmp_path, engine, {"primary": [], "earlier": [], "unadmitted": []}, {
        "unadmitted": ("unadmitted",),
        "activity": [admission("earlier", "2026-02-01", "S-earlier-1")],
        "diagnoses": [dx("primary", "I500", position=1), dx("primary", "F03", position=2),
                      dx("earlier", "I500", spell="S-earlier-1", date="2026-02-01"), dx("earlier", "J44"),
                      ("unadmitted", "2026-06-01", "icd10", "I500", "primary_care", None, None)]})
    assert got["primary"] == (14.0, 14.0, "11-20", 1)     # F03 dementia only; I50 is the primary diagnosis
    assert got["earlier"] == (4.0, 4.0, "1-5", 1)         # J44 of the latest spell; not I50 of the earlier
    assert got["unadmitted"][1:3] == (None, None)           # no hospital spell: no index


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_scores(tmp_path, engine):
    got = evaluate(tmp_path, engine, {
        "hf_dem": ["I500", "F03"],          # 13 + 14 = 27 -> 21+
        "twice": ["J440", "J449"],          # pulmonary once: 4 -> 1-5
        "none": ["I10"],                    # hypertension: not a Charlson condition
        "many": ["I21", "I50", "F00", "K25", "N18", "B20"],  # 5 + 13 + 14 + 9 + 10 + 2 = 53
    })
    assert got == {"hf_dem": (27.0, 27.0, "21+", 2), "twice": (4.0, 4.0, "1-5", 1), "none": (0.0, 0.0, "0", 0),
                   "many": (53.0, 53.0, "21+", 6)}


# The hierarchy. The SHMI specification's own text could not be retrieved for this test (its
# PDF is not among the sources available here); what follows is how the published
# implementations of the SHMI Charlson variant apply it, which rules/charlson.yml follows:
# - comorbidipy (vvcb/comorbidipy; its SHMI variant is based on the SHMI specification
#   v1.35, 2020-09-24) by default sets the milder form of a condition to 0 when its more
#   severe form is present, for three pairs: mild / moderate-or-severe liver disease,
#   diabetes / diabetes with complications, cancer / metastatic solid tumour; and, for the
#   SHMI weights only, sets a total below zero to zero;
# - a second implementation of the UK SHMI mapping (v1.60) counts only the more severe
#   category of the same three pairs when both are present, and assigns a negative total
#   the value zero;
# - the R package comorbidity (Gasparini) describes the same hierarchy (assign0): with a
#   condition recorded at two degrees of severity, the milder is scored 0.
# In the SHMI mapping the pairs are diabetes_complications over diabetes,
# severe_liver_disease over liver_disease and metastatic_cancer over cancer. With the SHMI
# weights the severe form weighs more for liver disease (18 over 8) and cancer (14 over 8),
# but less for diabetes (-1 under 3): diabetes with complications replaces diabetes, and
# the index, floored at 0, loses the 3 points.
PAIRS = {  # (milder code, its weight), (severe code, its weight)
    "diabetes": (("E119", 3), ("E112", -1)),
    "liver": (("K703", 8), ("K721", 18)),
    "cancer": (("C509", 8), ("C787", 14)),
}


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_each_hierarchy_pair_counts_the_severe_form_once_and_each_alone(tmp_path, engine, pair):
    (mild, w_mild), (severe, w_severe) = PAIRS[pair]
    got = evaluate(tmp_path, engine, {"both": [mild, severe], "mild": [mild], "severe": [severe],
                                      "both_and_hf": [mild, severe, "I50"]})
    points = {p: v[0] for p, v in got.items()}
    assert points == {"both": w_severe, "mild": w_mild, "severe": w_severe, "both_and_hf": w_severe + 13}
    for p, (pts, index, _, conditions) in got.items():
        assert index == max(pts, 0)  # never negative
        assert conditions == (2 if p == "both" else 3 if p == "both_and_hf" else 1)  # conditions recorded


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_the_index_is_never_negative(tmp_path, engine):
    got = evaluate(tmp_path, engine, {"complications": ["E112"], "both": ["E119", "E113"],
                                      "with_copd": ["E112", "J44"], "hiv": ["B20", "E102"]})
    assert got == {"complications": (-1.0, 0.0, "0", 1), "both": (-1.0, 0.0, "0", 2),
                   "with_copd": (3.0, 3.0, "1-5", 2), "hiv": (1.0, 1.0, "1-5", 2)}
    assert all(index >= 0 for _, index, _, _ in got.values())


def test_the_rule_declares_the_three_pairs():
    rule = compile_rule(RULE)
    assert rule.features["charlson_points"].hierarchy == (
        ("diabetes_complications", "diabetes"), ("severe_liver_disease", "liver_disease"),
        ("metastatic_cancer", "cancer"))
