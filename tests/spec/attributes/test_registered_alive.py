"""`registered` is true when the registration covers the evaluation date D (started on or
before it, not ended before it); `alive` when the patient has not died on or before D."""

title = "registered and alive"


def test_registered_and_alive_at_as_of(spec_test):
    """Death on D itself is not alive; a registration starting after D is not registered."""
    spec_test(
        tables={"patients": """
            patient | registration_start | registration_end | death_date
            --------+--------------------+------------------+-----------
            ok      | 2000-01-01         |                  |
            left    | 2000-01-01         | 2026-06-01       |
            died    | 2000-01-01         |                  | 2026-10-31
            later   | 2026-11-01         |                  |
        """},
        features="""
            r: registered
            al: alive
        """,
        expected="""
            patient | r     | al
            --------+-------+------
            ok      | true  | true
            left    | false | true
            died    | true  | false
            later   | false | true
        """)
