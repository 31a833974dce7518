"""Validation metrics of a risk score against a binary outcome: discrimination (c-statistic
with a DeLong confidence interval), calibration (by decile; slope and intercept by logistic
recalibration), the Brier score, and sensitivity and PPV when the top k% are selected.

DeLong, DeLong and Clarke-Pearson, Biometrics 1988 (the variance through placement values,
computed from midranks as in Sun and Xu, IEEE Signal Processing Letters 2014); calibration
slope and intercept as in Steyerberg, Clinical Prediction Models (2nd ed., 2019), ch. 15:
slope = b in logit P(y) = a + b * logit(p); intercept = a in logit P(y) = a + logit(p)."""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm, rankdata

TOP_PERCENTS = (0.5, 2.0, 5.0, 20.0)
DECILES = 10
_EPS = 1e-12


def c_statistic(y: np.ndarray, score: np.ndarray, level: float = 0.95) -> dict:
    """The area under the ROC curve (ties count a half) and its DeLong interval."""
    y = np.asarray(y, bool)
    pos, neg = score[y], score[~y]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return {"c": None, "low": None, "high": None, "se": None}
    tz = rankdata(np.concatenate([pos, neg]))
    tx, ty = rankdata(pos), rankdata(neg)
    auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:m] - tx) / n          # per positive: the share of negatives it outranks
    v01 = 1.0 - (tz[m:] - ty) / m    # per negative: the share of positives that outrank it
    var = (v10.var(ddof=1) if m > 1 else 0.0) / m + (v01.var(ddof=1) if n > 1 else 0.0) / n
    se = math.sqrt(var)
    z = norm.ppf(0.5 + level / 2)
    return {"c": float(auc), "low": float(max(0.0, auc - z * se)), "high": float(min(1.0, auc + z * se)),
            "se": float(se)}


def calibration_deciles(y: np.ndarray, p: np.ndarray, groups: int = DECILES) -> list[dict]:
    """Patients in ``groups`` equal parts by predicted risk (lowest first): mean predicted
    risk against the observed rate."""
    order = np.argsort(p, kind="stable")
    out = []
    for k, part in enumerate(np.array_split(order, groups), start=1):
        if part.size:
            out.append({"decile": k, "n": int(part.size), "predicted": float(p[part].mean()),
                        "observed": float(y[part].mean())})
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.log(q / (1 - q))


def _newton(design: np.ndarray, offset: np.ndarray, y: np.ndarray, steps: int = 50) -> np.ndarray:
    """Maximum-likelihood logistic coefficients of ``design`` with a fixed ``offset``."""
    beta = np.zeros(design.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(design @ beta + offset)))
        grad = design.T @ (y - p)
        hess = (design * (p * (1 - p))[:, None]).T @ design
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return beta


def calibration_line(y: np.ndarray, p: np.ndarray) -> dict:
    """Calibration slope (1 is ideal; below 1, predictions too extreme) and intercept
    (calibration-in-the-large: 0 is ideal; above 0, risks predicted too low)."""
    yf = np.asarray(y, float)
    lp = _logit(p)
    ones = np.ones((len(yf), 1))
    a_b = _newton(np.column_stack([ones[:, 0], lp]), np.zeros(len(yf)), yf)
    a = _newton(ones, lp, yf)
    return {"slope": float(a_b[1]), "intercept": float(a[0])}


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def top_percent(y: np.ndarray, score: np.ndarray, percents=TOP_PERCENTS) -> list[dict]:
    """Selecting the ``k``% with the highest score (ties at the cut by store order): how many
    of those with the outcome are selected (sensitivity) and how many selected have it (PPV)."""
    y = np.asarray(y, bool)
    order = np.lexsort((np.arange(len(score)), -np.asarray(score, float)))
    positives = int(y.sum())
    out = []
    for k in percents:
        n = max(1, math.ceil(len(y) * k / 100))
        hits = int(y[order[:n]].sum())
        out.append({"top_percent": k, "selected": n, "true_positives": hits,
                    "sensitivity": hits / positives if positives else None, "ppv": hits / n})
    return out


def evaluate(y: np.ndarray, score: np.ndarray, probability: np.ndarray | None) -> dict:
    """Every metric of one score; the calibration ones only when it is a probability."""
    out = {"c_statistic": c_statistic(y, score), "top": top_percent(y, score)}
    if probability is not None:
        out |= {"brier": brier(y, probability), "calibration": calibration_line(y, probability),
                "deciles": calibration_deciles(y, probability), "mean_predicted": float(np.mean(probability))}
    return out
