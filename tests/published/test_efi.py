"""The electronic Frailty Index against its definition (Clegg et al., Age Ageing 2016):
eFI = deficits / 36; fit <= 0.12 < mild <= 0.24 < moderate <= 0.36 < severe. The rule counts
deficits with the complete published eFI code set (codelists/published/efi_snomed.csv), so
the deficits here are coded from it: one code per deficit that no other deficit holds (a
code in two deficits' sets counts for both)."""
import csv
from collections import Counter
from pathlib import Path

import pytest

from casefind.ingest import run_ingest
from casefind.rules.compile import compile_rule
from casefind.store import Store
from casefind_testdata import write_source
from spec_helpers import ENGINES, PRACTICES, patient

RULE = Path(__file__).parents[2] / "rules" / "frail.yml"
with open(RULE.parent / "codelists" / "published" / "efi_snomed.csv") as _f:
    ROWS = list(csv.DictReader(_f))
_SHARED = {c for c, n in Counter(r["code"] for r in ROWS).items() if n > 1}
ONE_CODE_PER_DEFICIT = list({r["category"]: r["code"] for r in ROWS if r["code"] not in _SHARED}.items())

# (deficits coded, medicines issued in 12 months) -> (deficits, eFI, category)
CASES = {
    "four": (4, 0, 4, "fit"),        # 4/36 = 0.111
    "five": (5, 0, 5, "mild"),       # 0.139
    "eight": (8, 0, 8, "mild"),      # 0.222
    "nine": (8, 5, 9, "moderate"),   # 8 coded + polypharmacy (5 medicines) = 9 -> 0.25
    "twelve": (12, 4, 12, "moderate"),  # 4 medicines is not polypharmacy: 0.333
    "thirteen": (13, 0, 13, "severe"),  # 0.361
}


def test_codelist_covers_35_coded_deficits():
    assert len({r["category"] for r in ROWS}) == 35  # the 36th, polypharmacy, is from medicines
    assert len(ONE_CODE_PER_DEFICIT) == 35
    assert compile_rule(RULE).codelists["efi"].file == "codelists/published/efi_snomed.csv"


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_index_and_categories(tmp_path, engine):
    diagnoses, meds = [], []
    for pid, (n_def, n_meds, _, _) in CASES.items():
        for _category, code in ONE_CODE_PER_DEFICIT[:n_def]:
            diagnoses.append((pid, "2020-01-01", "snomed", code, "primary_care"))
        diagnoses.append((pid, "2021-01-01", "snomed", ONE_CODE_PER_DEFICIT[0][1], "primary_care"))  # a repeat
        for m in range(n_meds):
            meds.append((pid, "2026-06-01", "bnf", f"02050{m}", "28"))
    tables = {"practices": PRACTICES, "patients": [patient(p, birth="1940-01-01") for p in CASES],
              "diagnoses": diagnoses, "medications": meds}
    run_ingest(write_source(tmp_path / "src", tables), tmp_path / "store")
    rule = compile_rule(RULE)
    store = Store.open(tmp_path / "store")
    out = ENGINES[engine].evaluate(store, rule.features, rule.as_of, rule.population).to_pylist()
    ids = store.table("patients")["patient_id"].tolist()
    got = {ids[r["patient"]]: (r["deficits"], round(r["efi"], 4), r["frailty"]) for r in out}
    assert got == {pid: (d, round(d / 36, 4), cat) for pid, (_, _, d, cat) in CASES.items()}
