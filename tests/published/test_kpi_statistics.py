"""KPI confidence intervals and age standardisation against published worked examples.

Where no published figure was found the example is worked by hand, with the formula and the
intermediate numbers written out in the test, and the test says so.
"""
import math
from statistics import NormalDist

import numpy as np
import pytest

from casefind.kpis import stats

Z196 = 2 * NormalDist().cdf(1.96) - 1  # the level whose z is exactly 1.96, as older sources use


@pytest.mark.parametrize("o, n, lower, upper", [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0000),
])
def test_wilson_newcombe_1998(o, n, lower, upper):
    """Newcombe RG (1998) "Two-sided confidence intervals for the single proportion: comparison
    of seven methods", Statistics in Medicine 17:857-872: the paper's table of illustrative 95%
    intervals, method 3 (Wilson score interval without continuity correction), to 4 decimals."""
    lo, hi = stats.wilson(o, n)
    assert lo == pytest.approx(lower, abs=6e-5)
    assert hi == pytest.approx(upper, abs=6e-5)


def test_wilson_vectorised_and_empty():
    """Many proportions at once, NaN where the denominator is 0; the interval always holds p."""
    o = np.array([[81, 0, 5], [15, 3, 0]])
    n = np.array([[263, 20, 0], [148, 3, 0]])
    lo, hi = stats.wilson(o, n)
    assert lo.shape == hi.shape == (2, 3)
    assert np.isnan(lo[0, 2]) and np.isnan(hi[1, 2])
    ok = n > 0
    p = np.divide(o, n, where=ok, out=np.zeros(o.shape))
    assert np.all((lo[ok] <= p[ok]) & (p[ok] <= hi[ok]))
    assert hi[1, 1] == 1.0 and lo[0, 1] == 0.0


def test_wilson_hand_worked_8_of_30():
    """Hand-worked with the OHID Fingertips guidance formula ("Proportions"):
    (2O + z² ± z√(z² + 4Oq)) / (2(n + z²)), O=8, n=30, q=22/30, z=1.959964:
    z² = 3.841459; √(3.841459 + 4·8·0.733333) = √27.308126 = 5.225718;
    lower = (19.841459 − 10.242215) / 67.682918 = 0.141827,
    upper = (19.841459 + 10.242215) / 67.682918 = 0.444480."""
    lo, hi = stats.wilson(8, 30)
    assert lo == pytest.approx(0.141827, abs=1e-6)
    assert hi == pytest.approx(0.444480, abs=1e-6)


def test_byar_published_and_hand_worked():
    """O = 100 at z = 1.96: 81.3618 to 121.6283, as in the documentation of the independent
    'byar' Ruby gem (Byar.new(100).upper_bound = 121.628347271806; lower(90) = 0.90401990673
    = 81.3617916/90). O = 20 at z = 1.959964 worked by hand from Byar's formula (Breslow & Day
    1987, as given in the Fingertips guidance "Rates"):
    lower = 20(1 − 1/180 − 1.959964/(3√20))³ = 20 · 0.8483574³ = 20 · 0.6105714 = 12.211429,
    upper = 21(1 − 1/189 + 1.959964/(3√21))³ = 21 · 1.1372754³ = 21 · 1.4709467 = 30.889880."""
    lo, hi = stats.byar(np.array([100.0]), Z196)
    assert lo[0] == pytest.approx(81.3617916, abs=1e-6)
    assert hi[0] == pytest.approx(121.628347271806, abs=1e-6)
    lo, hi = stats.byar(20)
    assert lo == pytest.approx(12.211429, abs=1e-5)
    assert hi == pytest.approx(30.889880, abs=1e-5)
    lo, hi = stats.byar(np.array([0.0, 0.0]))
    assert list(lo) == [0.0, 0.0]
    assert hi[0] == pytest.approx(1 * (1 - 1 / 9 + stats.z_value() / 3) ** 3)


@pytest.mark.parametrize("o, lower, upper", [
    (0, 0.0, 3.68887945),
    (1, 0.02531781, 5.57164339),
    (3, 0.61867212, 8.76727307),
    (5, 1.62348639, 11.66833208),
    (10, 4.79538870, 18.39035604),
])
def test_exact_poisson_limits(o, lower, upper):
    """95% exact Poisson limits χ²(0.025; 2O)/2 and χ²(0.975; 2O+2)/2, the Fingertips
    guidance "Rates" method for counts below 10. Published: the upper limit 3.689 for O = 0
    (epitools pois.conf.int documentation, T. Aragon). The others are the χ²/2 values found in
    tables of exact Poisson limits, to 8 decimals; O = 0 and 1 also check by hand: the upper
    limit for 0 is −ln 0.025 = 3.688879, the lower for 1 is −ln 0.975 = 0.025318, and the upper
    for 1 solves e^(−U)(1 + U) = 0.025."""
    lo, hi = stats.exact_poisson(o)
    assert lo == pytest.approx(lower, abs=1e-6)
    assert hi == pytest.approx(upper, abs=1e-6)
    if o < 10:  # the Fingertips rule uses these below 10
        t_lo, t_hi = stats.poisson_limits(np.array([float(o)]))
        assert (t_lo[0], t_hi[0]) == pytest.approx((lower, upper), abs=1e-6)
    if o == 1:
        assert math.exp(-float(hi)) * (1 + float(hi)) == pytest.approx(0.025, abs=1e-9)
        assert lo == pytest.approx(-math.log(0.975), abs=1e-9)


def test_byar_within_0_2_percent_of_exact_from_10():
    """PHE Technical Guide: Confidence Intervals (Public Health Data Science, version 25 May
    2018): at 95%, Byar's method is within 0.2% of the exact value for numerators of 10 or more —
    which is why the guidance switches from exact to Byar at 10."""
    o = np.arange(10, 400, dtype=float)
    b_lo, b_hi = stats.byar(o)
    e_lo, e_hi = stats.exact_poisson(o)
    assert np.max(np.abs(b_lo / e_lo - 1)) < 0.002
    assert np.max(np.abs(b_hi / e_hi - 1)) < 0.002
    lo, hi = stats.poisson_limits(o)
    assert np.array_equal(lo, b_lo) and np.array_equal(hi, b_hi)  # Byar from 10 up


def test_exact_poisson_other_level_and_fractional_counts():
    """99.8% (the other level Fingertips publishes): the lower limit for O = 1 is −ln 0.999 and
    the upper for O = 0 is −ln 0.001 (worked by hand). A fractional count below 10 falls between
    its integer neighbours."""
    lo, hi = stats.poisson_limits(np.array([0.0, 1.0]), 0.998)
    assert hi[0] == pytest.approx(-math.log(0.001), abs=1e-6)
    assert lo[1] == pytest.approx(-math.log(0.999), abs=1e-9)
    lo, hi = stats.poisson_limits(np.array([2.0, 2.5, 3.0]))
    assert lo[0] < lo[1] < lo[2] and hi[0] < hi[1] < hi[2]


def test_rate_ci_shapes_and_zero_denominators():
    """Crude rates: O/n × multiplier with the count's limits divided by n (Fingertips "Rates")."""
    count = np.array([[60, 3], [0, 7]])
    pop = np.array([[12_000, 1_000], [500, 0]])
    value, lo, hi = stats.rate_ci(count, pop, 1_000)
    assert value.shape == lo.shape == hi.shape == (2, 2)
    assert value[0, 0] == pytest.approx(5.0)
    b_lo, b_hi = stats.byar(60)
    assert lo[0, 0] == pytest.approx(b_lo / 12)
    assert hi[0, 0] == pytest.approx(b_hi / 12)
    assert lo[0, 1] == pytest.approx(0.61867212)  # exact for 3 events in 1,000 people
    assert lo[1, 0] == 0.0 and hi[1, 0] == pytest.approx(3.68887945 / 500 * 1_000)
    assert np.isnan(value[1, 1]) and np.isnan(lo[1, 1]) and np.isnan(hi[1, 1])


def test_z_value():
    assert stats.z_value() == pytest.approx(1.959964, abs=1e-6)
    assert stats.z_value(0.998) == pytest.approx(3.090232, abs=1e-6)
    with pytest.raises(ValueError, match="between 0 and 1"):
        stats.z_value(95)


# ---------------------------------------------------------------------------- standardisation

def test_esp2013_bands_and_weights():
    """Eurostat (2013) "Revision of the European Standard Population": 19 bands, 0-4 … 85-89
    and 90+, weights summing to 100,000 (5,000 for 0-4; 1,000 for 90+)."""
    esp = stats.european_standard_population()
    assert len(esp.weights) == len(esp.labels) == 19
    assert esp.weights.sum() == 100_000
    assert esp.labels[0] == "0-4" and esp.labels[-1] == "90+"
    assert esp.weights[0] == 5_000 and esp.weights[9] == 7_000 and esp.weights[-1] == 1_000
    assert esp.lower[17] == 85 and esp.upper[17] == 89 and esp.upper[-1] is None
    with pytest.raises(ValueError):
        esp.weights[0] = 1  # shared, so read-only


def test_age_band_edges():
    ages = np.array([0, 4, 5, 9, 10, 84, 85, 89, 90, 104, 120])
    assert stats.age_band(ages).tolist() == [0, 0, 1, 1, 2, 16, 17, 17, 18, 18, 18]
    assert stats.age_band(np.array([], np.int64)).tolist() == []
    with pytest.raises(ValueError):
        stats.age_band(np.array([-1, 3]))


def test_dsr_fay_feuer_downs_syndrome_value():
    """Fay MP, Feuer EJ (1997) Stat Med 16:791-801 (data: Fleiss 1981 Table 14.4, Down's
    syndrome by maternal age, Michigan 1950-64, birth order 5+, standard = all live births):
    DSR 75.52901 per 100,000, as printed in the dsrTest package vignette. Our Dobson interval
    must contain it."""
    cases = [0, 8, 63, 112, 262, 295]
    births = [327, 30666, 123419, 149919, 104088, 34392]
    standard = [319933, 931318, 786511, 488235, 237863, 61313]
    value, lo, hi = stats.dsr(cases, births, standard, 100_000)
    assert value == pytest.approx(75.52901, abs=1e-4)
    assert lo < value < hi


def test_dsr_hand_worked_dobson():
    """Hand-worked Dobson et al. (1991) example, three bands, as in the Fingertips guidance:
    O = (10, 20, 30), n = (1000, 2000, 1500), w = (3000, 5000, 2000), W = 10,000.
    DSR = (3000·0.01 + 5000·0.01 + 2000·0.02) / 10,000 = 0.012 → 1,200 per 100,000.
    var = (10·3² + 20·2.5² + 30·(4/3)²) / 10,000² = 268.3333e-8 = 2.683333e-6.
    O = 60; √(var/O) = 2.1147629e-4; Byar: O_L = 45.783760, O_U = 77.233224.
    lower = 0.012 + 2.1147629e-4 · (45.783760 − 60) = 0.0089936 → 899.3602;
    upper = 0.012 + 2.1147629e-4 · (77.233224 − 60) = 0.0156444 → 1,564.4418."""
    value, lo, hi = stats.dsr([10, 20, 30], [1000, 2000, 1500], [3000, 5000, 2000])
    assert value == pytest.approx(1200.0, abs=1e-9)
    assert lo == pytest.approx(899.3602, abs=1e-4)
    assert hi == pytest.approx(1564.4418, abs=1e-4)


def test_dsr_of_esp_shaped_population_is_the_crude_rate():
    """When the population's age structure is the standard's, the DSR is the crude rate and —
    Dobson's method being exact when the standard is proportional to the study population
    (Fay & Feuer 1997) — its interval is the crude rate's."""
    esp = stats.european_standard_population()
    pops = esp.weights * 3
    counts = np.round(pops * 0.01 * np.linspace(0.2, 3, 19))
    value, lo, hi = stats.dsr(counts, pops, esp.weights)
    c_value, c_lo, c_hi = stats.rate_ci(counts.sum(), pops.sum(), 100_000)
    assert value == pytest.approx(c_value, rel=1e-12)
    assert lo == pytest.approx(c_lo, rel=1e-12)
    assert hi == pytest.approx(c_hi, rel=1e-12)


def test_dsr_vectorised_over_leading_axes():
    """(units, periods, 19) in, (units, periods) out; each cell the same as alone."""
    rng = np.random.default_rng(7)
    esp = stats.european_standard_population()
    pops = rng.integers(50, 2_000, size=(4, 3, 19)).astype(float)
    counts = rng.binomial(pops.astype(int), 0.02).astype(float)
    value, lo, hi = stats.dsr(counts, pops, esp.weights)
    assert value.shape == lo.shape == hi.shape == (4, 3)
    one = stats.dsr(counts[2, 1], pops[2, 1], esp.weights)
    assert (value[2, 1], lo[2, 1], hi[2, 1]) == pytest.approx([float(x) for x in one], rel=1e-12)
    assert np.all(lo < value) and np.all(value < hi)


def test_dsr_small_counts_zero_populations_and_band_mismatch():
    """Fewer than 10 events: no DSR (OHID phe_dsr; Morris et al. 2018). A band with no
    population contributes 0. No events with min_count=0: DSR 0, lower 0, no upper."""
    esp = stats.european_standard_population()
    pops = np.full((3, 19), 1_000.0)
    counts = np.zeros((3, 19))
    counts[0, 10] = 9          # 9 events: hidden
    counts[1, 10] = 40         # 40 events, with band 0 empty of people
    pops[1, 0] = 0.0
    value, lo, hi = stats.dsr(counts, pops, esp.weights)
    assert np.isnan(value[0]) and np.isnan(lo[0]) and np.isnan(hi[0])
    assert value[1] == pytest.approx(40 / 1_000 * 7_000 / 100_000 * 100_000)
    assert np.isnan(value[2])
    value, lo, hi = stats.dsr(counts, pops, esp.weights, min_count=0)
    assert value[2] == 0.0 and lo[2] == 0.0 and np.isnan(hi[2])
    assert np.isfinite(value[0]) and lo[0] < value[0] < hi[0]
    value, _, _ = stats.dsr(np.zeros(19), np.zeros(19), esp.weights, min_count=0)
    assert np.isnan(value)  # no population at all
    with pytest.raises(ValueError, match="bands"):
        stats.dsr(np.ones((2, 18)), np.ones((2, 18)), esp.weights)
