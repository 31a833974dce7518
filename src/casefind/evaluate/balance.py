"""Balance diagnostics: the standardised mean difference of every matching feature between
the treated and the controls, before matching (every eligible control at the treated
people's index months) and after (the matched controls).

SMD = (mean treated − mean control) / sqrt((var treated + var control) / 2), a true/false
feature's mean being its proportion (Austin, Stat Med 2009; Austin, Multivariate Behav Res
2011). Means and variances are weighted: before matching, each month's controls weigh
(treated that month / controls that month), so the comparison is at the same dates; after,
each matched control weighs 1 / (controls in its set). |SMD| > 0.1 is flagged (Austin 2009:
"a standardized difference greater than 0.1" denotes meaningful imbalance).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLD = 0.1


def weighted_stats(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted mean and (population) variance; NaN values left out."""
    ok = ~np.isnan(x)
    x, w = x[ok], w[ok]
    if w.sum() <= 0:
        return float("nan"), float("nan")
    mean = float(np.average(x, weights=w))
    return mean, float(np.average((x - mean) ** 2, weights=w))


def smd(xt: np.ndarray, wt: np.ndarray, xc: np.ndarray, wc: np.ndarray) -> tuple[float, float, float]:
    """(mean treated, mean control, SMD); SMD 0 when both groups are constant and equal."""
    mt, vt = weighted_stats(xt, wt)
    mc, vc = weighted_stats(xc, wc)
    pooled = np.sqrt((vt + vc) / 2)
    if not np.isfinite(pooled):
        return mt, mc, float("nan")
    if pooled == 0:
        return mt, mc, 0.0 if mt == mc else float("inf") * np.sign(mt - mc)
    return mt, mc, float((mt - mc) / pooled)


@dataclass(frozen=True)
class BalanceRow:
    feature: str
    stage: str          # before | after
    mean_treated: float
    mean_control: float
    smd: float

    @property
    def flagged(self) -> bool:
        return not np.isfinite(self.smd) or abs(self.smd) > THRESHOLD
