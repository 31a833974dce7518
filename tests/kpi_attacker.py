"""An attacker on published KPI rows, written out so that tests can run it.

It knows the disclosure policy (the pack states it) and every published row, and tries to
work an exact count back: from the rounding window of each published count, from the
arithmetic of each row (value x denominator / multiplier, numerator / value, a mean's
fraction, the Wilson, exact-Poisson/Byar and Dobson intervals inverted over the counts the
window allows), from what a suppressed row says (one of its counts is small), and from the
differences between a parent and the sum of its children (and between a unit's row and the
sum of its breakdown cells), propagated as integer bounds until nothing changes.

By default the attacker learns only exact counts (published unrounded, or worked out by
the arithmetic) and takes differences of those, as the issue lists the attacks; with
``bounds=True`` it also reasons with bounds: the rounding windows and what a '*' says (1 to
7), which HES's method accepts can narrow a count (it is not secondary suppression).

Counts are *variables*: ``var_of(row, field)`` names the unknown a row's numerator or
denominator is, so rows that share one (a crude rate and its age-standardised row, or every
KPI over the same population) pool what each reveals. A *leak* is a variable whose exact
value is a small count (1 to suppress_below - 1) and which the attacker pins to that value.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable

import numpy as np

from casefind.kpis import stats

BIG = 10**12
COUNT_KINDS = ("proportion", "rate", "total", "ratio")


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _integer(x: float) -> int | None:
    if x is None or not math.isfinite(x):
        return None
    r = round(x)
    return int(r) if abs(x - r) <= 1e-6 * max(1.0, abs(x)) else None


class Attacker:
    def __init__(self, rows: list[dict], policy, var_of: Callable[[dict, str], Hashable | None],
                 level: float = 0.95, *, bounds: bool = False):
        self.rows, self.policy, self.var_of, self.level, self.bounds = rows, policy, var_of, level, bounds
        self.k, self.step = policy.suppress_below, max(policy.round_to, 1)
        self.lo: dict[Hashable, int] = {}  # what the attacker knows of each count
        self.hi: dict[Hashable, int] = {}
        self.win: dict[Hashable, tuple[int, int]] = {}  # where it searches (the rounding windows)
        self.sums: list[tuple[Hashable, list[Hashable]]] = []
        for r in rows:
            for f in ("numerator", "denominator"):
                v = var_of(r, f)
                if v is not None:
                    self.lo.setdefault(v, 0)
                    self.hi.setdefault(v, BIG)
                    self.win.setdefault(v, (0, BIG))

    # ------------------------------------------------------------------ knowledge

    def narrow(self, v: Hashable, lo: int, hi: int) -> None:
        self.lo[v] = max(self.lo[v], lo)
        self.hi[v] = min(self.hi[v], hi)

    def window(self, published: float, controlled: bool) -> tuple[int, int]:
        """The exact counts a published count can stand for."""
        if not controlled or self.step <= 1 or published % self.step:
            return int(published), int(published)  # not rounded: it is the count
        lo, hi = math.ceil(published - self.step / 2), math.ceil(published + self.step / 2) - 1
        if published > 0 or self.policy.suppress_zero:
            return max(lo, self.k), hi  # published, so not a small count
        return (0, 0) if hi < self.k else (0, hi)

    def learn(self, v: Hashable | None, x: float | None, published: float | None) -> None:
        """An exact count worked out by arithmetic: kept when it is a whole number the
        published window allows and not the published count itself (which a value worked
        out from the published counts gives back, and which says no more than the window)."""
        e = _integer(x) if x is not None else None
        if v is None or e is None or self.lo[v] == self.hi[v] or not self._allowed(v, e):
            return
        if published is not None and e == published:
            return
        self.lo[v] = self.hi[v] = e

    def _allowed(self, v: Hashable, e: int) -> bool:
        return max(self.lo[v], self.win[v][0]) <= e <= min(self.hi[v], self.win[v][1])

    def candidates(self, v: Hashable | None) -> range | None:
        if v is None:
            return None
        lo, hi = max(self.lo[v], self.win[v][0]), min(self.hi[v], self.win[v][1])
        return range(lo, hi + 1) if hi - lo <= 200 else None

    # ------------------------------------------------------------------ attacks

    def read_rows(self) -> None:
        controlled_levels = set(self.policy.apply_to_levels)
        for r in self.rows:
            num_v, den_v = self.var_of(r, "numerator"), self.var_of(r, "denominator")
            if r["suppressed"]:
                self._suppressed(r, num_v, den_v)
                continue
            for v, f in ((num_v, "numerator"), (den_v, "denominator")):
                if v is None or r[f] is None:
                    continue
                lo, hi = self.window(r[f], r["level"] in controlled_levels)
                self.win[v] = (max(self.win[v][0], lo), min(self.win[v][1], hi))
                if self.bounds or lo == hi:  # a count published unrounded is known
                    self.narrow(v, lo, hi)

    def _suppressed(self, r: dict, num_v, den_v) -> None:
        """A suppressed row: its denominator, or (counts) its numerator, is 1 to k - 1 (as
        bounds: used with ``bounds=True``)."""
        if not self.bounds:
            return
        small = (0 if self.policy.suppress_zero else 1, self.k - 1)
        if r["kind"] == "median" and den_v is not None:
            self.narrow(den_v, *small)
        if r["kind"] not in COUNT_KINDS or num_v is None or den_v is None:
            return
        if self.lo[den_v] >= self.k:
            self.narrow(num_v, *small)
        if self.lo[num_v] >= self.k:
            self.narrow(den_v, *small)

    def explained(self, r: dict) -> bool:
        """Whether the row's value is what its published counts give: then it was worked out
        from them and says nothing more, and any count read from it would be a guess."""
        num, den, val, mult = r["numerator"], r["denominator"], r["value"], r["multiplier"]
        if num is None or den is None:
            return False
        if r["standardised"]:
            if None in (r["lower"], r["upper"]) or not num > 0 or not (val - r["lower"]) > 0:
                return False
            o_lo, o_hi = stats.poisson_limits(np.array([num]), self.level)
            return _close((r["upper"] - val) / (val - r["lower"]), float((o_hi[0] - num) / (num - o_lo[0])))
        if r["kind"] == "total":
            return _close(val, num * mult)
        return den > 0 and _close(val, num / den * mult)

    def arithmetic(self) -> None:
        for r in self.rows:
            if r["suppressed"] or r["value"] is None or self.explained(r):
                continue
            num_v, den_v = self.var_of(r, "numerator"), self.var_of(r, "denominator")
            num, den, val, mult = r["numerator"], r["denominator"], r["value"], r["multiplier"]
            if num is not None and den is not None and val:
                self.learn(den_v, num * mult / val, den)  # numerator / value
            if den is not None and val is not None:
                self.learn(num_v, val * den / mult, num)  # value x denominator / multiplier
            self._invert(r, num_v, den_v)

    def _invert(self, r: dict, num_v, den_v) -> None:
        kind, std = r["kind"], r["standardised"]
        if kind in ("mean", "per_head"):
            self._fraction(r, den_v)
        elif std:
            self._dobson(r, num_v)
        elif kind in ("proportion", "ratio", "rate"):
            self._pairs(r, num_v, den_v)

    def _fraction(self, r: dict, den_v) -> None:
        """A mean of whole numbers is sum / count: the counts that make it a fraction."""
        cands = self.candidates(den_v)
        if cands is None:
            return
        mean = r["value"] / r["multiplier"]
        fits = [m for m in cands if m > 0 and _integer(mean * m) is not None]
        if len(fits) == 1:
            self.learn(den_v, fits[0], r["denominator"])

    def _pairs(self, r: dict, num_v, den_v) -> None:
        """The (numerator, denominator) pairs whose interval is the one published."""
        cn, cd = self.candidates(num_v), self.candidates(den_v)
        if cn is None or cd is None or r["lower"] is None or r["upper"] is None:
            return
        o, n = np.meshgrid(np.array(cn, float), np.array(cd, float), indexing="ij")
        o, n = o.ravel(), n.ravel()
        ok = (o <= n) & (n > 0) if r["kind"] != "rate" else n > 0
        o, n = o[ok], n[ok]
        if not len(o):
            return
        if r["kind"] == "rate":
            _, lo, hi = stats.rate_ci(o, n, r["multiplier"], self.level)
        else:
            lo, hi = stats.wilson(o, n, self.level)
            lo, hi = lo * r["multiplier"], hi * r["multiplier"]
        fit = np.isclose(lo, r["lower"], rtol=1e-9, atol=1e-12) & np.isclose(hi, r["upper"], rtol=1e-9, atol=1e-12)
        if fit.sum() == 1:
            self.learn(num_v, float(o[fit][0]), r["numerator"])
            self.learn(den_v, float(n[fit][0]), r["denominator"])

    def _dobson(self, r: dict, num_v) -> None:
        """Dobson limits are DSR + s (O_limit - O): their spread's shape gives the count O."""
        cands = self.candidates(num_v)
        if cands is None or None in (r["lower"], r["upper"]) or not (r["value"] - r["lower"]) > 0:
            return
        o = np.array([c for c in cands if c > 0], float)
        if not len(o):
            return
        o_lo, o_hi = stats.poisson_limits(o, self.level)
        shape = (o_hi - o) / (o - o_lo)
        seen = (r["upper"] - r["value"]) / (r["value"] - r["lower"])
        fit = np.isclose(shape, seen, rtol=1e-7)
        if fit.sum() == 1:
            self.learn(num_v, float(o[fit][0]), r["numerator"])

    # ------------------------------------------------------------------ differences

    def add_sum(self, parent: Hashable, children: Iterable[Hashable]) -> None:
        kids = [c for c in children if c in self.lo]
        if parent in self.lo and kids:
            self.sums.append((parent, kids))

    def propagate(self, rounds: int = 60) -> None:
        """parent = sum(children), as bounds, until they stop moving."""
        for _ in range(rounds):
            moved = False
            for parent, kids in self.sums:
                lo_sum, hi_sum = sum(self.lo[c] for c in kids), sum(min(self.hi[c], BIG) for c in kids)
                before = (self.lo[parent], self.hi[parent])
                self.narrow(parent, lo_sum, hi_sum)
                moved |= before != (self.lo[parent], self.hi[parent])
                for c in kids:
                    before = (self.lo[c], self.hi[c])
                    self.narrow(c, self.lo[parent] - (hi_sum - min(self.hi[c], BIG)),
                                self.hi[parent] - (lo_sum - self.lo[c]))
                    moved |= before != (self.lo[c], self.hi[c])
            for r in self.rows:  # what suppression says, again, with the tighter bounds
                if r["suppressed"]:
                    self._suppressed(r, self.var_of(r, "numerator"), self.var_of(r, "denominator"))
            if not moved:
                return

    def run(self) -> None:
        self.read_rows()
        self.arithmetic()
        self.propagate()
        self.arithmetic()  # bounds from the differences can make an inversion unique
        self.propagate()

    def leaks(self, truth: dict[Hashable, float]) -> list[tuple[Hashable, int]]:
        """Variables holding a small count that the attacker pinned to it."""
        out = []
        for v, x in truth.items():
            if v in self.lo and 1 <= x < self.k and self.lo[v] == self.hi[v] == x:
                out.append((v, int(x)))
        return out

    def recovered(self, truth: dict[Hashable, float]) -> list[Hashable]:
        """Variables (any size) pinned to their exact value although published rounded."""
        return [v for v, x in truth.items() if v in self.lo and self.lo[v] == self.hi[v] == x]


def table_vars(row: dict, field: str):
    """Variables for a real results table: a row's counts, shared by a KPI's crude and
    age-standardised rows (the same events over the same people)."""
    if field == "numerator" and row["kind"] == "median":
        return None
    return (row["kpi"], row["period"], row["level"], row["unit_code"], row["breakdown"], row["breakdown_value"],
            field)


def table_sums(att: Attacker) -> None:
    """A real table's sums: parent unit = its children units; a unit = its breakdown cells."""
    child_level = {"locality": "practice", "system": "locality"}
    by_parent: dict[tuple, list] = {}
    cells: dict[tuple, dict[str, list]] = {}
    for r in att.rows:
        for f in ("numerator", "denominator"):
            v = att.var_of(r, f)
            if v is None:
                continue
            if r["parent_code"] is not None:
                by_parent.setdefault((r["kpi"], r["period"], r["level"], r["parent_code"], r["breakdown"],
                                      r["breakdown_value"], f), []).append(v)
            if r["breakdown"]:
                unit = (r["kpi"], r["period"], r["level"], r["unit_code"], f)
                cells.setdefault(unit, {}).setdefault(r["breakdown"], []).append(v)
    for r in att.rows:
        for f in ("numerator", "denominator"):
            v = att.var_of(r, f)
            if v is None:
                continue
            lv = child_level.get(r["level"])
            if lv is not None:
                att.add_sum(v, sorted(set(by_parent.get((r["kpi"], r["period"], lv, r["unit_code"], r["breakdown"],
                                                         r["breakdown_value"], f), [])), key=str))
            if not r["breakdown"]:
                for kids in cells.get((r["kpi"], r["period"], r["level"], r["unit_code"], f), {}).values():
                    att.add_sum(v, sorted(set(kids), key=str))
