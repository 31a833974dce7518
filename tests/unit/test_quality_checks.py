"""The checks on plain rows: gaps (missing and low months against their neighbours, spans,
noisy and clustered feeds), completeness shares, code findings."""
from __future__ import annotations

import numpy as np
import pytest

from casefind.quality import checks
from casefind.quality.codes import Vocabulary
from casefind.quality.report import window

MONTHS = [f"2025-{m:02d}" for m in range(1, 13)]


def unit(values, months=MONTHS):
    return {"table": "activity", "kind": "provider", "code": "RXX", "label": "provider RXX",
            "months": dict(zip(months, values, strict=True))}


def found(values, table=None, last_share=1.0):
    u = unit(values)
    t = dict(zip(MONTHS, table or values, strict=True))
    return [(g["month"], g["gap"]) for g in checks.gaps(u, t, last_share)]


@pytest.mark.parametrize("values, expected", [
    ([100] * 12, []),
    ([100] * 5 + [0] + [100] * 6, [("2025-06", "missing")]),
    ([100] * 5 + [30] + [100] * 6, [("2025-06", "low")]),
    ([100] * 5 + [60] + [100] * 6, []),                      # under a half only is a gap
    ([100] * 4 + [0, 0] + [100] * 6, [("2025-05", "missing"), ("2025-06", "missing")]),
    ([0, 0, 0] + [100] * 9, []),                              # started later: nothing before its first month
    ([3, 0, 4, 2, 0, 3, 5, 0, 2, 3, 4, 1], []),               # too few rows to tell a gap from chance
    ([20, 5, 60, 0, 40, 8, 52, 30, 4, 44, 36, 12], []),      # a clustered, noisy feed
    ([100] * 11 + [20], [("2025-12", "low")]),
])
def test_gaps(values, expected):
    assert found(values) == expected


def test_a_provider_that_stops_before_the_table_ends_has_gaps_to_its_end():
    table = [300] * 12
    assert found([100] * 10 + [0, 0], table) == [("2025-11", "missing"), ("2025-12", "missing")]
    assert found([100] * 10 + [0, 0], [300] * 10 + [0, 0]) == []  # the table itself ends there


def test_the_last_month_is_compared_in_proportion_to_the_days_covered():
    assert found([100] * 11 + [40]) == [("2025-12", "low")]
    assert found([100] * 11 + [40], last_share=0.4) == []


def test_gap_rows_say_what_was_expected():
    [g] = checks.gaps(unit([100] * 5 + [0] + [100] * 6), dict.fromkeys(MONTHS, 300))
    assert g == {"table": "activity", "kind": "provider", "code": "RXX", "label": "provider RXX",
                 "month": "2025-06", "rows": 0, "expected": 100.0, "gap": "missing"}


def test_clean_poisson_feeds_have_almost_no_gaps():
    r = np.random.default_rng(5)
    flagged = sum(len(found(list(r.poisson(lam, 12)))) for lam in (8, 20, 50, 200) for _ in range(250))
    assert flagged <= 2  # of 1,000 feeds x 11 months


@pytest.mark.parametrize("rows, expected, phi, gap", [
    (0, 20, 1, True), (0, 10, 1, False), (40, 100, 1, True), (40, 100, 16, False), (60, 100, 1, False),
    (0, 0, 1, False),
])
def test_is_gap(rows, expected, phi, gap):
    assert checks.is_gap(rows, expected, phi) is gap


def test_dispersion_is_one_for_poisson_and_larger_for_clusters():
    r = np.random.default_rng(1)
    lam = 50.0
    poisson = [(int(x), lam) for x in r.poisson(lam, 200)]
    clustered = [(int(4 * x), lam) for x in r.poisson(lam / 4, 200)]
    assert checks.dispersion(poisson) == pytest.approx(1.0, abs=0.5)
    assert checks.dispersion(clustered) > 2.5


def test_window_ends_with_the_month_of_the_data_end():
    import datetime as dt

    months, share = window(dt.date(2026, 2, 14), 3)
    assert months == ["2025-12", "2026-01", "2026-02"] and share == pytest.approx(0.5)
    assert window(None, 3) == ([], 1.0)


def test_code_findings_count_unknown_and_malformed_rows_and_rank_them():
    vocab = Vocabulary()
    vocab.add("icd10", "I50.9")
    vocab.add("icd10", "J4*")
    rows = [{"system": "icd10", "code": "I509", "rows": 10}, {"system": "icd10", "code": "J441", "rows": 5},
            {"system": "icd10", "code": "Z999", "rows": 3}, {"system": "icd10", "code": "99X", "rows": 2},
            {"system": "snomed", "code": "38341004", "rows": 1}]
    f = checks.code_findings(rows, vocab, top=2)
    assert (f["coded_rows"], f["unknown_rows"], f["malformed_rows"], f["distinct_unknown"]) == (21, 6, 3, 3)
    assert f["unknown_share"] == pytest.approx(6 / 21)
    assert f["top_unknown"] == [{"system": "icd10", "code": "Z999", "rows": 3, "malformed": False},
                                {"system": "icd10", "code": "99X", "rows": 2, "malformed": True}]
    empty = checks.code_findings([], vocab, top=2)
    assert empty["unknown_share"] is None and empty["top_unknown"] == []
