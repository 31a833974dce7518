"""`codelist=c` keeps the rows whose code is in the codelist: a listed code of the
codelist's system, or one starting with a listed prefix. A code listed under two
categories counts for both."""

title = "Codelists"

GROUPS = """
    code | system | category | weight
    -----+--------+----------+-------
    111  | snomed | heart    | 2
    222  | snomed | heart    | 5
    222  | snomed | lung     | 1
    333  | snomed | lung     | 1
"""


def test_a_code_in_two_categories_counts_for_both(spec_test):
    """Categories versus codes versus rows versus points (heart is worth max(2, 5), lung 1)."""
    spec_test(
        tables={"diagnoses": """
            patient | date       | code_system | code
            --------+------------+-------------+-----
            a       | 2020-01-01 | snomed      | 111
            a       | 2021-01-01 | snomed      | 222
            a       | 2022-01-01 | snomed      | 222
            b       | 2020-01-01 | snomed      | 333
        """},
        codelists={"groups": GROUPS},
        features="""
            cats: count_distinct(diagnoses.category, codelist=groups)
            codes: count_distinct(diagnoses.code, codelist=groups)
            rows: count(diagnoses, codelist=groups)
            points: score(diagnoses, codelist=groups)
        """,
        expected="""
            patient | cats | codes | rows | points
            --------+------+-------+------+-------
            a       | 2    | 2     | 3    | 6.0
            b       | 1    | 1     | 1    | 1.0
        """)


def test_prefixes_and_systems(spec_test):
    """I50 matches I509 and I50, not I5; a code of another system never matches; a codelist
    also matches activity's primary diagnosis (ICD-10)."""
    spec_test(
        tables={
            "diagnoses": """
                patient | date       | code_system | code
                --------+------------+-------------+---------
                a       | 2026-01-01 | icd10       | I509
                a       | 2026-02-01 | icd10       | I50
                a       | 2026-03-01 | icd10       | I5
                b       | 2026-01-01 | snomed      | I509
            """,
            "activity": """
                patient | start_date | setting             | primary_diagnosis
                --------+------------+---------------------+------------------
                a       | 2026-01-01 | emergency_admission | I500
                b       | 2026-01-01 | emergency_admission | J440
            """},
        codelists={"hf": '{system: icd10, prefixes: ["I50"]}'},
        features="""
            coded: count(diagnoses, codelist=hf)
            admitted: count(activity, codelist=hf)
        """,
        expected="""
            patient | coded | admitted
            --------+-------+---------
            a       | 2     | 1
            b       | 0     | 0
        """)
