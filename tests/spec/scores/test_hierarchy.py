"""`hierarchy=(higher > lower, ...)` lists pairs of a score's categories: when a patient has
both, only the higher counts; each alone counts. Pairs may chain and a category may be
below several."""

title = "hierarchy="

# a over b (a pair), c over d over e (a chain), f and g both over h
HIERARCHY_CODELIST = """
    code | system | category | weight
    -----+--------+----------+-------
    A01  | icd10  | a        | -1
    B01  | icd10  | b        | 3
    C01  | icd10  | c        | 10
    D01  | icd10  | d        | 5
    E01  | icd10  | e        | 1
    F01  | icd10  | f        | 0.5
    G01  | icd10  | g        | 0.25
    H01  | icd10  | h        | 7
"""


def test_hierarchy_of_a_pair_only_the_higher_counts_each_alone_counts(spec_test):
    """Of a pair, only the higher counts; each alone counts."""
    spec_test(
        tables={"diagnoses": """
            patient | date       | code_system | code | source
            --------+------------+-------------+------+-------
            both    | 2026-06-01 | icd10       | A01  | acute
            both    | 2026-06-01 | icd10       | B01  | acute
            a_only  | 2026-06-01 | icd10       | A01  | acute
            b_only  | 2026-06-01 | icd10       | B01  | acute
        """},
        codelists={"g": HIERARCHY_CODELIST},
        features="""
            s: score(diagnoses, codelist=g, hierarchy=(a > b, c > d, d > e, f > h, g > h))
            plain: score(diagnoses, codelist=g)
        """,
        exact=True,
        expected="""
            patient | s    | plain
            --------+------+------
            both    | -1.0 | 2.0
            a_only  | -1.0 | -1.0
            b_only  | 3.0  | 3.0
        """)


def test_hierarchy_a_chain_leaves_out_what_is_directly_below_a_present_category(spec_test):
    """A chain leaves out what is directly below a present category: with c and e (but not d) both count."""
    spec_test(
        tables={"diagnoses": """
            patient | date       | code_system | code | source
            --------+------------+-------------+------+-------
            cde     | 2026-06-01 | icd10       | C01  | acute
            cde     | 2026-06-01 | icd10       | D01  | acute
            cde     | 2026-06-01 | icd10       | E01  | acute
            ce      | 2026-06-01 | icd10       | C01  | acute
            ce      | 2026-06-01 | icd10       | E01  | acute
            de      | 2026-06-01 | icd10       | D01  | acute
            de      | 2026-06-01 | icd10       | E01  | acute
        """},
        codelists={"g": HIERARCHY_CODELIST},
        features="s: score(diagnoses, codelist=g, hierarchy=(a > b, c > d, d > e, f > h, g > h))",
        exact=True,
        expected="""
            patient | s
            --------+-----
            cde     | 10.0
            ce      | 11.0
            de      | 5.0
        """)


def test_hierarchy_a_category_below_two_counts_only_when_neither_is_present(spec_test):
    """A category below two counts only when neither is present."""
    spec_test(
        tables={"diagnoses": """
            patient | date       | code_system | code | source
            --------+------------+-------------+------+-------
            fh      | 2026-06-01 | icd10       | F01  | acute
            fh      | 2026-06-01 | icd10       | H01  | acute
            gh      | 2026-06-01 | icd10       | G01  | acute
            gh      | 2026-06-01 | icd10       | H01  | acute
            fgh     | 2026-06-01 | icd10       | F01  | acute
            fgh     | 2026-06-01 | icd10       | G01  | acute
            fgh     | 2026-06-01 | icd10       | H01  | acute
            h       | 2026-06-01 | icd10       | H01  | acute
        """},
        codelists={"g": HIERARCHY_CODELIST},
        features="s: score(diagnoses, codelist=g, hierarchy=(a > b, c > d, d > e, f > h, g > h))",
        exact=True,
        expected="""
            patient | s
            --------+-----
            fh      | 0.5
            gh      | 0.25
            fgh     | 0.75
            h       | 7.0
        """)


def test_hierarchy_categories_in_quotes_the_window_and_filter_choose_the_rows_first(spec_test):
    """Categories may be written in quotes; the window and filter choose the rows first."""
    spec_test(
        tables={"diagnoses": """
            patient | date       | code_system | code | source
            --------+------------+-------------+------+-------------
            old_a   | 2020-01-01 | icd10       | A01  | acute
            old_a   | 2026-06-01 | icd10       | B01  | acute
            gp_a    | 2026-06-01 | icd10       | B01  | acute
            gp_a    | 2026-06-01 | icd10       | A01  | primary_care
        """},
        codelists={"g": HIERARCHY_CODELIST},
        features='s: score(diagnoses, source == "acute", codelist=g, within=months(12), hierarchy=("a" > "b"))',
        exact=True,
        expected="""
            patient | s
            --------+----
            old_a   | 3.0
            gp_a    | 3.0
        """)
