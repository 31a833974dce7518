"""Fit the model: L2-regularised logistic regression (scikit-learn) on standardised
predictors, missing values set to the training mean; the standardisation is then folded back
into the coefficients, so the artefact's linear predictor reads the raw features."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from casefind.errors import DataError

MAX_ITER = 2_000


@dataclass(frozen=True)
class Fitted:
    names: tuple[str, ...]
    intercept: float                 # on the raw scale
    coefficients: tuple[float, ...]  # per raw unit of each predictor
    means: tuple[float, ...]         # training means: what a missing value is taken as
    scales: tuple[float, ...]        # training standard deviations (1 where constant)
    standardised: tuple[float, ...]  # per standard deviation: comparable across predictors

    def linear(self, X: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(X), np.asarray(self.means), X)
        return self.intercept + filled @ np.asarray(self.coefficients)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return logistic(self.linear(X))


def logistic(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_logistic(X: np.ndarray, y: np.ndarray, names: tuple[str, ...], c: float) -> Fitted:
    from sklearn.linear_model import LogisticRegression

    _check_outcome(y)
    means = np.array([np.nanmean(col) if np.isfinite(col).any() else 0.0 for col in X.T])
    filled = np.where(np.isnan(X), means, X)
    scales = filled.std(axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    model = LogisticRegression(C=c, max_iter=MAX_ITER).fit((filled - means) / scales, y)
    beta = model.coef_[0]
    raw = beta / scales
    intercept = float(model.intercept_[0] - (raw * means).sum())
    return Fitted(names, intercept, tuple(map(float, raw)), tuple(map(float, means)),
                  tuple(map(float, scales)), tuple(map(float, beta)))


def fit_boosted(X: np.ndarray, y: np.ndarray):
    """The gradient-boosted alternative the report compares against (not shipped as a model:
    it does not compile to a rule expression)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    _check_outcome(y)
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=0).fit(X, y)


def _check_outcome(y: np.ndarray) -> None:
    if y.size == 0 or y.all() or not y.any():
        raise DataError(f"the outcome is the same for all {y.size:,} training patients: nothing to fit",
                        "check the spec's outcome and as_of against the store's dates")
