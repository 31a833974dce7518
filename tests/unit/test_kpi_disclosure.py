"""Disclosure control of KPI results: suppression, rounding, levels, and the policy's config."""
import numpy as np
import pyarrow as pa
import pytest

from casefind.kpis import stats
from casefind.kpis.disclosure import EXACT_COLUMNS, LEVELS, RULE, DisclosurePolicy, apply, apply_table

NAN = np.nan


def run(num, den, level="practice", policy=None, **kw):
    num, den = np.asarray(num, float), np.asarray(den, float)
    value = num / np.where(den > 0, den, np.nan)
    return apply(num, den, value, value * 0.9, value * 1.1, level, policy or DisclosurePolicy(), **kw)


def test_defaults_follow_hes():
    """NHS Digital HES/ECDS method: "counts below national level" of 1-7 suppressed, the rest
    rounded to the nearest 5; every casefind level (the system too) is below national level."""
    p = DisclosurePolicy()
    assert (p.suppress_below, p.round_to, p.suppress_zero, p.derive_from_rounded) == (8, 5, False, True)
    assert p.apply_to_levels == LEVELS == ("practice", "locality", "system", "provider", "service")
    assert p.weaker_than_default() == []
    assert "1-7" in RULE and "nearest 5" in RULE


def test_small_counts_suppressed_and_flagged():
    out = run([1, 7, 8, 3, 40], [100, 100, 100, 5, 100])
    assert out["suppressed"].tolist() == [True, True, False, True, False]
    for name in ("numerator", "denominator", "value", "lower", "upper"):
        assert np.isnan(out[name][[0, 1, 3]]).all(), name
    assert out["numerator"][2] == 10 and out["denominator"][2] == 100  # 8 rounds to 10
    assert out["numerator"][4] == 40


def test_zero_is_published_unless_asked():
    out = run([0, 0], [50, 0])
    assert out["suppressed"].tolist() == [False, False]
    assert out["numerator"][0] == 0
    out = run([0, 12], [50, 60], policy=DisclosurePolicy(suppress_zero=True))
    assert out["suppressed"].tolist() == [True, False]


def test_rounding_to_nearest_multiple_halves_up():
    out = run([12, 13, 22.5, 1003], [1000, 1000, 1000, 1001], policy=DisclosurePolicy(suppress_below=0))
    assert out["numerator"].tolist() == [10, 15, 25, 1005]
    assert out["denominator"].tolist() == [1000, 1000, 1000, 1000]
    out = run([12], [998], policy=DisclosurePolicy(round_to=1))
    assert out["numerator"].tolist() == [12] and out["denominator"].tolist() == [998]


def test_levels_not_controlled_are_untouched():
    level = np.array(["practice", "locality", "system"])
    inside = DisclosurePolicy(apply_to_levels=("practice", "locality"))
    out = run([3, 3, 3], [101, 101, 101], level=level, policy=inside)
    assert out["suppressed"].tolist() == [True, True, False]
    assert out["numerator"][2] == 3 and out["denominator"][2] == 101
    assert out["value"][2] == pytest.approx(3 / 101)
    out = run([3, 3, 3], [101, 101, 101], level=level)
    assert out["suppressed"].all()


def test_sums_are_tested_and_rounded_like_counts():
    """A mean's or per-head amount's sum is tested and rounded like a count (a per-head count
    of contacts has a count for its sum); a median has no numerator, only its values' number."""
    kind = np.array(["mean", "mean", "per_head", "median", "proportion"])
    num = np.array([3.5, 1234.56, 1234.56, NAN, 3])
    den = np.array([12, 5, 12, 20, 12])
    out = apply(num, den, num / den, num / den, num / den, "practice", kind=kind)
    assert out["suppressed"].tolist() == [True, True, False, False, True]
    assert out["numerator"][2] == 1235 and out["denominator"][2] == 10
    assert np.isnan(out["numerator"][3]) and out["denominator"][3] == 20
    assert out["exact_numerator"][2] == 1234.56 and out["exact_denominator"][2] == 12


def test_proportions_and_rates_rederived_from_rounded_counts():
    """HES works percentages out from the rounded counts; an exact value would otherwise give
    the unrounded counts back. Standardised rates keep their values."""
    kind = np.array(["proportion", "rate", "total", "rate"])
    mult = np.array([100.0, 1000.0, 1.0, 100_000.0])
    num = np.array([47.0, 61.0, 23.0, 61.0])
    den = np.array([93.0, 12_002.0, 500.0, 12_002.0])
    value = np.array([47 / 93 * 100, 61 / 12_002 * 1000, 23.0, 987.6])
    out = apply(num, den, value, value - 1, value + 1, "locality", kind=kind, multiplier=mult,
                standardised=np.array([False, False, False, True]))
    assert out["value"][0] == pytest.approx(45 / 95 * 100)
    lo, hi = stats.wilson(45, 95)
    assert (out["lower"][0], out["upper"][0]) == pytest.approx((lo * 100, hi * 100))
    r = stats.rate_ci(60, 12_000, 1000)
    assert (out["value"][1], out["lower"][1], out["upper"][1]) == pytest.approx([float(x) for x in r])
    assert out["value"][2] == 25
    assert out["numerator"][3] == 60 and out["denominator"][3] == 12_000
    assert out["value"][3] == pytest.approx(987.6 * 60 / 61 * 12_002 / 12_000)  # DSR: bands scaled to 60, 12,000
    kept = apply(num, den, value, value - 1, value + 1, "locality", DisclosurePolicy(derive_from_rounded=False),
                 kind=kind, multiplier=mult)
    assert kept["value"][0] == pytest.approx(47 / 93 * 100)


def test_policy_method_and_scalar_inputs():
    out = DisclosurePolicy(suppress_below=5).apply(5, 40, 0.125, 0.05, 0.27, "practice")
    assert not out["suppressed"] and out["numerator"] == 5 and out["denominator"] == 40


def _table(rows):
    names = ["level", "kind", "multiplier", "numerator", "denominator", "value", "lower", "upper",
             "standardised", "suppressed"]
    types = [pa.string(), pa.string(), pa.float64(), pa.float64(), pa.float64(), pa.float64(), pa.float64(),
             pa.float64(), pa.bool_(), pa.bool_()]
    return pa.table({n: pa.array([r[i] for r in rows], t) for i, (n, t) in enumerate(zip(names, types))})


def test_apply_table_nulls_suppressed_cells():
    t = _table([
        ("practice", "proportion", 100.0, 4.0, 50.0, 8.0, 3.0, 19.0, False, False),
        ("practice", "proportion", 100.0, 20.0, 52.0, 38.5, 26.0, 52.0, False, False),
        ("system", "proportion", 100.0, 4.0, 50.0, 8.0, 3.0, 19.0, False, False),
        ("locality", "median", 1.0, None, 30.0, 4.0, None, None, False, False),
        ("practice", "rate", 1000.0, 100.0, 9000.0, 11.1, 9.0, 13.5, False, True),  # flagged upstream
    ])
    out = apply_table(t, DisclosurePolicy(apply_to_levels=("practice", "locality")))
    assert out.schema.names == t.schema.names + list(EXACT_COLUMNS)
    assert out.column("exact_numerator").to_pylist() == [4.0, 20.0, 4.0, None, 100.0]
    assert out.column("exact_value").to_pylist()[1] == 38.5
    assert out.column("suppressed").to_pylist() == [True, False, False, False, True]
    row = out.slice(0, 1).to_pylist()[0]
    assert [row[c] for c in ("numerator", "denominator", "value", "lower", "upper")] == [None] * 5
    assert out.column("numerator").to_pylist()[1:3] == [20.0, 4.0]
    assert out.column("denominator").to_pylist()[:4] == [None, 50.0, 50.0, 30.0]
    assert out.column("value").to_pylist()[1] == pytest.approx(40.0)
    assert out.column("lower").to_pylist()[3] is None  # nulls stay null
    assert out.column("value").to_pylist()[4] is None


def test_apply_table_needs_its_columns():
    with pytest.raises(ValueError, match="level"):
        apply_table(pa.table({"numerator": [1.0]}))


@pytest.mark.parametrize("config, match", [
    ({"supress_below": 5}, r"unknown key 'supress_below' \(did you mean 'suppress_below'\?\)"),
    ({"colour": "red"}, r"unknown key 'colour'"),
    ({"suppress_below": -1}, r"disclosure\.suppress_below must be a whole number"),
    ({"suppress_below": "five"}, r"disclosure\.suppress_below"),
    ({"round_to": 2.5}, r"disclosure\.round_to"),
    ({"round_to": True}, r"disclosure\.round_to"),
    ({"suppress_zero": "yes"}, r"disclosure\.suppress_zero must be true or false"),
    ({"apply_to_levels": ["practice", "ward"]}, r"disclosure\.apply_to_levels: unknown level 'ward'"),
    ({"apply_to_levels": 3}, r"disclosure\.apply_to_levels must be a list"),
    (["suppress_below", 5], r"disclosure must be a mapping"),
])
def test_from_mapping_errors_name_the_key(config, match):
    with pytest.raises(ValueError, match=match):
        DisclosurePolicy.from_mapping(config)


def test_from_mapping_reads_config():
    assert DisclosurePolicy.from_mapping(None) == DisclosurePolicy()
    assert DisclosurePolicy.from_mapping({}) == DisclosurePolicy()
    p = DisclosurePolicy.from_mapping({"suppress_below": 5, "round_to": 5, "apply_to_levels": ["practice"],
                                       "suppress_zero": True})
    assert p == DisclosurePolicy(5, 5, ("practice",), True)
    assert DisclosurePolicy.from_mapping({"apply_to_levels": "locality"}).apply_to_levels == ("locality",)
    with pytest.raises(AttributeError):
        p.round_to = 10  # frozen


def _normal_limits(values):
    """compute.py's mean and limits from per-patient values: mean ± z·sd/√n."""
    z = stats.z_value()
    v = np.asarray(values, float)
    n, s, ss = len(v), v.sum(), (v * v).sum()
    mean = s / n
    var = max(ss / n - mean ** 2, 0) * n / max(n - 1, 1)
    half = z * np.sqrt(var / n)
    return s, n, mean, mean - half, mean + half


def test_means_come_from_the_rounded_sums_and_count():
    """An exact mean of whole numbers is sum / count: 23 days over 13 stays gives 13 back as
    the fraction's denominator. Published: the rounded sum (25), sum of squares (50, from
    51) and count (15), and the mean and limits worked out from them."""
    values = [1, 1, 1, 2, 2, 2, 2, 3, 3, 1, 2, 3, 0]  # sum 23, squares 51
    s, n, mean, lo, hi = _normal_limits(values)
    assert (s, n) == (23, 13)
    out = apply(s, n, mean, lo, hi, "practice", kind="mean", multiplier=1.0)
    assert (out["numerator"], out["denominator"]) == (25, 15)
    ss_r, mean_r = 50, 25 / 15  # the sum of squares 51 rounds to 50
    var_r = (ss_r / 15 - mean_r ** 2) * 15 / 14
    half = stats.z_value() * np.sqrt(var_r / 15)
    assert (out["value"], out["lower"], out["upper"]) == pytest.approx((mean_r, mean_r - half, mean_r + half))
    assert (out["exact_value"], out["exact_lower"]) == pytest.approx((mean, lo))
    per = apply(s, n, mean * 1000, lo * 1000, hi * 1000, "practice", kind="per_head", multiplier=1000.0)
    assert per["value"] == pytest.approx(mean_r * 1000)
    assert per["numerator"] * 1000 / per["value"] == pytest.approx(per["denominator"])  # not 13


def test_zero_one_means_keep_their_proportion():
    """Values of 0 and 1: the sum and sum of squares are the same count, rounded alike."""
    values = [1] * 12 + [0] * 31
    s, n, mean, lo, hi = _normal_limits(values)
    out = apply(s, n, mean, lo, hi, "locality", kind="mean", multiplier=1.0)
    p = 10 / 45
    half = stats.z_value() * np.sqrt(p * (1 - p) * 45 / 44 / 45)
    assert (out["value"], out["lower"], out["upper"]) == pytest.approx((p, p - half, p + half))


def test_standardised_limits_keep_no_trace_of_the_exact_count():
    """Dobson's limits are DSR + s(O_limit − O): with the exact O their shape (upper − DSR) /
    (DSR − lower) is O's Poisson shape and gives O away. Published: the shape of O_r's."""
    counts = np.array([[5.0, 20.0, 36.0]])  # 61 events in three age bands
    pops = np.array([[4000.0, 5000.0, 3002.0]])
    w = stats.european_standard_population().weights[[12, 15, 17]]
    value, lo, hi = stats.dsr(counts, pops, w, 1000)
    o_lo, o_hi = stats.poisson_limits(np.array([61.0, 60.0]))
    shape = (o_hi - [61, 60]) / ([61, 60] - o_lo)
    assert (hi[0] - value[0]) / (value[0] - lo[0]) == pytest.approx(shape[0])  # the leak, before control
    out = apply(61.0, 12_002.0, value[0], lo[0], hi[0], "practice", kind="rate", multiplier=1000.0, standardised=True)
    assert (out["upper"] - out["value"]) / (out["value"] - out["lower"]) == pytest.approx(shape[1])
    scaled = stats.dsr(counts * 60 / 61, pops * 12_000 / 12_002, w, 1000)  # the bands scaled to the totals
    assert (out["value"], out["lower"], out["upper"]) == pytest.approx([float(x[0]) for x in scaled], rel=1e-6)


def test_standardised_rates_from_few_events_stay_hidden():
    out = apply([9.0, 12.0], [5000.0, 5000.0], [NAN, 150.0], [NAN, 80.0], [NAN, 260.0], "practice",
                kind="rate", multiplier=100_000.0, standardised=True)
    assert not out["suppressed"].any()
    assert np.isnan(out["value"][0]) and out["numerator"].tolist() == [10, 10]
    assert out["value"][1] == pytest.approx(150.0 * 10 / 12)


def test_suppressed_cells_keep_their_exact_figures():
    out = apply([3, 40], [100, 100], [3, 40], [1, 30], [9, 50], "practice", kind="proportion", multiplier=100.0)
    assert out["suppressed"].tolist() == [True, False]
    assert np.isnan(out["numerator"][0])
    assert [out[c][0] for c in EXACT_COLUMNS] == [3, 100, 3, 1, 9]


@pytest.mark.parametrize("policy, phrases", [
    (DisclosurePolicy(), []),
    (DisclosurePolicy(suppress_below=11, round_to=10), []),
    (DisclosurePolicy(suppress_below=5), ["counts from 5 to 7 are published (suppress_below 5; HES: 8)"]),
    (DisclosurePolicy(suppress_below=0, round_to=1),
     ["counts from 1 to 7 are published (suppress_below 0; HES: 8)", "counts are rounded to 1, not 5 (round_to 1)"]),
    (DisclosurePolicy(apply_to_levels=("practice", "locality")),
     ["the system, provider, service levels are not controlled"]),
    (DisclosurePolicy(apply_to_levels=("practice", "locality", "provider", "service")),
     ["the system level is not controlled"]),
    (DisclosurePolicy(derive_from_rounded=False),
     ["values and intervals come from the unrounded counts (derive_from_rounded false)"]),
])
def test_weaker_than_default_names_each_shortfall(policy, phrases):
    assert policy.weaker_than_default() == phrases


def test_policy_as_dict_is_json():
    import json

    d = DisclosurePolicy(suppress_below=5, apply_to_levels=("practice",)).as_dict()
    assert json.loads(json.dumps(d)) == {"suppress_below": 5, "round_to": 5, "apply_to_levels": ["practice"],
                                         "suppress_zero": False, "derive_from_rounded": True}


def test_apply_table_replaces_exact_columns_already_there():
    t = _table([("practice", "rate", 1000.0, 61.0, 12_002.0, 5.08, 3.9, 6.5, False, False)])
    once = apply_table(t)
    again = apply_table(once.drop_columns(["numerator"]).append_column("numerator", pa.array([13.0])))
    assert again.column_names.count("exact_numerator") == 1
    assert again.column("exact_numerator").to_pylist() == [13.0] and again.column("numerator").to_pylist() == [15.0]
