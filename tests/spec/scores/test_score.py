"""`score(table, codelist=c)` (or `sum(table.weight, codelist=c)`) adds the weight of each
category the patient has, once per category, exactly: weights are whole numbers of 10^-k
units (k: the most decimal places a weight has, at most 4), added in 64 bits and divided
once by 10^k, so the score is the double nearest the exact decimal sum, on every engine."""

title = "score"


def test_0_1_0_2_is_0_3_in_doubles_0_30000000000000004(spec_test):
    """0.1 + 0.2 is 0.3 (added as doubles, 0.30000000000000004), and equals 0.3."""
    spec_test(
        tables={"diagnoses": """
            patient | date       | code_system | code | source
            --------+------------+-------------+------+-------
            p       | 2026-06-01 | icd10       | A01  | acute
            p       | 2026-06-01 | icd10       | A02  | acute
            q       | 2026-06-01 | icd10       | A01  | acute
            q       | 2026-06-01 | icd10       | A02  | acute
            q       | 2026-06-01 | icd10       | A03  | acute
        """},
        codelists={"g": '''
        code | system | category | weight
        -----+--------+----------+-------
        A01  | icd10  | a        | 0.1
        A02  | icd10  | b        | 0.2
        A03  | icd10  | c        | 0.7
    '''},
        features="""
            s: score(diagnoses, codelist=g)
            is_03: s == 0.3
            w: sum(diagnoses.weight, codelist=g)
        """,
        exact=True,
        expected="""
            patient | s   | is_03 | w
            --------+-----+-------+----
            p       | 0.3 | true  | 0.3
            q       | 1.0 | false | 1.0
        """)


def test_four_decimal_places_0_0001_three_times_is_0_0003(spec_test):
    """Four decimal places: 0.0001 three times is 0.0003."""
    spec_test(
        tables={"diagnoses": """
            patient | date       | code_system | code | source
            --------+------------+-------------+------+-------
            p       | 2026-06-01 | icd10       | A01  | acute
            p       | 2026-06-01 | icd10       | A02  | acute
            p       | 2026-06-01 | icd10       | A03  | acute
        """},
        codelists={"g": '''
        code | system | category | weight
        -----+--------+----------+-------
        A01  | icd10  | a        | 0.0001
        A02  | icd10  | b        | 0.0001
        A03  | icd10  | c        | 0.0001
    '''},
        features="""
            s: score(diagnoses, codelist=g)
            edge: s >= 0.0003
        """,
        exact=True,
        expected="""
            patient | s      | edge
            --------+--------+-----
            p       | 0.0003 | true
        """)


def test_negative_weights_and_a_total_of_exactly_0(spec_test):
    """Negative weights, and a total of exactly 0; `max(s, 0)` floors a negative score."""
    spec_test(
        tables={"diagnoses": """
            patient | date       | code_system | code | source
            --------+------------+-------------+------+-------
            p       | 2026-06-01 | icd10       | A01  | acute
            p       | 2026-06-01 | icd10       | A02  | acute
            q       | 2026-06-01 | icd10       | A02  | acute
            q       | 2026-06-01 | icd10       | A03  | acute
        """},
        codelists={"g": '''
        code | system | category | weight
        -----+--------+----------+-------
        A01  | icd10  | a        | 1.5
        A02  | icd10  | b        | -1.5
        A03  | icd10  | c        | -0.25
    '''},
        features="""
            s: score(diagnoses, codelist=g)
            zero: s == 0
            floored: max(s, 0)
        """,
        exact=True,
        expected="""
            patient | s     | zero  | floored
            --------+-------+-------+--------
            p       | 0.0   | true  | 0.0
            q       | -1.75 | false | 0.0
        """)


def test_a_category_s_weight_is_its_codes_largest_once_a_weightless_category_scores_0(spec_test):
    """A category's weight is its codes' largest, counted once; a weightless category scores 0."""
    spec_test(
        tables={"diagnoses": """
            patient | date       | code_system | code | source
            --------+------------+-------------+------+-------
            p       | 2026-06-01 | icd10       | A01  | acute
            p       | 2026-06-01 | icd10       | A02  | acute
            p       | 2026-06-01 | icd10       | A03  | acute
            q       | 2026-06-01 | icd10       | A01  | acute
            r       | 2026-06-01 | icd10       | B01  | acute
        """},
        codelists={"g": '''
        code | system | category | weight
        -----+--------+----------+-------
        A01  | icd10  | a        |
        A02  | icd10  | a        | -0.5
        A03  | icd10  | a        | -0.2
        B01  | icd10  | b        |
    '''},
        features="s: score(diagnoses, codelist=g)",
        exact=True,
        expected="""
            patient | s
            --------+-----
            p       | -0.2
            q       | -0.2
            r       | 0.0
        """)


def test_the_category_s_weight_whichever_of_its_codes_the_patient_has(spec_test):
    """The category's weight, whichever of its codes the patient has."""
    spec_test(
        tables={"diagnoses": """
            patient | date       | code_system | code | source
            --------+------------+-------------+------+-------
            light   | 2026-06-01 | icd10       | A01  | acute
            heavy   | 2026-06-01 | icd10       | A02  | acute
        """},
        codelists={"g": '''
        code | system | category | weight
        -----+--------+----------+-------
        A01  | icd10  | heart    | 2
        A02  | icd10  | heart    | 5
        A02  | icd10  | lung     | 1
    '''},
        features="s: score(diagnoses, codelist=g)",
        exact=True,
        expected="""
            patient | s
            --------+----
            light   | 5.0
            heavy   | 6.0
        """)


def test_no_rows_0(spec_test):
    """No matching rows: 0."""
    spec_test(
        tables={"diagnoses": """
            patient | date       | code_system | code | source
            --------+------------+-------------+------+-------
            q       | 2026-06-01 | icd10       | Z99  | acute
        """},
        codelists={"g": '''
        code | system | category | weight
        -----+--------+----------+-------
        A01  | icd10  | a        | 2.5
    '''},
        features="s: score(diagnoses, codelist=g)",
        exact=True,
        expected="""
            patient | s
            --------+----
            p       | 0.0
            q       | 0.0
        """)
