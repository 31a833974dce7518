"""Every shipped rule compiles, names its rationale and sources, and its codelists exist."""
from pathlib import Path

import pytest

from casefind.project import rule_files
from casefind.rules.compile import compile_rule

RULES = rule_files(Path(__file__).parents[2] / "rules")


def test_rules_are_shipped():
    assert {p.stem for p in RULES} == {"frail", "multimorbidity", "rising_risk", "high_utilisers", "segments",
                                       "hfrs", "charlson"}


@pytest.mark.parametrize("path", RULES, ids=[p.stem for p in RULES])
def test_rule_compiles_and_explains_itself(path):
    rule = compile_rule(path)
    head = path.read_text().split("\nrule:")[0]
    assert "Rationale" in head and ("Source" in head or "source" in head), "header must give rationale and sources"
    assert rule.include, "a shipped rule lists people for a reason"
    assert rule.output_columns


def test_frailty_and_conditions_use_the_complete_published_sets():
    """frail, multimorbidity and segments count eFI deficits and QOF registers with the complete
    published code sets (each with a provenance sidecar); the one starter list left is cancer's
    (the QOF cancer cluster was not found), and hypothyroidism, no longer a QOF register, is gone."""
    by_name = {p.stem: compile_rule(p) for p in RULES if p.stem in ("frail", "multimorbidity", "segments")}
    for name, rule in by_name.items():
        for cl_name, cl in rule.codelists.items():
            assert cl.file, (name, cl_name)  # no inline codes any more
            if cl.file.startswith("codelists/published/"):
                assert dict(cl.provenance)["date_retrieved"], (name, cl_name)
            elif cl_name == "bmi_value":  # obesity's value rule: the BMI observable (BMIVAL_COD not found)
                assert cl.file == "codelists/bmi_value_snomed.csv" and cl.codes == ("60621009",)
                assert dict(cl.provenance)["date_retrieved"], (name, cl_name)
            else:
                assert (cl.file, cl.selected) == ("codelists/ltc_qof_snomed.csv", ("cancer",)), (name, cl_name)
        assert "hypothyroidism" not in rule.features
    assert by_name["frail"].codelists["efi"].file == "codelists/published/efi_snomed.csv"
    assert by_name["segments"].codelists["efi"] == by_name["frail"].codelists["efi"]


def test_a_segmented_rule_names_the_feature_its_cost_shares_are_of():
    """segments.yml's run summary gives each segment's share of cost_12m, because it says so
    (cost:), not because a feature happens to have that name."""
    segmented = {p.stem: compile_rule(p) for p in RULES if compile_rule(p).segments}
    assert set(segmented) == {"segments"}
    assert segmented["segments"].cost == "cost_12m"
