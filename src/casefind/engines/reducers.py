"""One reducer per aggregation: what its slot of a scan keeps, per patient and period.

After datashader's reductions.py, where each reduction owns its ``_append``: a reducer owns
its scratch, its init before a patient's rows, its step per row that passes the slot's test,
its finish, whether one row decides it, and its output type. Lowering (native_codegen) only
glues reducers into a ``ScanProgram``; adding an aggregation is one class here, registered
under its name (``REDUCERS``). Pieces are plain Python that Numba compiles: outputs are
written at ``[t, q]`` (period, patient position), ``mark`` identifies the patient and
period (distinct counts stamp it), per-row work that is more than a line calls
casefind_native.runtime.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from casefind.contract import TABLES
from casefind.contract.dates import NULL_DAY
from casefind.engines.scan_program import ConstArg, Piece

if TYPE_CHECKING:
    from casefind.engines.native_codegen import RowExprs
    from casefind.rules import ir

NULL = int(NULL_DAY)
IN_BAND = "nan"  # the null part of a row value that is nan when missing (see RowExprs.value)


@dataclass
class SlotContext:
    """What a reducer lowers with: the slot's number, node and dates, its row test, whether
    its loop stops at the first row that passes (``stops``), its block's rows, its output
    (and validity) arguments, and the row-expression lowering (``rows``)."""

    k: int
    node: ir.Node
    test: str
    stops: bool
    first: str
    end: str
    out: str
    ok: str | None
    rows: RowExprs
    day: str  # the slot's date per period (a DaysArg name)
    labels: np.ndarray | None = None  # set by a reducer whose values are text codes


def _and(*tests: str) -> str:
    kept = [t for t in tests if t != "True"]
    return " and ".join(kept) if kept else "True"


class Reducer:
    name: ClassVar[str]
    dtype: ClassVar[type] = np.float64
    has_valid: ClassVar[bool] = True     # writes whether each patient has a value
    empty_valid: ClassVar[bool] = False  # ... and what a table without rows gives
    decided_by_one_row: ClassVar[bool] = False
    backwards: ClassVar[bool] = False    # when decided by one row: the latest one

    def reads_rows(self, node, test: str) -> bool:
        return True

    def lower(self, c: SlotContext) -> Piece:
        raise NotImplementedError


class Exists(Reducer):
    name, dtype, has_valid, decided_by_one_row = "exists", np.bool_, False, True

    def reads_rows(self, node, test):
        return test != "True"

    def lower(self, c):
        k = c.k
        if c.test == "True":
            return Piece(finish=[f"{c.out}[t, q] = {c.end} > {c.first}"])
        step = f"if {c.test}:\n    a{k} = True\n    break" if c.stops else f"if not a{k} and {c.test}:\n    a{k} = True"
        return Piece(init=[f"a{k} = False"], step=[step], finish=[f"{c.out}[t, q] = a{k}"])


class Count(Reducer):
    name, dtype, has_valid = "count", np.int64, False

    def reads_rows(self, node, test):
        return test != "True"

    def lower(self, c):
        if c.test == "True":
            return Piece(finish=[f"{c.out}[t, q] = {c.end} - {c.first}"])
        return Piece(init=[f"a{c.k} = 0"], step=[f"if {c.test}:\n    a{c.k} += 1"], finish=[f"{c.out}[t, q] = a{c.k}"])


class _OfValues(Reducer):
    """sum, mean, min, max, first, last of a row value (a number, date, or a text's code)."""

    def update(self, k: int, v: str, stops: bool) -> str:
        raise NotImplementedError

    def guard(self, k: int, stops: bool) -> str:
        return "True"

    def result(self, k: int) -> str:
        return f"a{k}"

    def valid(self, k: int) -> str:
        return f"n{k} > 0"

    def lower(self, c):
        k = c.k
        v, vn = self.row_value(c)
        in_band, computed = vn == IN_BAND, v
        if in_band:  # computed per row, nan when missing: computed once, then tested
            v, vn = f"x{k}", None
        upd = self.update(k, v, c.stops)
        guard = self.guard(k, c.stops)
        if in_band:
            nested = upd.replace("\n", "\n        ")
            step = f"if {_and(guard, c.test)}:\n    x{k} = {computed}\n    if x{k} == x{k}:\n        {nested}"
        else:
            present = f"not ({vn})" if vn else "True"
            step = f"if {_and(guard, c.test, present)}:\n    " + upd.replace("\n", "\n    ")
        return Piece(init=[f"a{k} = 0.0\nn{k} = 0"], step=[step],
                     finish=[f"{c.out}[t, q] = {self.result(k)}\n{c.ok}[t, q] = {self.valid(k)}"])

    @staticmethod
    def row_value(c: SlotContext) -> tuple[str, str | None]:
        from casefind.rules import ir

        n = c.node
        if isinstance(n.value, ir.Column) and n.value.type in (ir.T.TEXT, ir.T.CODE):
            v, present, c.labels = c.rows.code_key(n.value.column, "r")  # its index in the code space
            return v, f"not ({present})"
        return c.rows.value(n.value, c.rows.dates_of(c.k), "r")


class Sum(_OfValues):
    name, empty_valid = "sum", True

    def update(self, k, v, stops):
        return f"a{k} += {v}\nn{k} += 1"

    def valid(self, k):
        return "True"  # a sum of no rows is 0


class Mean(_OfValues):
    name = "mean"

    def update(self, k, v, stops):
        return f"a{k} += {v}\nn{k} += 1"

    def result(self, k):
        return f"a{k} / n{k} if n{k} else 0.0"


class Min(_OfValues):
    name = "min"

    def update(self, k, v, stops):
        return f"a{k} = {v} if n{k} == 0 or {v} < a{k} else a{k}\nn{k} += 1"


class Max(_OfValues):
    name = "max"

    def update(self, k, v, stops):
        return f"a{k} = {v} if n{k} == 0 or {v} > a{k} else a{k}\nn{k} += 1"


class First(_OfValues):
    name, decided_by_one_row = "first", True

    def update(self, k, v, stops):
        return f"a{k} = {v}\nn{k} = 1" + ("\nbreak" if stops else "")

    def guard(self, k, stops):
        return "True" if stops else f"n{k} == 0"


class Last(First):
    name, backwards = "last", True

    def guard(self, k, stops):
        return "True"


class DaysSince(Reducer):
    name, dtype, decided_by_one_row, backwards = "days_since", np.int64, True, True

    def lower(self, c):
        k = c.k
        stop = "\n    break" if c.stops else ""
        return Piece(init=[f"a{k} = {NULL}"], step=[f"if {c.test}:\n    a{k} = {c.rows.date}[r]{stop}"],
                     finish=[f"{c.out}[t, q] = {c.day}[t] - a{k}\n{c.ok}[t, q] = a{k} != {NULL}"])


def _count_once(k: int, key: str) -> str:
    """Counts ``key`` once per patient and period: stamp{k}[key] == mark once it is counted."""
    return f"if stamp{k}[{key}] != mark:\n    stamp{k}[{key}] = mark\n    a{k} += 1"


def _stamps(k: int, size: str, what: str) -> str:
    return f"stamp{k} = np.full({size}, -1, dtype=np.int64)  # the last patient and period that had each {what}"


class CountDistinctCategories(Reducer):
    """count_distinct of a codelist's categories (a code in two categories counts both);
    weighted_categories adds up each category's weight once instead."""

    name, dtype, has_valid = "count_distinct", np.int64, False

    def code_column(self, c: SlotContext) -> str:
        value = getattr(c.node, "value", None)
        code = getattr(value, "code", None)
        return code.column if code is not None else TABLES[c.rows.table].code_column

    def lower(self, c):
        k, g = c.k, c.rows
        ptr, ids, weights, ncat = g.categories(c.node.codelist)
        cp = g.arg(f"catptr{k}", ConstArg(ptr, f"codelist {c.node.codelist.name}: categories of each code"))
        ci = g.arg(f"catid{k}", ConstArg(ids))
        size = g.arg(f"ncat{k}", ConstArg(np.int64(max(ncat, 1))))
        code = g.col(self.code_column(c))
        step = (f"if {_and(c.test, f'{code}[r] >= 0')}:\n"
                f"    for j in range({cp}[{code}[r]], {cp}[{code}[r] + 1]):\n"
                + "\n".join("        " + line for line in _count_once(k, f"{ci}[j]").split("\n")))
        return Piece(scratch=[_stamps(k, size, "category")], init=[f"a{k} = 0"], step=[step],
                     finish=[self.total(c, weights)])

    def total(self, c: SlotContext, weights) -> str:
        return f"{c.out}[t, q] = a{c.k}"


class WeightedCategories(CountDistinctCategories):
    """Whole units added in 64 bits, divided once: the double nearest the exact sum."""

    name, dtype = "weighted_categories", np.float64

    def total(self, c, weights):
        k, g, n = c.k, c.rows, c.node
        w = g.arg(f"weights{k}", ConstArg(weights, "each category's weight, in whole units"))
        sc = g.arg(f"scale{k}", ConstArg(np.float64(10 ** n.codelist.weight_places)))
        if n.hierarchy:
            hp, hi = (g.arg(f"{x}{k}", ConstArg(a)) for x, a in zip(("aboveptr", "above"), g.above(n.codelist, n.hierarchy)))
            total = f"rt.weighted_hierarchy(stamp{k}, {w}, mark, {hp}, {hi})"
        else:
            total = f"rt.weighted(stamp{k}, {w}, mark)"
        return f"{c.out}[t, q] = {total} / {sc} if a{k} else 0.0"


class CountDistinctCoded(Reducer):
    """count_distinct of a dictionary-coded column: one stamp per value of its code space."""

    name, dtype, has_valid = "count_distinct", np.int64, False

    def lower(self, c):
        k, g = c.k, c.rows
        col = g.spec.column(c.node.value.column)
        v = g.col(col.name)
        base, size = g.code_space(col)
        bs = g.arg(f"base{k}", ConstArg(base))
        sz = g.arg(f"size{k}", ConstArg(np.int64(max(size, 1))))
        sys_col = g.enc[col.name].get("system_column") if col.kind == "code" else None
        if sys_col:
            s_ = g.col(sys_col)
            has, key = f"{v}[r] >= 0 and {s_}[r] >= 0", f"{bs}[{s_}[r]] + {v}[r]"
        else:
            has, key = f"{v}[r] >= 0", f"{bs}[0] + {v}[r]"
        step = f"if {_and(c.test, has)}:\n    x{k} = {key}\n" + "\n".join("    " + x for x in _count_once(k, f"x{k}").split("\n"))
        return Piece(scratch=[_stamps(k, sz, "value")], init=[f"a{k} = 0"], step=[step], finish=[f"{c.out}[t, q] = a{k}"])


class CountDistinctValues(Reducer):
    """count_distinct of other values: collected, then counted (runtime.count_unique)."""

    name, dtype, has_valid = "count_distinct", np.int64, False

    def lower(self, c):
        k, g = c.k, c.rows
        v, vn = g.value(c.node.value, g.dates_of(k), "r")
        has = f"not ({vn})" if vn else "True"
        rows_max = g.arg("maxrows", ConstArg(g.max_rows, "the most rows one patient has"))
        return Piece(scratch=[f"buf{k} = np.empty({rows_max}, dtype=np.float64)"], init=[f"n{k} = 0"],
                     step=[f"if {_and(c.test, has)}:\n    buf{k}[n{k}] = {v}\n    n{k} += 1"],
                     finish=[f"{c.out}[t, q] = rt.count_unique(buf{k}[:n{k}])"])


class Trend(Reducer):
    """Monthly sums (or counts) over the last months, then their least-squares slope. The
    buckets are cleared at the patient's first row in the window: patients with none cost nothing."""

    name, has_valid = "trend", False

    def lower(self, c):
        k, g, n = c.k, c.rows, c.node
        y = "1.0"
        if n.value is not None:  # a missing value adds nothing (the row still counts)
            yv, yn = g.value(n.value, g.dates_of(k), "r")
            y = f"(0.0 if {yn} else {yv})" if yn else yv
        bk = g.arg(f"months{k}_bounds", ConstArg(g.month_bounds(k, n.months), "per period: D, D - 1 month, ..."))
        m = g.arg(f"months{k}", ConstArg(np.int64(n.months)))
        step = (f"if {c.test}:\n    if c{k} == 0:\n        y{k}[:] = 0.0\n        rows{k}[:] = 0\n    c{k} += 1\n"
                f"    x{k} = rt.bucket({g.date}[r], {bk}[t])\n    y{k}[x{k}] += {y}\n    rows{k}[x{k}] += 1")
        return Piece(scratch=[f"y{k} = np.zeros({m}, dtype=np.float64)\nrows{k} = np.zeros({m}, dtype=np.int64)"],
                     init=[f"c{k} = 0"], step=[step],
                     finish=[f"{c.out}[t, q] = rt.monthly_slope(y{k}, rows{k}) if c{k} else 0.0"])


REDUCERS: dict[str, Reducer] = {r.name: r for r in (
    Exists(), Count(), Sum(), Mean(), Min(), Max(), First(), Last(), DaysSince(), WeightedCategories(), Trend())}
COUNT_DISTINCT = {"categories": CountDistinctCategories(), "coded": CountDistinctCoded(),
                  "values": CountDistinctValues()}


def reducer_for(node, spec) -> Reducer:
    """The reducer of an Aggregate or Trend (count_distinct by what it counts)."""
    from casefind.rules import ir

    func = getattr(node, "func", "trend")
    if func != "count_distinct":
        return REDUCERS[func]
    if isinstance(node.value, getattr(ir, "CategoryOf", ())):
        return COUNT_DISTINCT["categories"]
    if isinstance(node.value, ir.Column) and spec.column(node.value.column).kind in ("code", "text", "enum"):
        return COUNT_DISTINCT["coded"]
    return COUNT_DISTINCT["values"]
