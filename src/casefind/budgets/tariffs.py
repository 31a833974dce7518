"""Tariffs per category from the baseline year's in-scope cost, or as set by hand.

Method (docs/budgets.md): the baseline people are those in the cohort at the baseline
year's end who were registered throughout it; each one's cost is their in-scope spend with a
start date in the baseline year. A category with fewer baseline people than
``min_category_size`` is priced with the category it names in ``merge_into`` (followed
until one is big enough), the people of both pooled. Within each priced group, costs above
the stated percentile (numpy's linear interpolation) are capped at it, or those people are
left out of the mean. The tariff is the trimmed mean times (1 + uplift). A tariff set by hand
is used as written: not merged, trimmed or uplifted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from casefind.budgets.define import BudgetSpec, Trim
from casefind.errors import DataError


class TariffError(DataError):
    """A computed tariff with no one to compute it from."""


@dataclass(frozen=True)
class Tariffs:
    """One entry per category, in the file's order (the tariffs.parquet columns)."""

    category: list[str]
    label: list[str]
    people: np.ndarray
    trimmed: np.ndarray
    merged_into: list[str | None]
    baseline_mean: np.ndarray
    trimmed_mean: np.ndarray
    uplift: np.ndarray
    tariff: np.ndarray
    incentive: np.ndarray
    source: list[str]
    thresholds: dict[str, float]  # the trim threshold of each priced group


def trimmed(costs: np.ndarray, trim: Trim) -> tuple[float, int, float]:
    """(threshold, people above it, mean after the trim) of one group's costs. Neither
    depends on the costs' order: the percentile reads the sorted values, and the mean is
    the exactly rounded sum (``math.fsum``) over the count, so the costs pooled from a
    sharded store's shards give one store's tariffs to the bit."""
    if len(costs) == 0:
        return float("nan"), 0, float("nan")
    threshold = float(np.percentile(costs, trim.above_percentile))
    above = costs > threshold
    kept = np.minimum(costs, threshold) if trim.method == "cap" else costs[~above]
    return threshold, int(above.sum()), math.fsum(kept.tolist()) / len(kept) if len(kept) else float("nan")


def merged(spec: BudgetSpec, people: np.ndarray) -> list[str | None]:
    """The category each too-small category is priced with (None: itself)."""
    names = spec.category_names()
    small = {c.name: people[i] < spec.min_category_size and c.merge_into is not None and c.tariff is None
             for i, c in enumerate(spec.categories)}
    into = {c.name: c.merge_into for c in spec.categories}
    out: list[str | None] = []
    for name in names:
        seen, target = {name}, name
        while small[target] and into[target] not in seen:
            target = into[target]
            seen.add(target)
        out.append(None if target == name else target)
    return out


def compute(spec: BudgetSpec, category: np.ndarray, cost: np.ndarray) -> Tariffs:
    """Tariffs from the baseline people's categories (index per person) and costs."""
    names = spec.category_names()
    k = len(names)
    people = np.bincount(category, minlength=k).astype(np.int64)[:k]
    sums = np.bincount(category, weights=cost, minlength=k)[:k]
    with np.errstate(invalid="ignore", divide="ignore"):
        baseline_mean = np.where(people > 0, sums / np.maximum(people, 1), np.nan)
    into = merged(spec, people)
    group = np.array([names.index(t) if t else i for i, t in enumerate(into)], np.int64)
    person_group = group[category] if len(category) else category
    stats = {g: trimmed(cost[person_group == g], spec.trim) for g in set(group.tolist())}
    trimmed_n = np.array([stats[g][1] for g in group], np.int64)
    trimmed_mean = np.array([stats[g][2] for g in group])
    tariff, source = np.zeros(k), []
    for i, c in enumerate(spec.categories):
        if c.tariff is not None:
            tariff[i], _ = c.tariff, source.append("manual")
            continue
        if not np.isfinite(trimmed_mean[i]):
            raise TariffError(f"category {c.name!r} has no one in the baseline year {spec.baseline_year} to set "
                              "its tariff from",
                              "give it merge_into: (with tariffs: min_category_size:) or a tariff: set by hand")
        tariff[i], _ = trimmed_mean[i] * (1 + spec.uplift), source.append("computed")
    return Tariffs(names, [c.label for c in spec.categories], people, trimmed_n, into, baseline_mean, trimmed_mean,
                   np.array([spec.uplift if s == "computed" else 0.0 for s in source]), tariff,
                   _incentives(spec), source, {names[g]: stats[g][0] for g in stats})


def _incentives(spec: BudgetSpec) -> np.ndarray:
    inc = spec.incentive
    if inc is None:
        return np.zeros(len(spec.categories))
    return np.array([inc.amount if inc.categories is None or c.name in inc.categories else 0.0
                     for c in spec.categories])
