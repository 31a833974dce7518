"""The effect of the programme on each outcome: a difference in differences of means over
matched sets, with a confidence interval.

For treated person i with matched controls j = 1..k_i, the set's difference is
d_i = (after_i − before_i) − mean_j (after_j − before_j). The estimate is the mean of d_i
over the matched sets: the average effect on the treated people who were matched. Its
interval is the analytic one for matched sets: mean(d) ± t(n − 1) × sd(d) / sqrt(n), the
paired t interval, which treats the sets as independent. That holds when controls are
matched without replacement; with replacement a control shared by several sets makes them
dependent, and the interval is too narrow (docs/evaluate.md says so beside the result).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Effect:
    outcome: str
    sets: int
    treated_before: float
    treated_after: float
    control_before: float
    control_after: float
    estimate: float
    lower: float
    upper: float
    std_error: float
    confidence: float

    @property
    def relative(self) -> float:
        """The estimate as a share of what the treated would have had after without it
        (their mean after minus the estimate); NaN when that is 0."""
        counterfactual = self.treated_after - self.estimate
        return self.estimate / counterfactual if counterfactual else float("nan")


def set_means(values: np.ndarray, set_id: np.ndarray, n_sets: int) -> np.ndarray:
    """The mean of ``values`` (one per pair) within each matched set."""
    sums = np.bincount(set_id, weights=values, minlength=n_sets)
    return sums / np.bincount(set_id, minlength=n_sets)


def did(outcome: str, t_before: np.ndarray, t_after: np.ndarray, c_before: np.ndarray, c_after: np.ndarray,
        set_id: np.ndarray, confidence: float) -> Effect:
    """The estimate and its interval: ``t_*`` one per set, ``c_*`` one per pair (set ``set_id``)."""
    n = len(t_before)
    cb, ca = set_means(c_before, set_id, n), set_means(c_after, set_id, n)
    d = (t_after - t_before) - (ca - cb)
    est = float(d.mean()) if n else float("nan")
    se = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * se) if n > 1 else float("nan")
    means = [float(v.mean()) if n else float("nan") for v in (t_before, t_after, cb, ca)]
    return Effect(outcome, n, *means, est, est - half, est + half, se, confidence)
