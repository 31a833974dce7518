"""`count_distinct(table.code, ...)` counts the distinct codes of the rows; with a codelist,
`count_distinct(table.category, codelist=c)` counts the distinct categories the rows'
codes belong to (see Codelists). Over no rows it is 0."""

title = "count_distinct"


def test_count_distinct_codes(spec_test):
    """A code recorded twice counts once; a window applies as to any aggregation."""
    spec_test(
        tables={"diagnoses": """
            patient | date       | code_system | code
            --------+------------+-------------+---------
            a       | 2026-01-01 | snomed      | 38341003
            a       | 2026-02-01 | snomed      | 38341003
            a       | 2026-03-01 | snomed      | 44054006
            a       | 2020-03-01 | snomed      | 73211009
        """},
        features="""
            codes: count_distinct(diagnoses.code)
            recent: count_distinct(diagnoses.code, within=months(12))
        """,
        expected="""
            patient | codes | recent
            --------+-------+-------
            a       | 3     | 2
            b       | 0     | 0
        """)
