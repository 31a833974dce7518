"""No exact small count can be worked back from published KPI rows, for any kind of KPI.

Issue 13: "every published value, interval and chart point comes from the rounded,
suppressed figures, with a test that no exact small count can be recovered from any
published row". NHS Digital's HES/ECDS method suppresses counts of 1 to 7 below national
level and rounds the rest to the nearest 5; it warns that without secondary suppression the
published figures must not let "other values within the data ... be used to recalculate the
original small numbers". The attacker (tests/kpi_attacker.py) tries every arithmetic route on
random hierarchies of practices, with every kind computed over the same patients (so the
rows share their counts, as KPIs over one population do).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casefind.kpis import stats
from casefind.kpis.disclosure import LEVELS, DisclosurePolicy, apply_table
from kpi_attacker import Attacker

BELOW_NATIONAL = tuple(lv for lv in LEVELS if lv in ("practice", "locality", "system"))
KINDS = {  # kind: (multiplier, numerator quantity, denominator quantity)
    "proportion": (100.0, "P", "n"), "rate": (1000.0, "S", "n"), "mean": (1.0, "S", "n"),
    "per_head": (1.0, "S", "n"), "total": (1.0, "S", "n"), "median": (1.0, None, "n"), "ratio": (100.0, "P", "S"),
}


@st.composite
def hierarchies(draw):
    """systems > localities > practices > patients (age band, sex, a whole-number value)."""
    units = []  # (level, code, parent, patients) with patients only for practices
    for s in range(draw(st.integers(1, 2))):
        units.append(("system", f"S{s}", None, None))
        for lo in range(draw(st.integers(1, 3))):
            units.append(("locality", f"S{s}L{lo}", f"S{s}", None))
            for p in range(draw(st.integers(1, 3))):
                patients = draw(st.lists(st.tuples(st.sampled_from([14, 15, 16, 17]), st.sampled_from("FM"),
                                                   st.integers(0, 3)), max_size=24))
                units.append(("practice", f"S{s}L{lo}P{p}", f"S{s}L{lo}", patients))
    return units


def _patients(units, code, level):
    if level == "practice":
        return next(u[3] for u in units if u[1] == code)
    return [x for u in units if u[2] == code for x in _patients(units, u[1], u[0])]


def _exact(kind: str, std: bool, pts: list, mult: float):
    """numerator, denominator, value, lower, upper as compute.py makes them, from the patients."""
    v = np.array([x[2] for x in pts], float)
    n, s, ss, p = np.float64(len(v)), v.sum(), (v * v).sum(), np.float64((v > 0).sum())
    nan = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        if std:
            bands = np.zeros(19)
            pops = np.zeros(19)
            for band, _, x in pts:
                bands[band] += x
                pops[band] += 1
            value, lo, hi = stats.dsr(bands, pops, stats.european_standard_population().weights, mult)
            return s, n, float(value), float(lo), float(hi)
        if kind == "proportion":
            lo, hi = stats.wilson(p, n)
            return p, n, p / n * mult, lo * mult, hi * mult
        if kind == "ratio":
            lo, hi = stats.wilson(min(p, s), s)
            return p, s, p / s * mult, lo * mult, hi * mult
        if kind == "rate":
            value, lo, hi = stats.rate_ci(s, n, mult)
            return s, n, float(value), float(lo), float(hi)
        if kind in ("mean", "per_head"):
            mean = s / n
            var = np.maximum(ss / n - mean ** 2, 0) * n / max(n - 1, 1)
            half = stats.z_value() * np.sqrt(var / n)
            return s, n, mean * mult, (mean - half) * mult, (mean + half) * mult
        if kind == "total":
            return s, n, s * mult, nan, nan
        return nan, n, float(np.median(v)) * mult if len(v) else nan, nan, nan


def results(units) -> tuple[pa.Table, dict]:
    """Every kind at every level for everyone and by sex (cells with nobody have no row),
    and the exact value of every shared count (n people, P with a value, S the values' sum)."""
    rows, truth = [], {}
    for level, code, parent, _ in units:
        pts = _patients(units, code, level)
        for cell in ("", "F", "M"):
            cpts = [x for x in pts if not cell or x[1] == cell]
            v = np.array([x[2] for x in cpts], float)
            q = {"n": len(v), "P": float((v > 0).sum()), "S": float(v.sum())}
            truth.update({(level, code, cell, k): x for k, x in q.items()})
            for kind, (mult, _, dq) in KINDS.items():
                for std in ((False, True) if kind == "rate" and not cell else (False,)):
                    if cell and q[dq] == 0:
                        continue
                    num, den, value, lo, hi = (None if not np.isfinite(x) else float(x)
                                               for x in _exact(kind, std, cpts, mult))
                    rows.append({"kpi": kind, "kind": kind, "multiplier": mult, "standardised": std, "level": level,
                                 "unit_code": code, "parent_code": parent, "breakdown": "sex" if cell else "",
                                 "breakdown_value": cell, "numerator": num, "denominator": den, "value": value,
                                 "lower": lo, "upper": hi, "suppressed": False})
    types = {"multiplier": pa.float64(), "standardised": pa.bool_(), "suppressed": pa.bool_(),
             **{c: pa.float64() for c in ("numerator", "denominator", "value", "lower", "upper")}}
    table = pa.table({c: pa.array([r[c] for r in rows], types.get(c, pa.string())) for c in rows[0]})
    return table, truth


def shared_vars(row: dict, field: str):
    """The count a row's numerator or denominator is: every kind is over the same patients."""
    _, nq, dq = KINDS[row["kind"]]
    q = nq if field == "numerator" else dq
    return None if q is None else (row["level"], row["unit_code"], row["breakdown_value"], q)


def attack(units, policy: DisclosurePolicy, bounds: bool = False) -> tuple[Attacker, dict]:
    table, truth = results(units)
    published = apply_table(table, policy).to_pylist()
    att = Attacker(published, policy, shared_vars, bounds=bounds)
    for level, code, _, _ in units:
        for q in ("n", "P", "S"):
            for cell in ("", "F", "M"):
                kids = [(u[0], u[1], cell, q) for u in units if u[2] == code]
                if kids:
                    att.add_sum((level, code, cell, q), kids)
            att.add_sum((level, code, "", q), [(level, code, "F", q), (level, code, "M", q)])
    att.run()
    return att, truth


POLICIES = [DisclosurePolicy(), DisclosurePolicy(apply_to_levels=BELOW_NATIONAL),
            DisclosurePolicy(suppress_below=11, round_to=5, apply_to_levels=BELOW_NATIONAL)]


@pytest.mark.parametrize("policy", POLICIES, ids=["default", "hes-every-level", "suppress-1-10"])
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(units=hierarchies())
def test_no_small_count_can_be_worked_back(policy, units):
    att, truth = attack(units, policy)
    assert att.leaks(truth) == []


def test_the_attacker_finds_what_an_exact_value_gives_away():
    """The attacker is not blind: rows whose values came from exact counts (here, with
    derive_from_rounded off) give a small count away through the differences."""
    pts = [(15, "F", 1)] * 3  # a practice of three patients: suppressed
    big = [(15, "F", x % 3) for x in range(41)] + [(16, "M", 1)] * 12
    units = [("system", "S", None, None), ("locality", "L", "S", None),
             ("practice", "A", "L", pts), ("practice", "B", "L", big)]
    weak = DisclosurePolicy(derive_from_rounded=False)
    att, truth = attack(units, weak)
    assert {v[:2] for v, _ in att.leaks(truth)} == {("practice", "A")}
    alone = [("system", "S", None, None), ("locality", "L", "S", None), ("practice", "A", "L", pts)]
    att, truth = attack(alone, DisclosurePolicy(apply_to_levels=("practice", "locality")))
    assert ("system", "S", "", "n") in dict(att.leaks(truth))  # an uncontrolled level publishes A's 3
    att, truth = attack(units, DisclosurePolicy())
    assert att.leaks(truth) == []


ROUNDING_PINS = [  # P1's one woman: the locality's 20 (18-22) less P0's 10 (8-12) leaves P1 at 6 or 7; its
    # women are then at least 12 - 11 = 1 of the locality's 10 (8-12), and P0 has no men
    [("system", "S", None, None), ("locality", "L", "S", None), ("practice", "P0", "L", [(14, "F", 0)] * 11),
     ("practice", "P1", "L", [(14, "F", 0)] + [(14, "M", 0)] * 6)],
    # all '*': a system of at most 7 whose four practices' seven sex cells each hold at least 1
    [("system", "S", None, None), ("locality", "L0", "S", None), ("practice", "A", "L0", [(14, "F", 0)]),
     ("locality", "L1", "S", None)] + [("practice", f"B{i}", "L1", [(14, "F", 0), (14, "M", 0)]) for i in range(3)],
]


@pytest.mark.xfail(strict=True, reason="rounding and '*' are not secondary suppression: HES/ECDS accepts that "
                                       "bounds (13-17 for 15, 1-7 for *) can pin a count; see docs/kpis.md")
@pytest.mark.parametrize("units", ROUNDING_PINS, ids=["rounding-windows", "starred-cells"])
def test_bounds_alone_can_pin_a_count(units):
    att, truth = attack(units, DisclosurePolicy(), bounds=True)
    assert att.leaks(truth) == []
