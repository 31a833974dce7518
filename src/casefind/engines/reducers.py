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
    group_kind: ClassVar[int | None] = None  # its kind in a codelist group (CodelistGroup), if it can join one

    def reads_rows(self, node, test: str) -> bool:
        return True

    def lower(self, c: SlotContext) -> Piece:
        raise NotImplementedError


class Exists(Reducer):
    name, dtype, has_valid, decided_by_one_row, group_kind = "exists", np.bool_, False, True, 0

    def reads_rows(self, node, test):
        return test != "True"

    def lower(self, c):
        k = c.k
        if c.test == "True":
            return Piece(finish=[f"{c.out}[t, q] = {c.end} > {c.first}"])
        step = f"if {c.test}:\n    a{k} = True\n    break" if c.stops else f"if not a{k} and {c.test}:\n    a{k} = True"
        return Piece(init=[f"a{k} = False"], step=[step], finish=[f"{c.out}[t, q] = a{k}"])


class Count(Reducer):
    name, dtype, has_valid, group_kind = "count", np.int64, False, 1

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
    name, decided_by_one_row, group_kind = "first", True, 3

    def update(self, k, v, stops):
        return f"a{k} = {v}\nn{k} = 1" + ("\nbreak" if stops else "")

    def guard(self, k, stops):
        return "True" if stops else f"n{k} == 0"


class Last(First):
    name, backwards, group_kind = "last", True, 2

    def guard(self, k, stops):
        return "True"


class DaysSince(Reducer):
    name, dtype, decided_by_one_row, backwards, group_kind = "days_since", np.int64, True, True, 4

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
            above = g.above(n.codelist, n.hierarchy)
            hp, hi = (g.arg(f"{x}{k}", ConstArg(a)) for x, a in zip(("aboveptr", "above"), above))
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
        count = "\n".join("    " + x for x in _count_once(k, f"x{k}").split("\n"))
        step = f"if {_and(c.test, has)}:\n    x{k} = {key}\n" + count
        return Piece(scratch=[_stamps(k, sz, "value")], init=[f"a{k} = 0"], step=[step],
                     finish=[f"{c.out}[t, q] = a{k}"])


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


class Median(Reducer):
    """median of a row value: the values collected, then their median (np.median)."""

    name = "median"

    def lower(self, c):
        k, g = c.k, c.rows
        v, vn = g.value(c.node.value, g.dates_of(k), "r")
        rows_max = g.arg("maxrows", ConstArg(g.max_rows, "the most rows one patient has"))
        if vn == IN_BAND:  # computed per row, nan when missing
            step = f"if {c.test}:\n    x{k} = {v}\n    if x{k} == x{k}:\n        buf{k}[n{k}] = x{k}\n        n{k} += 1"
        else:
            step = f"if {_and(c.test, f'not ({vn})' if vn else 'True')}:\n    buf{k}[n{k}] = {v}\n    n{k} += 1"
        return Piece(scratch=[f"buf{k} = np.empty({rows_max}, dtype=np.float64)"], init=[f"n{k} = 0"], step=[step],
                     finish=[f"{c.out}[t, q] = np.median(buf{k}[:n{k}]) if n{k} else 0.0\n{c.ok}[t, q] = n{k} > 0"])


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


GROUP_MIN = 4  # fewer slots of one codelist each are cheaper tested one by one
SPARSE_MIN = 16  # a value group of counts this large is kept sparse: a patient's rows touch few of its members


def group_kind(node, red: Reducer, spec, codelist: bool = True) -> int | None:
    """The slot's kind in a group, or None when it cannot join one: a group serves exists,
    count, first, last and days_since (first and last of the table's date); a codelist
    group those whose filter is one codelist test."""
    from casefind.rules import ir

    if red.group_kind is None or node.window.kind == "active":
        return None
    if codelist and not (isinstance(node.where, ir.InCodelist) and isinstance(node.where.column, ir.Column)):
        return None
    by_date = isinstance(node.value, ir.Column) and node.value.column == spec.sort_date
    if red.name in ("first", "last") and not by_date:
        return None
    return red.group_kind


def _csr(sets: list[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Members of each code (CSR: ``ids[ptr[c]:ptr[c + 1]]``) from each member's codes."""
    per_code = np.zeros(size + 1, dtype=np.int64)
    for codes in sets:
        np.add.at(per_code, codes + 1, 1)
    ptr = np.cumsum(per_code)
    ids = np.empty(int(ptr[-1]), dtype=np.int64)
    fill = ptr[:-1].copy()
    for m, codes in enumerate(sets):
        ids[fill[codes]] = m
        fill[codes] += 1
    return ptr, ids


def _group_lookup(j: int, g: RowExprs, kinds: list[int], sets: list[np.ndarray], size: int, what: str,
                  code: str, has: str, day: str, out: str, ok: str, sparse: bool = False) -> Piece:
    """One look-up per row that passes ``has``: the row's code ``code`` (an index below
    ``size``) to the members whose ``sets`` hold it (casefind_native.runtime.group_row).
    Every member's output is first written as if it had no rows, once per work item
    (group_fill); per patient and period only the members its rows touched are reset and
    written (group_reset, group_emit), so a group's cost follows its rows, not its size;
    where no row touched one (most patients in most periods) neither is called (a call
    passing a dozen arrays costs more than the loop it would run). ``sparse`` (a group of
    counts): no outputs are written, but each touched member's count is recorded
    (runtime.group_emit_sparse) and the records returned by the kernel (SparseGroupOut)."""
    ptr, ids = _csr(sets, size)
    gp = g.arg(f"gptr{j}", ConstArg(ptr, f"group {j} ({what}): members of each code"))
    gm = g.arg(f"gmem{j}", ConstArg(ids))
    gk = g.arg(f"gkind{j}", ConstArg(np.array(kinds, dtype=np.int64)))
    state = ", ".join(f"g{x}{j}" for x in ("cnt", "nd", "first", "last"))
    scratch = [f"g{x}{j} = np.zeros({gk}.shape[0], dtype=np.int64)" for x in ("cnt", "nd", "first", "last")]
    scratch += [f"gtouch{j} = np.zeros({gk}.shape[0] + 1, dtype=np.int64)  # how many, then which members"]
    if sparse:
        scratch += [f"sbuf{j} = np.empty((3, rt.SPARSE_START), dtype=np.int64)  # the counts that are not 0",
                    f"sn{j} = 0"]
        emit = f"sbuf{j}, sn{j} = rt.group_emit_sparse(gtouch{j}, gcnt{j}, sbuf{j}, sn{j}, t, q, nper)"
    else:
        scratch += [f"rt.group_fill({gk}, {day}, {out}, {ok}, q0, q1)"]
        emit = f"rt.group_emit({gk}, gtouch{j}, {state}, {day}[t], {out}, {ok}, t, q)"
    return Piece(
        scratch=scratch,
        init=[f"if gtouch{j}[0]:\n    rt.group_reset(gtouch{j}, gcnt{j}, gnd{j})"],
        step=[f"if {has}:\n    rt.group_row({gp}, {gm}, {code}, {g.date}[r], {state}, gtouch{j})"],
        finish=[f"if gtouch{j}[0]:\n    {emit}"])


class CodelistGroup:
    """Slots in one loop that each test one codelist on the same code column (QOF registers:
    thirty codelists over diagnoses). Instead of thirty tests per row, one look-up of the
    row's code in a map from code to the members whose codelist holds it. The source does
    not grow with the members, so any number of them compiles once."""

    def lower(self, j: int, g: RowExprs, members: list, column: str, system: int | None, day: str,
              out: str, ok: str) -> Piece:
        """``members``: (kind, codelist) of each, in output order."""
        sets = [np.flatnonzero(g.lookup(cl)) for _, cl in members]
        code = g.col(column)
        has = f"{code}[r] >= 0"
        if system is not None:
            has = f"{g.col(g.enc[column]['system_column'])}[r] == {system} and {has}"
        names = ", ".join(cl.name for _, cl in members)
        return _group_lookup(j, g, [k for k, _ in members], sets, len(g.lookup(members[0][1])),
                             f"codelists {names}", f"{code}[r]", has, day, out, ok)


class ValueGroup:
    """Slots in one loop whose filters are the same test and ``column == <a constant>``, one
    constant each (a KPI split by provider: one count per provider_code). One look-up of
    the row's value instead of a test per member, so the source does not grow with the
    number of constants (sixty providers compile as six do). A group of SPARSE_MIN counts
    or more is kept sparse: a patient sees few of sixty providers, so its counts are
    recorded where they are not 0 rather than written for every member, period and patient
    (a smaller one is cheaper dense: each member is then a view of the group's array)."""

    def lower(self, j: int, g: RowExprs, kinds: list[int], column: str, codes: list[int], rest: str, day: str,
              out: str, ok: str) -> Piece:
        """``codes``: each member's constant as the column's index (< 0: not in the store)."""
        size = len(g.labels(g.spec.column(column)))
        sets = [np.array([c] if 0 <= c < size else [], dtype=np.int64) for c in codes]
        v = g.col(column)
        has = _and(rest, f"{v}[r] >= 0")
        return _group_lookup(j, g, kinds, sets, size, f"{column} is one of {len(codes)} values",
                             f"{v}[r]", has, day, out, ok, self.sparse(kinds))

    @staticmethod
    def sparse(kinds: list[int]) -> bool:
        return len(kinds) >= SPARSE_MIN and all(k == Count.group_kind for k in kinds)


REDUCERS: dict[str, Reducer] = {r.name: r for r in (
    Exists(), Count(), Sum(), Mean(), Median(), Min(), Max(), First(), Last(), DaysSince(), WeightedCategories(),
    Trend())}
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
