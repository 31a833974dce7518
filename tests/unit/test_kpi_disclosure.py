"""Disclosure control of KPI results: suppression, rounding, levels, and the policy's config."""
import numpy as np
import pyarrow as pa
import pytest

from casefind.kpis import stats
from casefind.kpis.disclosure import DisclosurePolicy, apply, apply_table

NAN = np.nan


def run(num, den, level="practice", policy=None, **kw):
    num, den = np.asarray(num, float), np.asarray(den, float)
    value = num / np.where(den > 0, den, np.nan)
    return apply(num, den, value, value * 0.9, value * 1.1, level, policy or DisclosurePolicy(), **kw)


def test_defaults_follow_hes():
    """NHS Digital HES/ECDS method: 1-7 suppressed, nearest 5, national (here: system) untouched."""
    p = DisclosurePolicy()
    assert (p.suppress_below, p.round_to, p.apply_to_levels, p.suppress_zero) == (8, 5, ("practice", "locality"), False)


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
    out = run([3, 3, 3], [101, 101, 101], level=level)
    assert out["suppressed"].tolist() == [True, True, False]
    assert out["numerator"][2] == 3 and out["denominator"][2] == 101
    assert out["value"][2] == pytest.approx(3 / 101)
    out = run([3, 3, 3], [101, 101, 101], level=level,
              policy=DisclosurePolicy(apply_to_levels=("practice", "locality", "system")))
    assert out["suppressed"].all()


def test_amount_kinds_test_only_the_people():
    """A mean cost's numerator is money, not people: only the denominator decides, and only it
    is rounded. A median's numerator is missing."""
    kind = np.array(["mean", "mean", "median", "proportion"])
    num = np.array([3.5, 1234.56, NAN, 3])
    den = np.array([12, 5, 20, 12])
    out = apply(num, den, num / den, num / den, num / den, "practice", kind=kind)
    assert out["suppressed"].tolist() == [False, True, False, True]
    assert out["numerator"][0] == 3.5 and out["denominator"][0] == 10
    assert np.isnan(out["numerator"][2]) and out["denominator"][2] == 20


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
    assert out["value"][3] == 987.6 and out["numerator"][3] == 60  # DSR: counts rounded, value kept
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
    out = apply_table(t, DisclosurePolicy())
    assert out.schema == t.schema
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
