"""Exact band assignment by rank, with a stated tie rule (docs/pyramid.md, "Bands and ties").

The population with a score is ordered by the score (to 32 significant bits, so that sums an
engine adds in another order still tie), highest first, ties broken by the pseudonymised
patient id (ascending): a total order, the same on every engine and every run. Band FROM-TO%
holds the people ranked floor(N x FROM + 1/2) to floor(N x TO + 1/2) - 1, N the people with a
score (exact arithmetic): the top band has exactly round(N x TO) people, bands that meet share
no one. It is the rule ``casefind budget simulate`` ranks its cohorts by (budgets/simulate.py),
whose ``band_edges`` and ``ranking_value`` are used here, so the two commands' bands agree.

``top(x, p%)`` in a rule is different: ties at the edge are all in, so it can take more than
p% (``top_takes`` says how many it would take at each edge); ``edge_ties`` reports how many
tied scores straddle each edge, which is where the two differ.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from casefind.budgets.simulate import band_edges, ranking_value
from casefind.errors import UsageError

OUTSIDE = -1  # the band of someone without a score, or outside the population
TIE_RULE = ("ranked by the score (to 32 significant bits), highest first, ties by pseudonymised patient id "
            "(ascending); band FROM-TO% holds ranks floor(N*FROM+1/2) to floor(N*TO+1/2) - 1, N the people "
            "with a score, so the top band has exactly round(N*TO) people; people without a score are in no band")
_BAND = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%?\s*[-\u2013]\s*(\d+(?:\.\d+)?)\s*%?\s*")


@dataclass(frozen=True)
class Band:
    """People ranked from ``low`` to ``high`` (fractions of the population: 0.005 is 0.5%);
    ``low``/``high`` are what ``band_edges`` reads."""

    label: str
    low: float
    high: float


def parse_bands(text: str) -> tuple[Band, ...]:
    """``"0-0.5,0.5-5,5-20,20-100"`` (percentages) as bands, which must run from 0% to 100%
    without gaps or overlaps: a pyramid is the whole ranked population."""
    bands, end = [], Fraction(0)
    for part in str(text).split(","):
        m = _BAND.fullmatch(part)
        if not m:
            raise UsageError(f"{part.strip()!r} is not a band",
                             "write FROM-TO in percent, e.g. 0-0.5,0.5-5,5-20,20-100", option="--bands")
        low, high = Fraction(m.group(1)), Fraction(m.group(2))
        if low != end or high <= low or high > 100:
            raise UsageError(f"{part.strip()!r}: bands must follow on from 0% to 100% in order, each wider than 0",
                             f"the next band starts at {float(end):g}%", option="--bands")
        bands.append(Band(f"{m.group(1)}-{m.group(2)}%", float(low / 100), float(high / 100)))
        end = high
    if end != 100:
        raise UsageError(f"the bands end at {float(end):g}%, not 100%", "the last band ends at 100, e.g. 20-100",
                         option="--bands")
    return tuple(bands)


def rank_order(score: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Indexes of the people with a score (not NaN), best first, by the tie rule."""
    who = np.flatnonzero(~np.isnan(score))
    value = ranking_value(score[who])
    return who[np.lexsort((keys[who], -value))]


def assign(score: np.ndarray, keys: np.ndarray, bands: tuple[Band, ...]) -> np.ndarray:
    """Each person's band index (OUTSIDE when the score is missing). ``score`` is float with
    NaN for no score, ``keys`` the pseudonymised ids that break ties."""
    order = rank_order(score, keys)
    out = np.full(len(score), OUTSIDE, np.int64)
    for i, (first, last) in enumerate(band_edges(len(order), bands)):
        out[order[first:last]] = i
    return out


@dataclass(frozen=True)
class EdgeTie:
    """What happens at the edge below band ``above``: the score there, how many people share
    it on each side of the edge, and how many ``top()`` (ties all in) would take."""

    edge: str        # "0.5%"
    rank: int        # people above the edge (the exact band rule)
    score: float | None
    tied_above: int  # people sharing a score across the edge kept above it (0 when none straddles)
    tied_below: int  # ... and put below it by the patient-id tie break
    top_takes: int   # people top(score, edge%) would take: fewer than edge% have a larger score

    @property
    def straddles(self) -> bool:
        return self.tied_above > 0 and self.tied_below > 0


def edge_ties(score: np.ndarray, keys: np.ndarray, bands: tuple[Band, ...]) -> list[EdgeTie]:
    """One EdgeTie per inner edge (between two bands)."""
    order = rank_order(score, keys)
    ranked = ranking_value(score[order])  # descending
    raw = -np.sort(-score[order])  # top() compares the values themselves
    n = len(order)
    out = []
    for band, (_, last) in zip(bands[:-1], band_edges(n, bands)[:-1]):
        edge = f"{band.high * 100:g}%"
        if last == 0 or last >= n:  # an empty band on one side: no tie to straddle
            out.append(EdgeTie(edge, last, None, 0, 0, _top_takes(raw, band.high)))
            continue
        at = ranked[last - 1]
        first_tied = int(np.searchsorted(-ranked, -at, side="left"))
        end_tied = int(np.searchsorted(-ranked, -at, side="right"))
        below = end_tied - last  # 0: no one below the edge shares the score, so no tie straddles it
        out.append(EdgeTie(edge, last, float(score[order[last - 1]]), last - first_tied if below else 0, below,
                           _top_takes(raw, band.high)))
    return out


def _top_takes(descending: np.ndarray, fraction: float) -> int:
    """How many ``top(score, fraction)`` takes: those of whom fewer than fraction x N have a
    larger score (ties at the edge all in), found as the engines find it: everyone at least
    the (m+1)-th largest score, m = ceil(fraction x N) - 1."""
    m = math.ceil(fraction * len(descending)) - 1  # fraction <= 1, so m < N
    if m < 0:
        return 0
    return int(np.searchsorted(-descending, -descending[m], side="right"))
