"""Funnel-plot limits: values by hand, narrowing with the denominator, classification."""
from __future__ import annotations

import math

import numpy as np
import pytest

from casefind.reports import funnel as fn


def test_z_values_are_the_two_sided_normal_quantiles():
    assert pytest.approx(1.96, abs=5e-5) == fn.Z95
    assert pytest.approx(3.09, abs=5e-4) == fn.Z998


def test_proportion_limits_by_hand():
    # p0 = 0.2, n = 100: sqrt(0.2 * 0.8 / 100) = 0.04
    lo, hi = fn.proportion_limits(0.2, [100], fn.Z95)
    assert lo[0] == pytest.approx(0.2 - fn.Z95 * 0.04)  # 0.12160
    assert hi[0] == pytest.approx(0.2 + fn.Z95 * 0.04)  # 0.27840
    lo, hi = fn.proportion_limits(0.2, [100], fn.Z998)
    assert (lo[0], hi[0]) == pytest.approx((0.2 - 3.090232 * 0.04, 0.2 + 3.090232 * 0.04), abs=1e-6)


def _phe_sigma_adjustment(p: float, n: float, p0: float, side: str) -> float:
    """PHE's published formula (inverted Wilson score), written out from the Technical Guide."""
    z = {0.975: fn.Z95, 0.999: fn.Z998}[p]
    first = p0 * (n / z**2 + 1)
    adj = math.sqrt((-8 * p0 * (n / z**2 + 1)) ** 2
                    - 64 * (1 / z**2 + 1 / n) * p0 * (n * (p0 * (n / z**2 + 2) - 1) + z**2 * (p0 - 1)))
    last = 1 / z**2 + 1 / n
    count = (first - adj / 8) / last if side == "low" else (first + adj / 8) / last
    return count / n


@pytest.mark.parametrize("p0", [0.05, 0.3, 0.72])
@pytest.mark.parametrize("n", [20, 137, 5000])
def test_proportion_limits_match_phe_inverted_wilson(p0, n):
    for p, z in ((0.975, fn.Z95), (0.999, fn.Z998)):
        lo, hi = fn.proportion_limits(p0, [n], z)
        assert lo[0] == pytest.approx(max(0.0, _phe_sigma_adjustment(p, n, p0, "low")), abs=1e-9)
        assert hi[0] == pytest.approx(min(1.0, _phe_sigma_adjustment(p, n, p0, "high")), abs=1e-9)


def test_proportion_limits_stay_within_zero_and_one():
    lo, hi = fn.proportion_limits(0.02, [10], fn.Z998)
    assert lo[0] == 0.0 and 0 < hi[0] <= 1


def _byar_lower(o: float, z: float) -> float:
    return o * (1 - 1 / (9 * o) - z / (3 * math.sqrt(o))) ** 3


def _byar_upper(o: float, z: float) -> float:
    return (o + 1) * (1 - 1 / (9 * (o + 1)) + z / (3 * math.sqrt(o + 1))) ** 3


def test_byar_bounds_for_100_events():
    # the exact 95% Poisson interval for 100 events is 81.4 to 121.6; Byar is within 0.1
    assert fn.byar_lower(100, fn.Z95) == pytest.approx(81.36, abs=0.01)
    assert fn.byar_upper(100, fn.Z95) == pytest.approx(121.63, abs=0.01)


def test_poisson_limits_invert_byar():
    n = 1000.0
    # if the expected count is Byar's lower bound for 100 events, the upper limit is 100 events
    lo, hi = fn.poisson_limits(_byar_lower(100, fn.Z95) / n, [n], fn.Z95)
    assert hi[0] * n == pytest.approx(100.0, rel=1e-9)
    # if it is Byar's upper bound for 100 events, the lower limit is 100 events
    lo, hi = fn.poisson_limits(_byar_upper(100, fn.Z998) / n, [n], fn.Z998)
    assert lo[0] * n == pytest.approx(100.0, rel=1e-9)


def test_poisson_limits_for_an_expected_count_of_ten():
    lo, hi = fn.poisson_limits(0.01, [1000], fn.Z95)  # E = 10
    # the exact Poisson(10) 2.5% and 97.5% points are 4 and 17 events
    assert 3.5 < lo[0] * 1000 < 4.5 and 16.5 < hi[0] * 1000 < 17.5
    assert _byar_upper(lo[0] * 1000, fn.Z95) == pytest.approx(10.0)
    assert _byar_lower(hi[0] * 1000, fn.Z95) == pytest.approx(10.0)


def test_small_expected_count_has_a_zero_lower_limit():
    # Byar's upper bound for 0 events is about 3.67: below that no count is 'low'
    lo, _ = fn.poisson_limits(3.0 / 1000, [1000], fn.Z95)
    assert lo[0] == 0.0
    lo, _ = fn.poisson_limits(4.0 / 1000, [1000], fn.Z95)
    assert lo[0] > 0.0


@pytest.mark.parametrize("kind, centre, multiplier", [("proportion", 35.0, 100), ("rate", 120.0, 1000)])
def test_limits_narrow_as_the_denominator_grows(kind, centre, multiplier):
    n = np.array([50, 100, 500, 2_000, 10_000, 100_000], dtype=float)
    f = fn.funnel(kind, centre, n, multiplier)
    for lower, upper in ((f.lower95, f.upper95), (f.lower998, f.upper998)):
        assert np.all(np.diff(upper) < 0) and np.all(np.diff(lower) >= 0)
        assert np.all(lower < centre) and np.all(upper > centre)
    assert np.all(f.upper998 > f.upper95) and np.all(f.lower998 <= f.lower95)
    assert f.upper95[-1] - f.lower95[-1] < 0.1 * (f.upper95[0] - f.lower95[0])


def test_funnel_scales_by_the_multiplier():
    f = fn.funnel("proportion", 20.0, [100], 100)
    assert f.lower95[0] == pytest.approx(100 * (0.2 - fn.Z95 * 0.04))
    assert f.upper95[0] == pytest.approx(100 * (0.2 + fn.Z95 * 0.04))


def test_funnel_refuses_other_kinds():
    with pytest.raises(ValueError):
        fn.funnel("mean", 1.0, [10])


def test_classify():
    # p0 = 20%, n = 100: 95% limits 12.16% to 27.84%; 99.8% limits 7.64% to 32.36%
    values = [20.0, 28.0, 33.0, 12.0, 7.0, 100 * (0.2 + fn.Z95 * 0.04), math.nan, 20.0]
    dens = [100, 100, 100, 100, 100, 100, 100, 0]
    got = fn.classify(values, dens, "proportion", 20.0, 100)
    assert got == [fn.WITHIN, fn.ABOVE_95, fn.ABOVE_998, fn.BELOW_95, fn.BELOW_998,
                   fn.WITHIN,  # exactly on the 95% limit: within
                   fn.NOT_ASSESSED, fn.NOT_ASSESSED]


def test_classify_depends_on_the_denominator():
    # the same rate is unremarkable in a small practice and an outlier in a large one
    got = fn.classify([150.0, 150.0], [500, 50_000], "rate", 120.0, 1000)
    assert got == [fn.WITHIN, fn.ABOVE_998]


# ---------------------------------------------------------------- overdispersion (Spiegelhalter 2005)

def test_overdispersion_factor_is_the_mean_squared_winsorised_z_score():
    # Spiegelhalter, "Funnel plots for comparing institutional performance" (Stat Med 2005),
    # section 3.2: phi = (1/I) sum z_i^2 over z-scores Winsorised at the 10th and 90th centiles.
    # p0 = 0.5, n = 100: sd 0.05, so a value 0.5 + k 0.05 has z = k.
    z = [-2, -1, -1, 0, 0, 0, 0, 1, 1, 2]
    values = [100 * (0.5 + k * 0.05) for k in z]
    # the 10th and 90th centiles of z are -1.1 and 1.1 (linear interpolation): -2, 2 -> -1.1, 1.1
    expected = (2 * 1.1 ** 2 + 4 * 1.0) / 10
    assert fn.overdispersion(values, [100] * 10, "proportion", 50.0, 100) == pytest.approx(expected)


def test_overdispersion_for_rates_uses_the_poisson_variance():
    # rate0 = 0.1 per person, n = 1000: sd of the rate sqrt(0.1 / 1000) = 0.01
    z = [-3, -1, 0, 1, 3, -1, 0, 1, 0, 0]
    values = [1000 * (0.1 + k * 0.01) for k in z]
    lo, hi = np.quantile(z, [0.1, 0.9])
    expected = float(np.mean(np.clip(z, lo, hi) ** 2))
    assert fn.overdispersion(values, [1000] * 10, "rate", 100.0, 1000) == pytest.approx(expected)


def test_overdispersion_needs_two_units():
    assert math.isnan(fn.overdispersion([20.0], [100], "proportion", 20.0, 100))
    assert math.isnan(fn.overdispersion([0.0, 0.0], [100, 100], "proportion", 0.0, 100))


@pytest.mark.parametrize("kind", ["proportion", "rate"])
def test_phi_widens_the_limits_by_its_square_root(kind):
    plain = fn.funnel(kind, 20.0, [400, 1600], 100)  # large enough that nothing is clipped at 0
    wide = fn.funnel(kind, 20.0, [400, 1600], 100, phi=4.0)
    assert wide.upper95 - 20.0 == pytest.approx(2 * (plain.upper95 - 20.0))
    assert 20.0 - wide.lower998 == pytest.approx(2 * (20.0 - plain.lower998))
    assert fn.funnel(kind, 20.0, [400], 100, phi=0.5).upper95 == pytest.approx(plain.upper95[:1])  # never narrowed


def test_widened_proportion_limits_stay_within_0_and_100():
    wide = fn.funnel("proportion", 95.0, [20], 100, phi=9.0)
    assert wide.upper998[0] == 100.0 and wide.lower998[0] >= 0.0


def test_classify_with_phi_brings_an_overdispersed_unit_back_inside():
    assert fn.classify([28.0], [100], "proportion", 20.0, 100) == [fn.ABOVE_95]
    assert fn.classify([28.0], [100], "proportion", 20.0, 100, phi=2.0) == [fn.WITHIN]
