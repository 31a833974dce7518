"""`active` (for registers, which have start and end dates) sees the entries that started on
or before the evaluation date D and did not end before it."""

title = "active"


def test_an_active_register_started_on_or_before_d_and_not_ended_before_it(spec_test):
    """An entry ending on D is still active; one ending the day before, or starting after, is not."""
    spec_test(
        tables={"registers": """
            patient | register        | start_date | end_date
            --------+-----------------+------------+-----------
            a       | case_management | 2026-01-01 |
            b       | case_management | 2026-01-01 | 2026-10-31
            c       | case_management | 2026-01-01 | 2026-10-30
            d       | case_management | 2026-11-01 |
        """},
        features='cm: exists(registers, register == "case_management", active)',
        expected="""
            patient | cm
            --------+------
            a       | true
            b       | true
            c       | false
            d       | false
        """)
