"""The risk pyramid's arithmetic and its tie rule, on constructed populations with known
answers (casefind.pyramid: bands.py, compute.py)."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from casefind.errors import UsageError
from casefind.pyramid.bands import OUTSIDE, assign, edge_ties, parse_bands
from casefind.pyramid.compute import ALL, Dates, Units, band_rows, unit_table
from casefind.pyramid.options import DEFAULT_BANDS
from casefind.pyramid.report import chart

BANDS = parse_bands(DEFAULT_BANDS)


def one_unit(n: int) -> Units:
    """n people in one practice, one locality, one system."""
    zero = np.zeros(n, np.int64)
    return Units({"practice": zero, "locality": zero, "system": zero}, {lv: ["U1"] for lv in ("practice", "locality",
                 "system")}, {lv: ["Unit"] for lv in ("practice", "locality", "system")},
                 {"practice": ["U1"], "locality": ["U1"], "system": [None]})


def published_population():
    """200,000 people whose pyramid is the sources' (Roland, BMJ 2012, after Wennberg), to the
    figures' own rounding. Band sizes are 0.5%, 4.5%, 15%, 80%: 1,000, 9,000, 30,000 and
    160,000 people. 12,600 emergency admissions in all: 63 per 1,000. Each band's admissions
    are its share of the 12,600: 9.3% is 1,172 (9.30%); 24.8% is 3,121 (24.77%, as 4.5% x 5.5
    = 24.75% rounds); 25.5% is 3,213; and 40% the rest, 5,094 (40.4%: the sources' shares add
    to 99.6%, so the last absorbs their rounding). Scores fall band by band, with ties."""
    sizes, admissions = [1_000, 9_000, 30_000, 160_000], [1_172, 3_121, 3_213, 5_094]
    rng = np.random.default_rng(3)
    score = np.concatenate([np.full(s, 1.0 - 0.2 * i) - rng.integers(0, 50, s) * 1e-4 for i, s in enumerate(sizes)])
    adm = np.concatenate([np.bincount(rng.integers(0, s, a), minlength=s) for s, a in zip(sizes, admissions)])
    order = rng.permutation(len(score))  # people in no particular order, as a store holds them
    keys = np.array([f"P{i:07d}" for i in range(len(score))])
    return score[order], adm[order].astype(float), keys, np.full(len(score), 100.0)


def test_the_sources_pyramid_is_reproduced_exactly():
    """The sources' table: "Population average: 63 emergency admissions per 1,000 people a year";
    top 0-0.5% "18.6" times the average, "9.3%" of all admissions; 0.5-5% "5.5", "24.8%"; 5-20%
    "1.7", "25.5%"; 20-100% "0.5", "40%". "To cut all emergency admissions by 10% by working only
    on the top 0.5%, 107.5% of that band's admissions would have to be avoided (10 / 9.3);
    working on the 4.5% 'high' band, 40% (10 / 24.8)." Arithmetic: share = people share x relative
    rate (0.5% x 18.6 = 9.3%, 4.5% x 5.5 = 24.75%, 15% x 1.7 = 25.5%, 80% x 0.5 = 40%); to avoid =
    cut / share (10 / 9.3 = 107.5%: more than all of them, so flagged not achievable; 10 / 24.8 = 40.3%)."""
    score, adm, keys, cost = published_population()
    band = assign(score, keys, BANDS)
    table = unit_table(one_unit(len(score)), band, adm, cost, BANDS, cut=0.10)
    rows = {r["band"]: r for r in table.to_pylist() if r["level"] == "system"}
    assert [rows[b.label]["people"] for b in BANDS] == [1_000, 9_000, 30_000, 160_000]
    assert round(rows[ALL]["admissions_per_1000"]) == 63
    assert [round(rows[b.label]["relative_rate"], 1) for b in BANDS] == [18.6, 5.5, 1.7, 0.5]
    assert [round(rows[b.label]["admissions_share"] * 100, 1) for b in BANDS[:3]] == [9.3, 24.8, 25.5]
    assert round(rows["20-100%"]["admissions_share"] * 100) == 40
    top, high = rows["0-0.5%"], rows["0.5-5%"]
    assert round(top["avoid_share"] * 100, 1) == 107.5 and top["achievable"] is False
    assert round(high["avoid_share"] * 100) == 40 and high["achievable"] is True
    assert rows[ALL]["to_avoid"] == pytest.approx(1_260)  # 10% of 12,600
    assert [rows[b.label]["cost_share"] for b in BANDS] == pytest.approx([0.005, 0.045, 0.15, 0.8])
    assert sum(r["admissions"] for r in rows.values() if r["band"] != ALL) == rows[ALL]["admissions"] == 12_600


@pytest.mark.parametrize("n, expected", [
    (200, [1, 9, 30, 160]),        # 0.5% of 200 is 1
    (1_946, [10, 87, 292, 1_557]),  # round(9.73) = 10; round(97.3) = 97 -> 87; round(389.2) = 389 -> 292
    (10, [0, 1, 1, 8]),             # edges round(0.05) = 0, round(0.5) = 1 (floor(x + 1/2)), round(2) = 2
    (100, [1, 4, 15, 80]),          # round(0.5) = 1 (half up, exact arithmetic)
])
def test_each_band_has_exactly_round_n_times_its_share(n, expected):
    score = np.zeros(n)  # everyone tied: the patient id decides
    band = assign(score, np.array([f"id{i:05d}" for i in range(n)]), BANDS)
    assert np.bincount(band, minlength=4).tolist() == expected
    assert (band[:expected[0]] == 0).all()  # the lowest ids take the top band when all tie


def test_ties_at_an_edge_go_by_patient_id_and_are_reported():
    """20,000 people: the top 0.5% is exactly 100. Ranks 95 to 108 share one score (14 people):
    5 stay above the edge, 9 go below, by patient id. top(score, 0.5%) would take everyone
    tied, 109 people: the 0.545% the issue names ("today top(risk, 0.5%) takes 0.545% because
    ties go in")."""
    n = 20_000
    score = np.linspace(2.0, 1.0, n)
    score[95:109] = score[95]
    keys = np.array([f"k{(7919 * i) % n:06d}" for i in range(n)])  # ids not in score order
    band = assign(score, keys, BANDS)
    tied = np.arange(95, 109)
    kept = tied[np.argsort(keys[tied])][:5]
    assert sorted(np.flatnonzero(band == 0)) == sorted([*range(95), *kept])
    edge = edge_ties(score, keys, BANDS)[0]
    assert (edge.edge, edge.rank, edge.score, edge.tied_above, edge.tied_below) == ("0.5%", 100, score[95], 5, 9)
    assert edge.straddles and edge.top_takes == 109 and edge.top_takes / n == 0.00545
    others = edge_ties(score, keys, BANDS)[1:]
    assert [(e.edge, e.rank, e.tied_above, e.tied_below, e.straddles) for e in others] == [
        ("5%", 1_000, 0, 0, False), ("20%", 4_000, 0, 0, False)]
    assert [e.top_takes for e in others] == [1_000, 4_000]


def test_sums_an_engine_adds_in_another_order_still_tie():
    a, b = 0.1 + 0.2 + 0.3, 0.3 + 0.2 + 0.1  # 0.6000000000000001 and 0.6
    assert a != b
    band = assign(np.array([a, b, 0.0, 0.0]), np.array(["b", "a", "c", "d"]), parse_bands("0-25,25-100"))
    assert band.tolist() == [1, 0, 1, 1]  # tied at 32 significant bits: id "a" (the second) first


def test_people_without_a_score_are_in_no_band():
    score = np.array([np.nan, 3.0, 2.0, np.nan, 1.0])
    band = assign(score, np.array(list("abcde")), parse_bands("0-50,50-100"))
    assert band.tolist() == [OUTSIDE, 0, 0, OUTSIDE, 1]  # 3 ranked: round(1.5) = 2 in the top half


def test_edges_of_an_empty_band():
    score = np.array([3.0, 2.0, 1.0])
    edges = edge_ties(score, np.array(list("abc")), BANDS)
    assert [(e.rank, e.score, e.straddles, e.top_takes) for e in edges] == [
        (0, None, False, 1), (0, None, False, 1), (1, 3.0, False, 1)]
    assert [e.top_takes for e in edge_ties(np.array([]), np.array([], str), BANDS)] == [0, 0, 0]


@pytest.mark.parametrize("text, bands", [
    ("0-0.5,0.5-5,5-20,20-100", [("0-0.5%", 0.0, 0.005), ("0.5-5%", 0.005, 0.05), ("5-20%", 0.05, 0.2),
                                  ("20-100%", 0.2, 1.0)]),
    ("0-2%, 2%-100%", [("0-2%", 0.0, 0.02), ("2-100%", 0.02, 1.0)]),
    ("0\u20131,1\u2013100", [("0-1%", 0.0, 0.01), ("1-100%", 0.01, 1.0)]),
])
def test_bands_are_read_in_percent(text, bands):
    assert [(b.label, b.low, b.high) for b in parse_bands(text)] == bands


@pytest.mark.parametrize("text, message", [
    ("0-0.5,top", "'top' is not a band"),
    ("0-5,6-100", "bands must follow on"),
    ("0.5-5,5-100", "bands must follow on"),
    ("0-5,5-5,5-100", "bands must follow on"),
    ("0-50,50-120", "bands must follow on"),
    ("0-5,5-50", "end at 50%, not 100%"),
])
def test_bands_that_do_not_cover_the_population_are_refused(text, message):
    with pytest.raises(UsageError, match=message) as e:
        parse_bands(text)
    assert e.value.option == "--bands"


def test_a_band_without_admissions_has_no_shares_to_avoid():
    rows = band_rows(parse_bands("0-50,50-100"), np.array([2, 2]), np.array([0.0, 0.0]), np.array([0.0, 10.0]), 0.1)
    top, _, total = rows
    assert (top["admissions_share"], top["avoid_share"], top["achievable"], top["relative_rate"]) == (None,) * 4
    assert (total["admissions_per_1000"], total["cost_share"], top["cost_share"]) == (0.0, 1.0, 0.0)
    empty = band_rows(parse_bands("0-50,50-100"), np.array([0, 0]), np.zeros(2), np.zeros(2), 0.1)
    assert [(r["people_share"], r["admissions_per_1000"], r["cost_per_head"]) for r in empty] == [(None,) * 3] * 3


def test_units_sum_up_and_empty_units_are_left_out():
    band = np.array([0, 1, 1, 1])
    units = Units({"practice": np.array([0, 0, 2, 2]), "locality": np.array([0, 0, 0, 0]),
                   "system": np.array([0, 0, 0, 0])},
                  {"practice": ["A", "B", "C"], "locality": ["L"], "system": ["S"]},
                  {"practice": ["a", "b", "c"], "locality": ["l"], "system": ["s"]},
                  {"practice": ["L", "L", "L"], "locality": ["S"], "system": [None]})
    rows = unit_table(units, band, np.array([3.0, 1.0, 0.0, 2.0]), np.array([10.0, 0.0, 5.0, 5.0]),
                      parse_bands("0-25,25-100"), 0.2).to_pylist()
    assert [(r["level"], r["unit_code"], r["band"], r["people"], r["admissions"]) for r in rows] == [
        ("practice", "A", "0-25%", 1, 3), ("practice", "A", "25-100%", 1, 1), ("practice", "A", "all", 2, 4),
        ("practice", "C", "0-25%", 0, 0), ("practice", "C", "25-100%", 2, 2), ("practice", "C", "all", 2, 2),
        ("locality", "L", "0-25%", 1, 3), ("locality", "L", "25-100%", 3, 3), ("locality", "L", "all", 4, 6),
        ("system", "S", "0-25%", 1, 3), ("system", "S", "25-100%", 3, 3), ("system", "S", "all", 4, 6)]
    assert rows[0]["relative_rate"] == pytest.approx(3000 / 2000)  # 3,000 per 1,000 against the practice's 2,000
    assert rows[6]["avoid_share"] == pytest.approx(0.2 / 0.5)


@pytest.mark.parametrize("outcome, score, first, last", [
    ("next", "2025-10-31", "2025-10-31", "2026-10-31"),
    ("concurrent", "2026-10-31", "2025-10-31", "2026-10-31"),
])
def test_the_outcome_year(outcome, score, first, last):
    d = Dates.of(dt.date(2026, 10, 31), outcome)
    assert (d.score.isoformat(), d.outcome_from.isoformat(), d.outcome_to.isoformat()) == (score, first, last)


def test_an_unknown_outcome_is_refused():
    with pytest.raises(UsageError, match="no outcome 'later'"):
        Dates.of(dt.date(2026, 10, 31), "later")


def test_the_chart_puts_the_top_band_on_top_with_both_shares():
    score, adm, keys, cost = published_population()
    rows = [r for r in unit_table(one_unit(len(score)), assign(score, keys, BANDS), adm, cost, BANDS, 0.1).to_pylist()
            if r["level"] == "system"]
    c = chart(rows)
    assert [b["band"] for b in c["bars"]] == [b.label for b in BANDS]
    assert [b["y"] for b in c["bars"]] == sorted(b["y"] for b in c["bars"])
    half = c["centre"] - c["left"]
    assert [round(b["people_w"] / half, 3) for b in c["bars"]] == [0.005, 0.045, 0.15, 0.8]
    assert c["bars"][0]["admissions"] == "9.3%" and c["bars"][0]["rate"] == "18.6×"


@pytest.mark.parametrize("fraction, takes", [(0.0, 0), (0.25, 2), (0.5, 2), (0.51, 3), (0.75, 3), (0.76, 4), (1.0, 4)])
def test_top_takes_as_the_engines_do(fraction, takes):
    """top(x, p): fewer than p x N members have a larger value; 4 values, the top two tied."""
    from casefind.pyramid.bands import _top_takes

    assert _top_takes(np.array([5.0, 5.0, 3.0, 1.0]), fraction) == takes
