"""Confidence intervals as English public-health analysts compute them, vectorised over numpy arrays.

Methods and where they come from (OHID/PHE "Fingertips" public health technical guidance; PHE
"Technical Guide: Confidence Intervals", 2018; APHO Technical Briefing 3, Eayres 2008):

* proportions: Wilson score interval (Wilson 1927; recommended by Newcombe 1998 and by the
  Fingertips guidance "Proportions");
* counts and crude rates: the χ² exact method for counts below 10 and Byar's approximation
  (Breslow & Day 1987) for 10 or more, as the Fingertips guidance "Rates" specifies. The exact
  limits are quantiles of the gamma distribution (χ²/2); numpy has none, so they are found by
  bisection on the regularised incomplete gamma function, which is a short series here;
* directly standardised rates: Dobson et al. (1991), "Confidence intervals for weighted sums of
  Poisson parameters", Stat Med 10:457-62, with Byar's limits on the total count, as OHID's
  PHEindicatormethods ``phe_dsr`` does; like OHID (and Morris et al. 2018, Popul Health Metr
  16:9) no DSR is given when the total count is below 10;
* the 2013 European Standard Population (Eurostat 2013, "Revision of the European Standard
  Population"), 19 bands 0-4 … 85-89, 90+, weights summing to 100,000.

``level`` is the two-sided confidence level, 0.95 by default; z comes from the normal quantile.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from statistics import NormalDist

import numpy as np

EXACT_BELOW = 10  # Fingertips: χ² exact method for counts < 10, Byar's method otherwise
DSR_MIN_COUNT = 10  # OHID / Morris et al. 2018: no DSR from fewer than 10 events


def z_value(level: float = 0.95) -> float:
    """The standard normal quantile for a two-sided interval at ``level`` (1.959964 for 0.95)."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be between 0 and 1 (exclusive), got {level!r}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def _floats(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------------------- proportions

def wilson(numerator, denominator, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score limits for the proportion O/n, as proportions in [0, 1].

    NaN where n is 0 (no proportion to bound). Unlike the normal approximation it never leaves
    [0, 1] and still gives an interval when O is 0 or n, which is why OHID prefers it.
    """
    o, n = np.broadcast_arrays(_floats(numerator), _floats(denominator))
    z = z_value(level)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = 1 - o / n
        centre = 2 * o + z * z
        half = z * np.sqrt(np.maximum(z * z + 4 * o * q, 0))
        scale = 2 * (n + z * z)
        lower = np.clip((centre - half) / scale, 0, 1)
        upper = np.clip((centre + half) / scale, 0, 1)
    lower = np.where(o <= 0, 0.0, lower)  # exact at the ends, free of rounding error
    upper = np.where(o >= n, 1.0, upper)
    empty = n <= 0
    return np.where(empty, np.nan, lower), np.where(empty, np.nan, upper)


# ---------------------------------------------------------------------------- counts and rates

def byar(count, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Byar's approximation to the exact Poisson limits of a count O (Breslow & Day 1987).

    lower = O(1 − 1/(9O) − z/(3√O))³, 0 when O is 0 (and never below 0: for very small O at
    high confidence the cube goes negative, where the exact method should be used anyway);
    upper = (O+1)(1 − 1/(9(O+1)) + z/(3√(O+1)))³.
    """
    o = _floats(count)
    z = z_value(level)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = o * (1 - 1 / (9 * o) - z / (3 * np.sqrt(o))) ** 3
    lower = np.where(o > 0, np.maximum(lower, 0), 0.0)
    o1 = o + 1
    upper = np.asarray(o1 * (1 - 1 / (9 * o1) + z / (3 * np.sqrt(o1))) ** 3)
    return lower, upper


def _gamma_p(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Regularised lower incomplete gamma P(a, x) by its power series (a > 0, x ≥ 0).

    P(a, x) = Σ_k t_k with t_0 = x^a e^-x / Γ(a+1) and t_k = t_(k-1) · x / (a+k): every term is
    a probability, so nothing overflows; the terms fall away once a + k passes x.
    """
    lgam = np.array([math.lgamma(v + 1) for v in a.ravel()]).reshape(a.shape)
    with np.errstate(divide="ignore"):
        term = np.exp(a * np.log(x) - x - lgam)
    total = term.copy()
    top = float(np.max(x, initial=0.0))
    terms = int(max(top - float(np.min(a, initial=0.0)), 0) + 12 * math.sqrt(top) + 40)
    for k in range(1, terms):
        term = term * x / (a + k)
        total += term
    return np.minimum(total, 1.0)


def _gamma_quantile(shape: np.ndarray, p: float, hi: np.ndarray) -> np.ndarray:
    """x with P(shape, x) = p, by bisection on [0, hi] (P rises with x)."""
    lo = np.zeros_like(hi)
    for _ in range(64):  # halves the bracket to below 1e-19 of hi
        mid = (lo + hi) / 2
        below = _gamma_p(shape, mid) < p
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return (lo + hi) / 2


def exact_poisson(count, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (χ²) Poisson limits of a count O: χ²(α/2; 2O)/2 and χ²(1−α/2; 2O+2)/2.

    Computed as gamma quantiles (χ²_2k / 2 is gamma with shape k); lower is 0 when O is 0.
    Meant for small counts (``poisson_limits`` uses it below 10); it stays accurate into the
    hundreds but is slow there, where Byar's method is as good.
    """
    o = _floats(count)
    shape, o = o.shape, o.reshape(-1)
    alpha = 1 - level
    _, byar_upper = byar(o, level)  # also validates level
    hi = 2 * byar_upper + 10  # a bracket well above both limits
    upper = _gamma_quantile(o + 1, 1 - alpha / 2, hi)
    positive = o > 0
    lower = np.zeros_like(o)
    if np.any(positive):
        lower[positive] = _gamma_quantile(o[positive], alpha / 2, hi[positive])
    return lower.reshape(shape), upper.reshape(shape)


@lru_cache(maxsize=16)
def _exact_table(level: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact limits for the integer counts 0 … EXACT_BELOW−1 (read-only)."""
    lower, upper = exact_poisson(np.arange(EXACT_BELOW, dtype=np.float64), level)
    lower.setflags(write=False)
    upper.setflags(write=False)
    return lower, upper


def poisson_limits(count, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Limits of a count the Fingertips way: exact below 10, Byar's method from 10 up.

    Byar is within 0.2% of exact from 10 up at 95% (PHE Technical Guide: Confidence Intervals,
    2018), so this is exact in effect, and fast: small integer counts are a table look-up.
    """
    o = _floats(count)
    shape, o = o.shape, o.reshape(-1)
    lower, upper = byar(o, level)
    small = (o >= 0) & (o < EXACT_BELOW)
    if np.any(small):
        whole = small & (o == np.floor(o))
        t_lower, t_upper = _exact_table(float(level))
        idx = o[whole].astype(np.int64)
        lower[whole], upper[whole] = t_lower[idx], t_upper[idx]
        part = small & ~whole  # fractional counts (rare): solve directly
        if np.any(part):
            lower[part], upper[part] = exact_poisson(o[part], level)
    return lower.reshape(shape), upper.reshape(shape)


def rate_ci(count, person_denominator, multiplier: float = 100_000,
            level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crude rate O/n × multiplier with its limits (O_lower/n, O_upper/n) × multiplier.

    The count's limits are ``poisson_limits`` (exact below 10, Byar above), per the Fingertips
    guidance "Rates". NaN where the denominator is 0.
    """
    o, n = np.broadcast_arrays(_floats(count), _floats(person_denominator))
    o_lower, o_upper = poisson_limits(o, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(n > 0, multiplier / n, np.nan)
    return o * scale, o_lower * scale, o_upper * scale


# ---------------------------------------------------------------------------- standardisation

@dataclass(frozen=True)
class StandardPopulation:
    """A standard population in age bands: labels, inclusive lower/upper ages (upper of the
    last band is None: open-ended) and weights."""

    labels: tuple[str, ...]
    lower: tuple[int, ...]
    upper: tuple[int | None, ...]
    weights: np.ndarray  # read-only float64


@lru_cache(maxsize=1)
def european_standard_population() -> StandardPopulation:
    """The 2013 European Standard Population: 19 bands 0-4 … 85-89, 90+, weights sum to 100,000.

    Read from the packaged copy of the published table (kpis/data/esp2013.csv).
    """
    with resources.files("casefind.kpis").joinpath("data", "esp2013.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    weights = np.array([float(r["weight"]) for r in rows])
    weights.setflags(write=False)
    return StandardPopulation(tuple(r["age_band"] for r in rows), tuple(int(r["lower"]) for r in rows),
                              tuple(int(r["upper"]) if r["upper"] else None for r in rows), weights)


def age_band(ages) -> np.ndarray:
    """ESP 2013 band index (0 … 18) of each whole age: five-year bands, 90 and over in band 18."""
    a = np.asarray(ages)
    if a.size and np.any(a < 0):
        raise ValueError("ages must be 0 or more")
    return np.minimum(np.floor_divide(a, 5), 18).astype(np.int64)


def dsr(counts, populations, std_weights, multiplier: float = 100_000, level: float = 0.95,
        min_count: int = DSR_MIN_COUNT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directly standardised rates with Dobson et al. (1991) limits, along the last axis.

    ``counts`` and ``populations`` are shaped (..., bands) (so many units or periods at once);
    ``std_weights`` is (bands,). With w_i the weights, W their sum, O_i the counts, n_i the
    populations and O the total count:

        DSR = Σ w_i O_i / n_i / W,  var = Σ O_i (w_i / n_i)² / W²,
        limit = DSR + √(var / O) · (O_limit − O)

    where O_limit is the Poisson limit of O (``poisson_limits``: Byar from 10 up, which is all
    OHID publishes). A band with no population contributes nothing (its rate is taken as 0,
    and any count there is ignored). Value and limits are NaN where the total count is below
    ``min_count`` (10, as OHID and Morris et al. 2018: DSRs from fewer events are unreliable;
    pass 0 to compute them anyway) or there is no population at all. With min_count=0 and no
    events the DSR is 0 with lower limit 0 and no upper limit (NaN: Dobson's √(var/O) is 0/0).
    """
    x, n = np.broadcast_arrays(_floats(counts), _floats(populations))
    w = _floats(std_weights)
    if w.ndim != 1 or x.shape[-1] != w.shape[0]:
        raise ValueError(f"counts have {x.shape[-1]} bands but there are {w.shape[-1]} standard weights")
    has_pop = n > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(has_pop, w / n, 0.0)  # w_i / n_i
    x = np.where(has_pop, x, 0.0)
    total_w = w.sum()
    value = (x * ratio).sum(axis=-1) / total_w
    var = (x * ratio ** 2).sum(axis=-1) / total_w ** 2
    o = x.sum(axis=-1)
    o_lower, o_upper = poisson_limits(o, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.sqrt(var / o)
    lower = np.where(o > 0, value + spread * (o_lower - o), 0.0)
    upper = np.where(o > 0, value + spread * (o_upper - o), np.nan)
    hidden = (o < min_count) | ~has_pop.any(axis=-1)
    out = [np.where(hidden, np.nan, v * multiplier) for v in (value, lower, upper)]
    return out[0], out[1], out[2]
