"""Matching: each treated person to ``ratio`` controls at the same index month, equal on
every exact value, nearest on the propensity score's logit (scikit-learn's
LogisticRegression) or on the standardised features (Euclidean), within a caliper.

The propensity model is fitted once, pooled over the index months, on the treated at their
index month and a seeded sample of the eligible controls at each (at most ``SAMPLE_PER``
per treated person of that month, plus ``SAMPLE_MIN``): sampling controls changes the
intercept of a logistic model, not its slopes, so the ordering the match uses is kept. The
caliper is in standard deviations of the logit over the fitted rows (0.2: Austin, Pharm
Stat 2011), or of the standardised distance. Greedy matching, treated people in a seeded
random order; without replacement, a control is used once in the whole evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from casefind.evaluate.spec import Matching

SAMPLE_PER, SAMPLE_MIN = 20, 1000


@dataclass(frozen=True)
class Candidates:
    """One index month's people who may be matched: store rows, features, exact stratum."""

    month: int                 # index into the evaluation's index months
    treated: np.ndarray        # store rows
    controls: np.ndarray       # store rows
    x_treated: np.ndarray      # rows x features
    x_controls: np.ndarray
    stratum_treated: np.ndarray  # int codes, comparable within the month
    stratum_controls: np.ndarray


@dataclass(frozen=True)
class Matches:
    """One row per (treated, control) pair; ``set_id`` numbers the treated person's set."""

    set_id: np.ndarray
    month: np.ndarray
    treated: np.ndarray
    control: np.ndarray
    distance: np.ndarray
    unmatched: int             # treated people with no control within the caliper
    caliper_width: float | None  # in the units matched on (logit, or standardised distance)


def scores(months: list[Candidates], m: Matching) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Per month, the logit of the propensity score of treated and controls, and its SD."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(m.seed)
    xs, ys = [], []
    for c in months:
        n = min(len(c.controls), SAMPLE_PER * len(c.treated) + SAMPLE_MIN)
        pick = rng.choice(len(c.controls), n, replace=False) if n < len(c.controls) else np.arange(len(c.controls))
        xs += [c.x_treated, c.x_controls[pick]]
        ys += [np.ones(len(c.treated)), np.zeros(n)]
    x, y = np.concatenate(xs), np.concatenate(ys)
    mean, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    if len(np.unique(y)) < 2:
        return ([np.zeros(len(c.treated)) for c in months], [np.zeros(len(c.controls)) for c in months], 0.0)
    model = LogisticRegression(max_iter=1000).fit((x - mean) / sd, y)
    fitted = model.decision_function((x - mean) / sd)

    def logit(rows: np.ndarray) -> np.ndarray:
        return model.decision_function((rows - mean) / sd) if len(rows) else np.zeros(0)

    return [logit(c.x_treated) for c in months], [logit(c.x_controls) for c in months], float(fitted.std())


def match(months: list[Candidates], m: Matching, n_patients: int) -> Matches:
    """Greedy k:1 matching within exact strata and index month (the module's docstring)."""
    if m.method == "propensity":
        st, sc, spread = scores(months, m)
        points_t, points_c = [s[:, None] for s in st], [s[:, None] for s in sc]
    else:
        points_t, points_c, spread = _standardised(months)
    width = None if m.caliper is None else m.caliper * spread
    rng = np.random.default_rng(m.seed + 1)
    used = np.zeros(n_patients, bool)
    rows: list[tuple[int, int, int, int, float]] = []
    unmatched = n_sets = 0
    for c, pt, pc in zip(months, points_t, points_c):
        pools = _pools(c.stratum_controls, pc)
        for i in rng.permutation(len(c.treated)):
            pool = pools.get(int(c.stratum_treated[i]))
            chosen = [] if pool is None else _nearest(pt[i], pc, pool, c.controls, used, m, width)
            if not chosen:
                unmatched += 1
                continue
            for j, dist in chosen:
                rows.append((n_sets, c.month, int(c.treated[i]), int(c.controls[j]), dist))
                used[c.controls[j]] = not m.replacement
            n_sets += 1
    cols = list(zip(*rows)) if rows else [[]] * 5
    return Matches(np.asarray(cols[0], np.int64), np.asarray(cols[1], np.int64), np.asarray(cols[2], np.int64),
                   np.asarray(cols[3], np.int64), np.asarray(cols[4], np.float64), unmatched, width)


def _pools(strata: np.ndarray, points: np.ndarray) -> dict[int, np.ndarray]:
    """Each stratum's controls (indices), in order of their score when it is one-dimensional."""
    order = np.lexsort((points[:, 0], strata)) if points.shape[1] == 1 else np.argsort(strata, kind="stable")
    codes, starts = np.unique(strata[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    return {int(k): order[a:b] for k, a, b in zip(codes, starts, bounds)}


def _nearest(point: np.ndarray, points: np.ndarray, pool: np.ndarray, rows: np.ndarray, used: np.ndarray,
             m: Matching, width: float | None) -> list[tuple[int, float]]:
    """The ``ratio`` nearest unused controls of the pool within the caliper (index, distance)."""
    if points.shape[1] == 1:
        return _nearest_1d(float(point[0]), points[pool, 0], pool, rows, used, m.ratio, width)
    idx = pool[~used[rows[pool]]]
    if len(idx) == 0:
        return []
    dist = np.sqrt(((points[idx] - point) ** 2).sum(axis=1))
    k = min(m.ratio, len(idx))
    near = np.argpartition(dist, k - 1)[:k] if k < len(idx) else np.arange(len(idx))
    near = near[np.lexsort((rows[idx[near]], dist[near]))]  # nearest first; ties by store row
    return [(int(idx[j]), float(dist[j])) for j in near if width is None or dist[j] <= width]


def _nearest_1d(x: float, sorted_scores: np.ndarray, pool: np.ndarray, rows: np.ndarray, used: np.ndarray,
                k: int, width: float | None) -> list[tuple[int, float]]:
    """Walk out from ``x`` along the sorted scores, skipping used controls."""
    right = int(np.searchsorted(sorted_scores, x))
    left = right - 1
    out: list[tuple[int, float]] = []
    while len(out) < k and (left >= 0 or right < len(pool)):
        dl = x - sorted_scores[left] if left >= 0 else np.inf
        dr = sorted_scores[right] - x if right < len(pool) else np.inf
        j, d = (left, dl) if dl <= dr else (right, dr)
        if width is not None and d > width:
            break
        if dl <= dr:
            left -= 1
        else:
            right += 1
        if not used[rows[pool[j]]]:
            out.append((int(pool[j]), float(d)))
    return out


def _standardised(months: list[Candidates]) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Features scaled by their SD over treated and controls, for a Euclidean distance; the
    caliper is then in those SDs."""
    x = np.concatenate([c.x_treated for c in months] + [c.x_controls for c in months])
    mean, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    return ([(c.x_treated - mean) / sd for c in months], [(c.x_controls - mean) / sd for c in months], 1.0)
