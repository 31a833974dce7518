"""The other attributes are the patients table's values as recorded: `sex`, `imd_decile`,
`birth_date`, `death_date`, `registration_start`, `registration_end`, `practice`, and
`as_of` is D itself."""

title = "Other attributes"


def test_recorded_attributes(spec_test):
    """A missing death date or IMD decile is missing."""
    spec_test(
        tables={"patients": """
            patient | birth_date | sex | imd_decile | death_date | registration_start
            --------+------------+-----+------------+------------+-------------------
            a       | 1940-05-01 | M   | 2          | 2026-09-01 | 1990-01-01
            b       | 1980-01-01 | F   |            |            | 2010-06-15
        """},
        features="""
            s: sex
            woman: sex == "F"
            imd: imd_decile
            born: birth_date
            died: death_date
            since: registration_start
            practice_code: practice
            d: as_of
        """,
        expected="""
            patient | s | woman | imd | born       | died       | since      | practice_code | d
            --------+---+-------+-----+------------+------------+------------+---------------+-----------
            a       | M | false | 2   | 1940-05-01 | 2026-09-01 | 1990-01-01 | Z00001        | 2026-10-31
            b       | F | true  |     | 1980-01-01 |            | 2010-06-15 | Z00001        | 2026-10-31
        """)
