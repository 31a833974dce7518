"""The Hospital Frailty Risk Score with its published points (rules/codelists/hfrs_icd10.csv):
points that add to exactly 5 or 15 land in the right band, on every engine, whatever
floating point would make of them (1.9 + 2.3 + 0.8 added as doubles is 4.999999999999999)."""
from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

from spec_helpers import evaluate_case, patient

title = "HFRS bands"

HFRS_CSV = Path(__file__).parents[3] / "rules" / "codelists" / "hfrs_icd10.csv"


def test_points_that_add_to_exactly_5_and_15_land_in_the_right_band(spec_test):
    """E53 1.9 + E86 2.3 + I63 0.8 = 5.0; F00 7.1 + F05 3.2 + G81 4.4 + K52 0.3 = 15.0;
    E53 + E86 + K52 + R50 0.1 = 4.6; 15.0 + R50 = 15.1 (a code counts by its category's prefix)."""
    spec_test(
        tables={
            "patients": """
                patient    | birth_date
                -----------+-----------
                five       | 1940-01-01
                fifteen    | 1940-01-01
                just_under | 1940-01-01
                just_over  | 1940-01-01
            """,
            "diagnoses": """
                patient    | date       | code_system | code | source
                -----------+------------+-------------+------+-------
                five       | 2026-06-01 | icd10       | E538 | acute
                five       | 2026-06-01 | icd10       | E86  | acute
                five       | 2026-06-01 | icd10       | I639 | acute
                fifteen    | 2026-06-01 | icd10       | F001 | acute
                fifteen    | 2026-06-01 | icd10       | F059 | acute
                fifteen    | 2026-06-01 | icd10       | G819 | acute
                fifteen    | 2026-06-01 | icd10       | K529 | acute
                just_under | 2026-06-01 | icd10       | E53  | acute
                just_under | 2026-06-01 | icd10       | E86  | acute
                just_under | 2026-06-01 | icd10       | K52  | acute
                just_under | 2026-06-01 | icd10       | R50  | acute
                just_over  | 2026-06-01 | icd10       | F00  | acute
                just_over  | 2026-06-01 | icd10       | F05  | acute
                just_over  | 2026-06-01 | icd10       | G81  | acute
                just_over  | 2026-06-01 | icd10       | K52  | acute
                just_over  | 2026-06-01 | icd10       | R509 | acute
            """},
        codelists={"hfrs": HFRS_CSV},
        features="""
            hfrs: score(diagnoses, codelist=hfrs)
            band: case(hfrs > 15, "high", hfrs >= 5, "intermediate", "low")
            five_or_more: hfrs >= 5
            at_five: hfrs == 5
            at_fifteen: hfrs == 15
            above_fifteen: hfrs > 15
            below_five: hfrs < 5
        """,
        exact=True,
        expected="""
            patient    | hfrs | band         | five_or_more | at_five | at_fifteen | above_fifteen | below_five
            -----------+------+--------------+--------------+---------+------------+---------------+-----------
            five       | 5.0  | intermediate | true         | true    | false      | false         | false
            fifteen    | 15.0 | intermediate | true         | false   | true       | false         | false
            just_under | 4.6  | low          | false        | false   | false      | false         | true
            just_over  | 15.1 | high         | true         | false   | false      | true          | false
        """)


def test_every_pair_of_hfrs_categories_scores_the_exact_sum_of_its_points(tmp_path, engine):
    """Every HFRS category with every other: 5,886 patients, each score to the bit the exact
    sum of its two published points (so identical on every engine)."""
    rows = list(csv.DictReader(HFRS_CSV.read_text().splitlines()))
    pairs = [(a, b) for i, a in enumerate(rows) for b in rows[i + 1:]]
    tables = {"patients": [patient(f"p{i}") for i in range(len(pairs))],
              "diagnoses": [(f"p{i}", "2026-06-01", "icd10", r["code"].rstrip("*"), "acute")
                            for i, pair in enumerate(pairs) for r in pair]}
    (tmp_path / "hfrs.csv").write_bytes(HFRS_CSV.read_bytes())
    got = evaluate_case(tmp_path, engine, tables, "  s: score(diagnoses, codelist=hfrs)\n", "2026-10-31",
                        codelists="  hfrs: {file: hfrs.csv}\n")
    wrong = {}
    for i, (a, b) in enumerate(pairs):
        want = float(Fraction(a["weight"]) + Fraction(b["weight"]))
        if repr(got[f"p{i}"]["s"]) != repr(want):
            wrong[(a["category"], b["category"])] = (got[f"p{i}"]["s"], want)
    assert not wrong, wrong
