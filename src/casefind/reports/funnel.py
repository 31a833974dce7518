"""Funnel-plot limits for comparing units (practices) with a system value.

Why funnels: a practice's value is only "unusual" relative to how much chance variation its
denominator allows, so the limits are drawn as a function of the denominator, following
Public Health England's "Technical Guide: funnel plots" (Fingertips guidance):

* proportions: PHE inverts the Wilson score interval around the system proportion p0
  (PHEindicatormethods' ``sigma_adjustment``). That inversion solves
  |p - p0| = z * sqrt(p0 (1 - p0) / n) for the observed p, so it is exactly the
  normal-approximation band p0 +/- z sqrt(p0 (1 - p0) / n); we compute that closed form
  and clip it to [0, 1].
* rates per person (Poisson): PHE inverts the exact Poisson interval around the expected
  count E = r0 * n. We invert Byar's approximation to that interval instead (PHE's own
  Technical Guide: Confidence Intervals puts Byar within 0.2% of exact for counts of 10 or
  more): the upper limit is the count O whose Byar *lower* bound equals E, the lower
  limit the count whose Byar *upper* bound equals E (0 when even O = 0 has an upper
  bound above E), each divided by n. Both Byar bounds are strictly increasing in O, so a
  vectorised bisection finds the roots.

Levels are two-sided 95% and 99.8% (z = 1.959964 and 3.090232, the normal quantiles
usually quoted as 1.96 and 3.09). A value exactly on a limit is within it.

Overdispersion: when units differ by more than chance (case-mix, recording), far more than 5%
fall outside the 95% limits. Spiegelhalter, "Funnel plots for comparing institutional
performance" (Statistics in Medicine 2005; 24:1185-1202), estimates a multiplicative factor
phi = mean of the squared z-scores, the z-scores Winsorised at their 10th and 90th
percentiles (section 3.2), and widens the limits to centre +/- z sqrt(phi V / n). Here the
limits' distance from the centre is multiplied by sqrt(phi) (for the Poisson limits, Byar's
asymmetric distance), and only when phi > 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
Z998 = 3.090232306167813

WITHIN = "within"
ABOVE_95 = "above_95"
ABOVE_998 = "above_99.8"
BELOW_95 = "below_95"
BELOW_998 = "below_99.8"
NOT_ASSESSED = "not_assessed"
CLASS_LABELS = {
    WITHIN: "Within 95% limits",
    ABOVE_95: "Above 95% limit",
    ABOVE_998: "Above 99.8% limit",
    BELOW_95: "Below 95% limit",
    BELOW_998: "Below 99.8% limit",
    NOT_ASSESSED: "Not assessed",
}
KINDS = ("proportion", "rate", "ratio")  # a ratio (events over events) has a proportion's limits


def proportion_limits(p0: float, n, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper limits (as proportions, 0..1) around ``p0`` at denominators ``n``."""
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = z * np.sqrt(p0 * (1.0 - p0) / n)
    return np.clip(p0 - half, 0.0, 1.0), np.clip(p0 + half, 0.0, 1.0)


def byar_lower(observed, z: float) -> np.ndarray:
    """Byar's lower confidence bound for a Poisson mean given an observed count (0 at 0)."""
    o = np.asarray(observed, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = 1.0 - 1.0 / (9.0 * o) - z / (3.0 * np.sqrt(o))
        out = o * np.maximum(inner, 0.0) ** 3
    return np.where(o > 0, out, 0.0)


def byar_upper(observed, z: float) -> np.ndarray:
    """Byar's upper confidence bound for a Poisson mean given an observed count."""
    m = np.asarray(observed, dtype=np.float64) + 1.0
    return m * (1.0 - 1.0 / (9.0 * m) + z / (3.0 * np.sqrt(m))) ** 3


def _invert(bound, target: np.ndarray, z: float) -> np.ndarray:
    """The count O >= 0 with bound(O, z) == target, by bisection (bound increasing in O)."""
    lo = np.zeros_like(target)
    hi = target + 10.0 * z * np.sqrt(target + 1.0) + 20.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        below = bound(mid, z) < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def poisson_limits(rate0: float, n, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper limits (events per unit of ``n``) around ``rate0`` at denominators ``n``."""
    n = np.asarray(n, dtype=np.float64)
    expected = rate0 * n
    upper_count = _invert(byar_lower, expected, z)
    lower_count = np.where(byar_upper(0.0, z) >= expected, 0.0,
                           _invert(byar_upper, expected, z))
    with np.errstate(divide="ignore", invalid="ignore"):
        return lower_count / n, upper_count / n


@dataclass(frozen=True, eq=False)
class Funnel:
    """Limits in the KPI's own units (value = numerator / denominator x multiplier)."""

    centre: float
    denominator: np.ndarray
    lower95: np.ndarray
    upper95: np.ndarray
    lower998: np.ndarray
    upper998: np.ndarray


def funnel(kind: str, centre: float, denominator, multiplier: float = 1.0, phi: float = 1.0) -> Funnel:
    """Both funnels for a KPI of ``kind`` ('proportion' or 'rate') around the system value;
    ``phi`` > 1 widens them for overdispersion (Spiegelhalter 2005)."""
    if kind not in KINDS:
        raise ValueError(f"funnel limits exist for {KINDS}, not {kind!r}")
    n = np.asarray(denominator, dtype=np.float64)
    base = centre / multiplier
    limits = poisson_limits if kind == "rate" else proportion_limits
    (l95, u95), (l998, u998) = limits(base, n, Z95), limits(base, n, Z998)
    m = multiplier
    if phi > 1.0:
        top = 1.0 if kind != "rate" else np.inf
        (l95, u95), (l998, u998) = ((np.clip(base - np.sqrt(phi) * (base - lo), 0.0, top),
                                     np.clip(base + np.sqrt(phi) * (hi - base), 0.0, top))
                                    for lo, hi in ((l95, u95), (l998, u998)))
    return Funnel(centre, n, l95 * m, u95 * m, l998 * m, u998 * m)


def overdispersion(values, denominator, kind: str, centre: float, multiplier: float = 1.0,
                   winsor: float = 0.1) -> float:
    """Spiegelhalter's (2005) multiplicative overdispersion factor phi from the units' z-scores
    (Winsorised at ``winsor`` and 1 - ``winsor``); NaN with fewer than 2 usable units."""
    v = np.asarray(values, dtype=np.float64) / multiplier
    n = np.asarray(denominator, dtype=np.float64)
    ok = ~np.isnan(v) & (n > 0)
    base = centre / multiplier
    var = base * (1.0 - base) if kind != "rate" else base
    if ok.sum() < 2 or var <= 0:
        return float("nan")
    z = (v[ok] - base) / np.sqrt(var / n[ok])
    lo, hi = np.quantile(z, [winsor, 1.0 - winsor])
    return float(np.mean(np.clip(z, lo, hi) ** 2))


def classify(values, denominator, kind: str, centre: float,
             multiplier: float = 1.0, phi: float = 1.0) -> list[str]:
    """Each unit's place against the funnel; NaN value or non-positive denominator: not assessed."""
    v = np.asarray(values, dtype=np.float64)
    n = np.asarray(denominator, dtype=np.float64)
    ok = ~np.isnan(v) & (n > 0)
    f = funnel(kind, centre, np.where(ok, n, 1.0), multiplier, phi)
    out = []
    for i in range(v.size):
        if not ok[i]:
            out.append(NOT_ASSESSED)
        elif v[i] > f.upper998[i]:
            out.append(ABOVE_998)
        elif v[i] > f.upper95[i]:
            out.append(ABOVE_95)
        elif v[i] < f.lower998[i]:
            out.append(BELOW_998)
        elif v[i] < f.lower95[i]:
            out.append(BELOW_95)
        else:
            out.append(WITHIN)
    return out
