"""The Hospital Frailty Risk Score against its source (Gilbert et al., Lancet 2018)."""
import csv
from pathlib import Path

import pytest

from casefind.ingest import run_ingest
from casefind.rules.compile import compile_rule
from casefind.store import Store
from casefind_testdata import write_source
from spec_helpers import ENGINES, PRACTICES, patient

RULE = Path(__file__).parents[2] / "rules" / "hfrs.yml"


def test_codelist_is_the_published_table():
    with open(RULE.parent / "codelists" / "hfrs_icd10.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 109
    points = {r["category"]: float(r["weight"]) for r in rows}
    # spot checks against the paper's table: the highest, some middle, the lowest
    assert points["F00"] == 7.1 and points["G81"] == 4.4 and points["W19"] == 3.2
    assert points["N18"] == 1.4 and points["J18"] == 1.1 and points["R50"] == 0.1
    assert round(sum(points.values()), 1) == 173.2


def dx(pid, date, code, spell=None, position=None):
    return (pid, date, "icd10", code, "acute", spell, None if position is None else str(position))


def admission(pid, start="2026-06-01", end="2026-06-05", setting="emergency_admission", spell=None):
    return (pid, start, end, setting, "2000", None, "RXX01", "home", spell or f"S-{pid}-{start}")


INDEX = "2026-06-01"  # each patient's index admission: their latest emergency admission


# Gilbert et al. 2018 (Methods): the score of an index admission uses the ICD-10 codes of
# that admission and of hospital records in the two years before it; people 75 and over.
@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_worked_examples(tmp_path, engine):
    people = ("ex", "dup", "old", "high", "gp", "later", "never")
    tables = {
        "practices": PRACTICES,
        "patients": [patient(p, birth="1940-01-01") for p in people],
        "activity": [admission(p) for p in people if p != "never"]
                    + [admission("later", "2026-08-01", "2026-08-03", "elective_admission")],
        "diagnoses": [
            # the Strategy Unit's example: dementia F00 (7.1) in the index admission + an
            # unspecified fall W19 (3.2) a year before = 10.3
            dx("ex", INDEX, "F00.1", f"S-ex-{INDEX}", 2), dx("ex", "2025-06-01", "W19"),
            # each category once: F00 twice and F001/F009 still 7.1
            dx("dup", "2026-01-10", "F001"), dx("dup", INDEX, "F009", f"S-dup-{INDEX}", 1),
            # more than two years before the index admission: not counted (R50 within: 0.1)
            dx("old", "2024-05-31", "F00"), dx("old", "2025-01-01", "R50"),
            # high: 7.1 + 4.4 + 4.0 = 15.5
            dx("high", "2026-01-01", "F00"), dx("high", "2026-01-01", "G81"), dx("high", "2026-01-01", "G30"),
            # recorded in primary care, not hospital: not counted
            ("gp", "2026-01-01", "icd10", "F00", "primary_care", None, None),
            # after the index admission (a later elective spell): not counted
            dx("later", "2026-08-01", "F00", "S-later-2026-08-01", 1),
            # no emergency admission: no index, no score, whatever the diagnoses
            dx("never", "2026-01-01", "F00"),
        ],
    }
    run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    rule = compile_rule(RULE)
    store = Store.open(tmp_path / "store")
    out = ENGINES[engine].evaluate(store, rule.features, rule.as_of, rule.population).to_pylist()
    ids = store.table("patients")["patient_id"].tolist()
    got = {ids[r["patient"]]: (None if r["hfrs"] is None else round(r["hfrs"], 6), r["hfrs_band"]) for r in out}
    assert got == {"ex": (10.3, "intermediate"), "dup": (7.1, "intermediate"), "old": (0.1, "low"),
                   "high": (15.5, "high"), "gp": (0.0, "low"), "later": (0.0, "low"), "never": (None, None)}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_points_that_add_to_exactly_5_and_15_band_as_the_paper_says(tmp_path, engine):
    """Low risk is < 5, intermediate 5-15, high > 15 (Gilbert et al.). Published points
    that add to exactly 5.0 or 15.0 are intermediate: the score is exact (added as whole
    tenths), not the binary floating point sum (4.999999999999999, 15.000000000000002)."""
    tables = {
        "practices": PRACTICES,
        "patients": [patient(p, birth="1940-01-01") for p in ("five", "fifteen", "fifteen_1")],
        "activity": [admission(p) for p in ("five", "fifteen", "fifteen_1")],
        "diagnoses": [
            # E53 1.9 + E86 2.3 + I63 0.8 = 5.0
            dx("five", "2026-01-10", "E538"), dx("five", "2025-06-01", "E86"), dx("five", "2026-03-01", "I639"),
            # F00 7.1 + F05 3.2 + G81 4.4 + K52 0.3 = 15.0
            dx("fifteen", "2026-01-01", "F001"), dx("fifteen", "2026-01-01", "F059"),
            dx("fifteen", "2026-01-01", "G819"), dx("fifteen", "2026-01-01", "K529"),
            # F00 7.1 + F05 3.2 + M25 2.3 + S06 2.4 = 15.0, then R50 0.1: 15.1
            dx("fifteen_1", "2026-01-01", "F00"), dx("fifteen_1", "2026-01-01", "F05"),
            dx("fifteen_1", "2026-01-01", "M255"), dx("fifteen_1", "2026-01-01", "S060"),
            dx("fifteen_1", "2026-02-01", "R509"),
        ],
    }
    run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    rule = compile_rule(RULE)
    store = Store.open(tmp_path / "store")
    exprs = {**rule.features, **{f"include:{k}": v for k, v in rule.include}}
    out = ENGINES[engine].evaluate(store, exprs, rule.as_of, rule.population).to_pylist()
    ids = store.table("patients")["patient_id"].tolist()
    got = {ids[r["patient"]]: (repr(r["hfrs"]), r["hfrs_band"], r["include:hfrs_5_or_more"]) for r in out}
    assert got == {"five": ("5.0", "intermediate", True), "fifteen": ("15.0", "intermediate", True),
                   "fifteen_1": ("15.1", "high", True)}


def test_a_run_lists_the_patient_at_exactly_5_and_its_recheck_agrees(tmp_path):
    """`casefind run rules/hfrs.yml` re-checks the listed patients on the reference engine
    and aborts when the engines disagree; at 5.0 they agree, and the patient is listed."""
    from casefind.lists.run import run

    tables = {
        "practices": PRACTICES,
        "patients": [patient(p, birth="1940-01-01") for p in ("five", "under")],
        "activity": [admission(p) for p in ("five", "under")],
        "diagnoses": [dx("five", "2026-01-10", "E538"), dx("five", "2025-06-01", "E86"),
                      dx("five", "2026-03-01", "I639"),
                      dx("under", "2026-01-10", "E538"), dx("under", "2025-06-01", "E86"),
                      dx("under", "2026-03-01", "R509")],
    }
    run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    result = run(RULE, tmp_path / "store", tmp_path / "out", allow_partial=True)
    with open(result.out_dir / "list.csv") as f:
        listed = list(csv.DictReader(f))
    assert [(r["hfrs"], r["hfrs_band"]) for r in listed] == [("5", "intermediate")]
