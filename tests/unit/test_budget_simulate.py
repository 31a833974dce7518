"""casefind budget simulate: the Year of Care handbook's simulation table, the cohort bands
and their ties, the scenario arithmetic, and the scenario file's located errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from casefind.budgets.scenario import Band, Changes, load_scenario
from casefind.budgets.simulate import OUTSIDE, Assumptions, Baseline, band_edges, cohort_of, simulate, totals
from casefind.errors import UsageError
from casefind.rules.errors import RuleError

HANDBOOK_BANDS = tuple(Band(label, lo, hi) for label, lo, hi in (
    ("0-0.5%", 0.0, 0.005), ("0.5-2%", 0.005, 0.02), ("2-5%", 0.02, 0.05), ("5-10%", 0.05, 0.10)))


def _spread(n: int, mean: float, step: float) -> np.ndarray:
    """n values averaging exactly ``mean``: +step, -step alternately (the last 0 when n is odd)."""
    offsets = np.where(np.arange(n) % 2 == 0, step, -step)
    if n % 2:
        offsets[-1] = 0.0
    return mean + offsets


def test_the_handbook_simulation_table():
    """The Long Term Conditions Year of Care Commissioning handbook's simulation table (four
    cohorts by population percentile, mean annual cost baseline -> scenario):
    "0-0.5%: 2,854 people, £10,179 -> £9,854; 0.5-2%: 9,203, £7,454 -> £7,341;
    2-5%: 19,930, £4,537 -> £4,555; 5-10%: 33,941, £3,085 -> £3,136."
    The handbook gives the cohorts, patients and means only; how each scenario mean arises
    (here 10% fewer emergency admissions and a new service's cost) is this test's own split."""
    # (patients, baseline mean, emergency admission cost a person, new service £ a person) -> scenario mean
    cohorts = [(2854, 10179, 4450, 120, 9854), (9203, 7454, 2100, 97, 7341),
               (19930, 4537, 800, 98, 4555), (33941, 3085, 270, 78, 3136)]
    label = np.concatenate([np.full(n, i) for i, (n, *_) in enumerate(cohorts)])
    cost = np.concatenate([_spread(n, mean, 500.0) for n, mean, *_ in cohorts])
    emergency = np.concatenate([_spread(n, e, 100.0) for n, _, e, *_ in cohorts])
    base = Baseline(cost, {"emergency_admission": emergency})
    changes = tuple(Changes((("emergency_admission", -0.10),), new_service=float(s)) for *_, s, _ in cohorts)
    table = simulate(label, base, Assumptions(HANDBOOK_BANDS, changes))
    rows = table.to_pylist()
    assert [r["cohort"] for r in rows] == ["0-0.5%", "0.5-2%", "2-5%", "5-10%"]
    assert [r["patients"] for r in rows] == [2854, 9203, 19930, 33941]
    assert [r["baseline_mean"] for r in rows] == [10179, 7454, 4537, 3085]
    assert [r["scenario_mean"] for r in rows] == [9854, 7341, 4555, 3136]
    assert [round(r["difference"], 9) for r in rows] == [-325, -113, 18, 51]
    assert [r["baseline_total"] for r in rows] == [n * m for n, m, *_ in cohorts]
    (total,) = totals(table)
    assert total["patients"] == 65_928
    assert total["baseline_total"] == 292_780_423
    assert total["scenario_total"] == 292_902_665
    assert round(total["scenario_total"] - total["baseline_total"], 2) == 122_242


@pytest.mark.parametrize("n,sizes", [
    (1000, [5, 15, 30, 50]),
    (201, [1, 3, 6, 10]),       # 1.005, 4.02, 10.05, 20.1 people: edges 1, 4, 10, 20
    (300, [2, 4, 9, 15]),       # 1.5 rounds up to 2 (half away from zero), edges 2, 6, 15, 30
    (100, [1, 1, 3, 5]),        # 0.5 -> 1; 2 - 1; 5 - 2; 10 - 5
    (1, [0, 0, 0, 0]),          # 0.005 of a person is no one
    (0, [0, 0, 0, 0]),
])
def test_band_sizes_are_differences_of_rounded_edges(n, sizes):
    edges = band_edges(n, HANDBOOK_BANDS)
    assert [b - a for a, b in edges] == sizes
    assert edges[0] == (0, sizes[0])
    assert all(edges[i][1] == edges[i + 1][0] for i in range(3))  # bands that meet share no one


def test_ties_are_broken_by_patient_id_and_missing_values_rank_last():
    # 10 people, bands of the top 10%, 20% and 30%-60%: values tie at the edges
    bands = (Band("0-10%", 0, 0.1), Band("10-30%", 0.1, 0.3), Band("30-60%", 0.3, 0.6))
    rank = np.array([5, 9, 9, np.nan, 7, 7, 7, 1, np.nan, 9])
    keys = np.array(["p05", "p03", "p01", "p00", "p09", "p07", "p08", "p02", "p04", "p02b"])
    everyone = np.ones(10, bool)
    got = cohort_of(rank, keys, everyone, bands)
    # order: 9 (p01, p02b, p03), 7 (p07, p08, p09), 5 (p05), 1 (p02), missing (p00, p04);
    # bands of 1, 2 and 3 people: p01 | p02b, p03 | p07, p08, p09 (ties split by id)
    assert got.tolist() == [OUTSIDE, 1, 0, OUTSIDE, 2, 2, 2, OUTSIDE, OUTSIDE, 1]
    # the same people in another order get the same bands
    perm = np.random.default_rng(1).permutation(10)
    assert cohort_of(rank[perm], keys[perm], everyone, bands).tolist() == got[perm].tolist()
    # only the population is ranked: without the top three, 7 people (bands of 1, 1 and 2)
    outside = np.isin(keys, ["p01", "p02b", "p03"])
    got = cohort_of(rank, keys, ~outside, bands)
    assert [keys[got == i].tolist() for i in range(3)] == [["p07"], ["p08"], ["p05", "p09"]]
    # missing values come last, even below a negative one
    got = cohort_of(np.array([np.nan, -3.0]), np.array(["a", "b"]), np.ones(2, bool), (Band("0-50%", 0, 0.5),))
    assert got.tolist() == [OUTSIDE, 0]


def test_values_that_differ_only_in_their_last_bits_tie():
    """0.1 + 0.2 and 0.3 differ in the last bit: summed in another order they are the same cost."""
    rank = np.array([0.1 + 0.2, 0.3, 0.3 + 1e-6])
    assert rank[0] != rank[1]
    bands = (Band("0-34%", 0, 0.34), Band("34-67%", 0.34, 0.67))  # one person each
    got = cohort_of(rank, np.array(["b", "a", "c"]), np.ones(3, bool), bands)
    assert got.tolist() == [OUTSIDE, 1, 0]  # c is higher; a and b tie, and a comes first


def test_bed_days_growth_and_phasing():
    """One person: £10,000, of which £6,000 emergency admissions with 10 bed days (£3,500 at
    £350) and £1,000 elective with 2 bed days (£700). Emergency -20%, bed days -10%, a £100
    new service, growth 10%, phasing 50% then 100%."""
    base = Baseline(np.array([10_000.0]), {"emergency_admission": np.array([6000.0]),
                                           "elective_admission": np.array([1000.0])},
                    {"emergency_admission": np.array([10.0]), "elective_admission": np.array([2.0])})
    changes = Changes((("emergency_admission", -0.2),), bed_days=-0.1, new_service=100.0)
    a = Assumptions((Band("0-100%", 0, 1),), (changes,), years=2, growth=0.1, phasing=(0.5, 1.0),
                    excess_bed_day_cost=350.0)
    rows = simulate(np.array([0]), base, a).to_pylist()
    # year 1 (half in effect, baseline prices): 10000 - 0.1*6000 - 0.05*0.9*3500 - 0.05*700 + 100
    assert rows[0]["baseline_total"] == 10_000
    assert rows[0]["scenario_total"] == round(10_000 - 600 - 157.5 - 35 + 100, 2)
    # year 2 (in full, grown 10%): (10000 - 1200 - 0.1*0.8*3500 - 70 + 100) * 1.1
    assert rows[1]["baseline_total"] == 11_000
    assert rows[1]["scenario_total"] == round((10_000 - 1200 - 280 - 70 + 100) * 1.1, 2)
    # a bed-day cost never exceeds its admissions' cost: 10 bed days at £350 of a £1,000 spell
    capped = Baseline(np.array([1000.0]), {"emergency_admission": np.array([1000.0])},
                      {"emergency_admission": np.array([10.0])})
    rows = simulate(np.array([0]), capped, Assumptions((Band("0-100%", 0, 1),), (Changes(bed_days=-0.5),)))
    assert rows.to_pylist()[0]["scenario_total"] == 500


def test_an_empty_cohort_has_no_means():
    a = Assumptions(HANDBOOK_BANDS[:1], (Changes(),))
    (row,) = simulate(np.array([OUTSIDE]), Baseline(np.array([5.0])), a).to_pylist()
    assert row["patients"] == 0 and row["baseline_mean"] is None and row["difference"] is None


GOOD = """scenario: s
rank_by: sum(activity.cost, within=months(12))
cohorts: ["0-0.5%", "0.5-2%"]
years: 2
growth: 3%
phasing: [50%, 100%]
changes:
  all: {emergency_admissions: -10%}
  "0.5-2%": {emergency_admissions: -5%, bed_days: -5%, new_service: {cost_per_person: 40}}
"""


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yml"
    path.write_text(text)
    return path


def test_a_scenario_file_reads_as_written(tmp_path):
    s = load_scenario(_file(tmp_path, GOOD))
    assert [(b.label, b.low, b.high) for b in s.bands] == [("0-0.5%", 0.0, 0.005), ("0.5-2%", 0.005, 0.02)]
    assert s.changes == (Changes((("emergency_admission", -0.1),)),
                         Changes((("emergency_admission", -0.05),), bed_days=-0.05, new_service=40.0))
    assert (s.years, s.growth, s.phasing, s.excess_bed_day_cost) == (2, 0.03, (0.5, 1.0), 350.0)
    assert set(s.expressions()) == {"in_population", "rank", "cost", "cost_emergency_admission",
                                    "cost_elective_admission", "bed_days_emergency_admission",
                                    "bed_days_elective_admission"}
    assert load_scenario(_file(tmp_path, GOOD), years=1).years == 1
    with pytest.raises(UsageError, match="--years 4: simulate 1 to 3 years"):
        load_scenario(_file(tmp_path, GOOD), years=4)
    featured = GOOD.replace("rank_by: sum(activity.cost, within=months(12))",
                            "features:\n  cost_12m: sum(activity.cost, within=months(12))\nrank_by: cost_12m * 2")
    assert load_scenario(_file(tmp_path, featured)).texts["rank_by"] == "cost_12m * 2"
    default = load_scenario(_file(tmp_path, "scenario: d\nrank_by: age\nchanges: {}\n"))
    assert [b.label for b in default.bands] == ["0-0.5%", "0.5-2%", "2-5%", "5-10%"]
    assert default.changes == (Changes(),) * 4 and default.phasing == (1.0,)


@pytest.mark.parametrize("old,new,line,col,message", [
    ("growth: 3%", "growth: 3", 5, 9, "growth must be a percentage, such as -10%"),
    ("emergency_admissions: -10%}", "emergency_admisions: -10%}", 8, 9,
     "unknown key 'emergency_admisions' in the changes for all"),
    ('"0.5-2%": {', '"0.5-3%": {', 9, 3, "changes for '0.5-3%', which is not one of the cohorts"),
    ('["0-0.5%", "0.5-2%"]', '["0-2%", "0.5-2%"]', 3, 19, "cohort 0.5-2% overlaps or comes before 0-2%"),
    ('["0-0.5%", "0.5-2%"]', '["0-0.5%", "top 2%"]', 3, 21, "'top 2%' is not a percentile band"),
    ("rank_by: sum(activity.cost, within=months(12))", "rank_by: sex", 2, 10,
     "rank_by must be a number per patient, not a text"),
    ("years: 2", "years: 4", 4, 8, "years must be a whole number from 1 to 3"),
    ("phasing: [50%, 100%]", "phasing: [50%]", 6, 10, "phasing must list a share for each of the 2 year(s)"),
    ("phasing: [50%, 100%]", "phasing: [50%, 120%]", 6, 16, "a year's phasing 120% is out of range: it must be "
     "between 0% and 100%"),
    ("bed_days: -5%", "bed_days: -105%", 9, 51, "bed_days -105% is out of range: it must be between -100%"),
    ("{cost_per_person: 40}", "{price: 40}", 9, 69, "new_service needs its cost_per_person"),
    ("{cost_per_person: 40}", "{cost_per_person: -40}", 9, 87, "cost_per_person must be an amount in pounds, "
     "zero or more"),
    ("all: {emergency_admissions: -10%}", "all: -10%", 8, 8, "the changes for all must be a mapping"),
    ("scenario: s", "scenario: S!", 1, 11, "the scenario name 'S!' must be lower-case letters"),
    ("years: 2", "year: 2", 4, 1, "unknown key 'year' in the scenario file"),
    ("rank_by: sum(activity.cost, within=months(12))", "rank_by: activity.cost", 2, 10,
     "rank_by must be one value per patient"),
    ('cohorts: ["0-0.5%", "0.5-2%"]', 'cohorts: "0-0.5%"', 3, 10, "cohorts must be a list of percentile bands"),
    ("all: {", "everyone: {", 8, 3, "changes for 'everyone', which is not one of the cohorts"),
    ("years: 2", "years: 2\nas_of: 31/10/2026", 5, 8, "as_of '31/10/2026' is not a date"),
])
def test_a_mistake_in_a_scenario_file_is_located(tmp_path, old, new, line, col, message):
    assert old in GOOD
    path = _file(tmp_path, GOOD.replace(old, new))
    with pytest.raises(RuleError) as e:
        load_scenario(path)
    assert e.value.message.startswith(message), e.value.message
    assert (e.value.span.file, e.value.span.line, e.value.span.col) == (str(path), line, col)
    assert str(e.value).startswith(f"{path}:{line}:{col}")


@pytest.mark.parametrize("text,message", [
    ("rank_by: age\nchanges: {}\n", "the scenario file has no name"),
    ("scenario: x\nchanges: {}\n", "the scenario file has no rank_by:"),
    ("scenario: x\nrank_by: age\n", "the scenario file has no changes:"),
    ("scenario: x\nrank_by:\nchanges: {}\n", "the scenario file has no rank_by:"),
])
def test_a_scenario_file_without_its_keys_is_refused(tmp_path, text, message):
    with pytest.raises(RuleError, match=message):
        load_scenario(_file(tmp_path, text))
