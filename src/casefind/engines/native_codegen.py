"""Lower the plan's slots for one table to a ``ScanProgram``, and render it as a Numba kernel.

``RowExprs`` turns row filters and row values into Python expressions over the kernel's
arguments (typed: scan_program's ColumnArg, CodelistArg, DaysArg ...); each slot's reducer
(engines/reducers.py) writes its pieces; ``lower`` cuts each patient's rows at the window
bounds and groups the slots that read the same rows into one loop. Lowering is pure (it
reads the store's dictionaries, nothing per patient): the engine turns the arguments into
arrays. Generated code is plain Python that a reader can follow (``casefind explain``
prints it); the helpers it calls live in casefind_native.runtime, compiled (and cached)
once, not per kernel.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.util
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from casefind.contract import TABLES
from casefind.contract.dates import NULL_DAY, shift_date, to_day
from casefind.engines.reducers import (
    GROUP_MIN,
    IN_BAND,
    CodelistGroup,
    SlotContext,
    ValueGroup,
    group_kind,
    reducer_for,
)
from casefind.engines.scan_program import (
    Bound,
    CodelistArg,
    ColumnArg,
    ConstArg,
    DaysArg,
    GroupOutArg,
    GroupValidArg,
    OffsetsArg,
    OutArg,
    PatientsArg,
    PatientValueArg,
    PeriodsArg,
    RowBlock,
    ScanProgram,
    SlotProgram,
    SparseGroupOut,
    SpellArg,
    ValidArg,
    render,
)
from casefind.plan import Slot, bind_days, constant_date
from casefind.rules import ir

NULL = int(NULL_DAY)


@dataclass
class KernelSource:
    """A scan's program and its rendered source."""

    program: ScanProgram
    source: str

    @property
    def name(self) -> str:
        return self.program.name

    @property
    def args(self):
        return list(self.program.args.items())


class RowExprs:
    """Row filters and values as Python expressions over the kernel's arguments."""

    def __init__(self, table: str, store, period_days: tuple = (None,)):
        self.table = table
        self.store = store
        self.spec = TABLES[table]
        self.enc = store.table(table).encodings
        self.args: dict[str, object] = {}
        self.period_days = period_days  # each period's days (None: no KPI period)
        self.slot_dates: list[tuple[dt.date, ...]] = []  # each slot's date per period
        self.numbered = False  # codelist arguments numbered, not named (see codelist_arg)
        self.codelists: dict[ir.Codelist, str] = {}
        self.date = self.col(self.spec.sort_date)

    def dates_of(self, k: int) -> tuple[dt.date, ...]:
        return self.slot_dates[k]

    def days(self, ds: tuple[dt.date, ...], months=0, days=0, what: str = "") -> str:
        """A DaysArg: per period, its date ``ds[t]`` moved back by months and days."""
        values = tuple(to_day(shift_date(d, -bind_days(months, p), -bind_days(days, p)))
                       for d, p in zip(ds, self.period_days))
        return self.days_arg(values, what)

    def days_arg(self, values: tuple[int, ...], what: str = "") -> str:
        """The DaysArg of these day numbers (one per period), shared by all that need them."""
        for name, a in self.args.items():
            if isinstance(a, DaysArg) and a.days == values:
                return name
        return self.arg(f"d{sum(isinstance(a, DaysArg) for a in self.args.values())}", DaysArg(values, what))

    @functools.cached_property
    def max_rows(self) -> np.int64:
        return np.int64(np.diff(self.store.table(self.table).offsets).max(initial=0))

    def month_bounds(self, k: int, months: int) -> np.ndarray:
        """Per period: [D, D - 1 month, ..., D - months] as day numbers (a trend's buckets)."""
        return np.array([[to_day(shift_date(d, -i)) for i in range(months + 1)] for d in self.dates_of(k)],
                        dtype=np.int64)

    def arg(self, name: str, value) -> str:
        self.args.setdefault(name, value)
        return name

    def col(self, column: str) -> str:
        return self.arg(f"c_{column}", ColumnArg(column))

    # --- row-level expressions: (python expression, expression that is True when null) ---
    # The null part is None (never missing), a test, or IN_BAND: the value is a float that
    # is nan when missing (row arithmetic, see casefind_native.runtime), tested by consumers.
    def value(self, n: ir.Node, d: tuple, r: str = "r") -> tuple[str, str | None]:
        if isinstance(n, ir.Column):
            c = self.spec.column(n.column)
            a = self.col(n.column)
            null = {"date": f"{a}[{r}] == {NULL}", "float": f"np.isnan({a}[{r}])",
                    "int": f"{a}[{r}] == 0", "spell": f"{a}[{r}] == 0"}.get(c.kind, f"{a}[{r}] < 0")
            return f"{a}[{r}]", null
        if isinstance(n, (ir.Const, ir.Param)):
            if n.type is ir.T.DATE:
                return str(to_day(n.value)), None
            if n.type is ir.T.BOOL:
                return ("True" if n.value else "False"), None
            if n.type in ir.NUMERIC:
                return repr(float(n.value) if n.type is ir.T.FLOAT else int(n.value)), None
            raise NotImplementedError("text is compared by its dictionary index (encode_const)")
        if n.domain.per_patient:  # a per-patient value used in a row filter: precomputed
            return self.patient_value(n, d)
        if n.type is ir.T.BOOL:
            return self.cond(n, d, r), None
        if isinstance(n, ir.Binary) and n.op in ("+", "-", "*", "/"):
            x, y = self.as_float(n.left, d, r), self.as_float(n.right, d, r)
            op = {"+": "add", "-": "sub", "*": "mul", "/": "div"}[n.op]
            out = f"rt.{op}({x}, {y})"
            return (f"rt.whole({out})" if n.type is ir.T.INT else out), IN_BAND
        if isinstance(n, ir.Neg):
            a, an = self.value(n.operand, d, r)
            return f"(-{a})", an
        if isinstance(n, ir.Func) and n.name == "days_between":  # day numbers: a difference
            (a, an), (b, bn) = self.value(n.args[0], d, r), self.value(n.args[1], d, r)
            return f"({b} - {a})", " or ".join(x for x in (an, bn) if x) or None
        if isinstance(n, ir.Func) and n.name == "weekday":  # ISO: day 0, 1970-01-01, was a Thursday (4)
            a, an = self.value(n.args[0], d, r)
            return f"(({a} + 3) % 7 + 1)", an
        if isinstance(n, ir.Shift):  # a row's date moved by calendar months and days
            if isinstance(n.months, ir.PeriodDays) or isinstance(n.days, ir.PeriodDays):
                raise NotImplementedError("a row's date moved by 'period' (native engine)")
            a, an = self.value(n.date, d, r)
            if not n.months:
                return f"({a} + {n.days})", an
            return f"rt.shift_day({a}, {n.months}, {n.days})", an
        raise NotImplementedError(f"{type(n).__name__} inside a row filter (native engine)")

    def patient_value(self, n: ir.Node, d: tuple) -> tuple[str, str | None]:
        """A per-patient value in a row filter: a date the same for every patient (as_of moved
        by months and days) as one day per period; anything else as (periods x patients)."""
        if n.type is ir.T.DATE:
            days = self.constant_days(n, d)
            if days is not None:
                k = sum(isinstance(a, DaysArg) for a in self.args.values())
                return f"{self.arg(f'd{k}', DaysArg(days, 'a date in a row filter'))}[t]", None
        k = len([a for a in self.args if a.startswith("pv")]) // 2
        va = self.arg(f"pv{k}", PatientValueArg(n, d))
        ok = self.arg(f"pv{k}_ok", PatientValueArg(n, d, valid=True))
        return f"{va}[t, q]", f"not {ok}[t, q]"

    def constant_days(self, n: ir.Node, d: tuple) -> tuple[int, ...] | None:
        """A per-patient date the same for every patient (as_of moved by months and days) as
        its day number in each period; None for a date of the patient's own."""
        try:
            return tuple(to_day(constant_date(n, x, None, p)) for x, p in zip(d, self.period_days))
        except NotImplementedError:
            return None

    def as_float(self, n: ir.Node, d: tuple, r: str) -> str:
        """A numeric row value as a float that is nan when missing."""
        v, vn = self.value(n, d, r)
        if vn == IN_BAND or (isinstance(n, ir.Column) and n.type is ir.T.FLOAT):
            return v
        return f"float({v})" if vn is None else f"(np.nan if {vn} else float({v}))"

    def code_key(self, column: str, r: str) -> tuple[str, str, np.ndarray]:
        """An encoded text, enum or code column's row value as one integer over its code
        space (see code_space), the test that it is present, and every label in that space."""
        c = self.spec.column(column)
        v = self.col(column)
        base, _ = self.code_space(c)
        labels = self.labels(c)
        sys_col = self.enc[column].get("system_column") if c.kind == "code" else None
        if sys_col:
            s_ = self.col(sys_col)
            bs = self.arg(f"base_{column}", ConstArg(base, f"where each code system of {column} starts"))
            return f"{bs}[{s_}[{r}]] + {v}[{r}]", f"{v}[{r}] >= 0 and {s_}[{r}] >= 0", labels
        return f"{v}[{r}]", f"{v}[{r}] >= 0", labels

    def labels(self, c) -> np.ndarray:
        """The labels of an encoded column's code space, in code_space order."""
        e = self.enc[c.name]
        if c.kind == "enum":
            return np.array(e["values"], dtype=object)
        names = [e["dictionary"]] if c.kind == "text" else list(e["dictionaries"].values())
        parts = [self.store.dictionary(x) if x in self.store.manifest["dictionaries"] else np.array([], object)
                 for x in names]
        return np.concatenate(parts).astype(object) if parts else np.array([], object)

    def text_test(self, column_node: ir.Node, values, negate: bool, r: str) -> str:
        """An encoded column's row value is (not) one of ``values``; false when missing."""
        if not isinstance(column_node, ir.Column):  # pragma: no cover - refused when compiling
            raise NotImplementedError("text in a row filter is compared with a column")
        c = self.spec.column(column_node.column)
        if c.kind in ("enum", "text") and len(values) == 1:  # the common case: one index
            a = self.col(c.name)
            b = self.encode_const(column_node, values[0])
            # a null index (-1) equals no encoded constant (>= 0, or -2 if absent)
            return f"({a}[{r}] >= 0 and {a}[{r}] != {b})" if negate else f"({a}[{r}] == {b})"
        key, present, labels = self.code_key(c.name, r)
        wanted = set(values)
        member = np.array([x in wanted for x in labels], dtype=np.bool_)
        k = len([a for a in self.args if a.startswith("member")])
        m = self.arg(f"member{k}", ConstArg(member, f"{column_node.column} is one of {len(wanted)} values"))
        return f"({present} and {'not ' if negate else ''}{m}[{key}])"

    def encode_const(self, column_node: ir.Node, const) -> str:
        """A text constant compared with an encoded column becomes its index (-2: absent)."""
        c = self.spec.column(column_node.column)
        e = self.enc[c.name]
        if c.kind == "enum":
            vals = e["values"]
            return str(vals.index(const) if const in vals else -2)
        dictionary = self.store.dictionary(e["dictionary"]) if e["dictionary"] in self.store.manifest["dictionaries"] \
            else np.array([], object)
        i = np.searchsorted(dictionary, const) if len(dictionary) else 0
        return str(int(i) if i < len(dictionary) and dictionary[i] == const else -2)

    def cond(self, n: ir.Node, d: tuple, r: str = "r") -> str:
        if n.domain.per_patient and not isinstance(n, (ir.Const, ir.Param)):
            v, vn = self.value(n, d, r)  # one value per patient: computed before the scan
            return f"(not ({vn}) and {v})"
        if isinstance(n, ir.Binary) and n.op in ("and", "or"):
            return f"({self.cond(n.left, d, r)} {n.op} {self.cond(n.right, d, r)})"
        if isinstance(n, ir.Not):
            return f"(not {self.cond(n.operand, d, r)})"
        if isinstance(n, ir.InCodelist):
            return self.in_codelist(n, r)
        if isinstance(n, ir.SpellHas):  # worked out per spell before the scan: one lookup per row
            k = len([a for a in self.args if a.startswith("spells")])
            first = self.arg(f"spells{k}", SpellArg(n))
            return f"({first}[{self.col('spell_id')}[{r}]] <= {self.days(d, what='the date spell_has looks up to')}[t])"
        if isinstance(n, ir.IsIn):
            if n.operand.type in (ir.T.TEXT, ir.T.CODE):
                return self.text_test(n.operand, [o.value for o in n.options], False, r)
            a, an = self.value(n.operand, d, r)
            opts = sorted({float(to_day(o.value)) if o.type is ir.T.DATE else float(o.value) for o in n.options})
            if len(opts) <= 8:
                test = " or ".join(f"{a} == {o!r}" for o in opts)
            else:
                table = self.arg(f"in{len(self.args)}", ConstArg(np.array(opts, dtype=np.float64)))
                test = f"rt.in_sorted({table}, {a})"
            return f"(not ({an}) and ({test}))" if an and an != IN_BAND else f"({test})"
        if isinstance(n, ir.Binary):
            op = n.op
            if n.left.type in (ir.T.TEXT, ir.T.CODE) or n.right.type in (ir.T.TEXT, ir.T.CODE):
                fixed = (ir.Const, ir.Param)
                col, const = (n.left, n.right) if isinstance(n.right, fixed) else (n.right, n.left)
                return self.text_test(col, [const.value], op == "!=", r)
            (a, an), (b, bn) = self.value(n.left, d, r), self.value(n.right, d, r)
            nulls = " or ".join(f"({x})" for x in (an, bn) if x and x != IN_BAND)
            test = f"rt.differ({a}, {b})" if op == "!=" and IN_BAND in (an, bn) else f"{a} {op} {b}"
            return f"(not ({nulls}) and {test})" if nulls else f"({test})"
        if isinstance(n, ir.Column) and n.type is ir.T.BOOL:
            return self.value(n, d, r)[0]
        if isinstance(n, (ir.Const, ir.Param)):
            return "True" if n.value else "False"
        raise NotImplementedError(f"{type(n).__name__} as a row condition (native engine)")

    def lookup(self, cl: ir.Codelist) -> np.ndarray:
        """Boolean membership over the code dictionary of the codelist's system."""
        name = f"code.{cl.system}"
        known = name in self.store.manifest["dictionaries"]
        dictionary = self.store.dictionary(name) if known else np.array([], object)
        member = np.zeros(len(dictionary), dtype=np.bool_)
        if len(dictionary):
            idx = np.searchsorted(dictionary, np.array(cl.codes, dtype=object)) if cl.codes else np.array([], int)
            for i, code in zip(idx, cl.codes):
                if i < len(dictionary) and dictionary[i] == code:
                    member[i] = True
            for prefix in cl.prefixes:  # sorted dictionary: a prefix is one contiguous range
                lo = np.searchsorted(dictionary, prefix)
                hi = lo
                while hi < len(dictionary) and str(dictionary[hi]).startswith(prefix):
                    hi += 1
                member[lo:hi] = True
        return member

    def in_codelist(self, n: ir.InCodelist, r: str) -> str:
        cl, column = n.codelist, n.column.column
        code = self.col(column)
        e = self.enc[column]
        if cl.system not in e["dictionaries"]:
            return "False"
        member = self.arg(self.codelist_arg(cl), CodelistArg(cl, self.lookup(cl)))
        sys_test = ""
        if e["system_column"]:
            sys_col = self.col(e["system_column"])
            sys_test = f"{sys_col}[{r}] == {list(e['dictionaries']).index(cl.system)} and "
        return f"({sys_test}{code}[{r}] >= 0 and {member}[{code}[{r}]])"

    def codelist_arg(self, cl: ir.Codelist) -> str:
        """A codelist's argument: named after it (readable kernels), or numbered in order of
        use where ``numbered`` (small kernels of the same shape then share one source, and
        one compile, whichever codelists they test)."""
        if not self.numbered:
            return f"cl_{cl.name}"
        return self.codelists.setdefault(cl, f"cl{len(self.codelists)}")

    def code_space(self, c) -> tuple[np.ndarray, int]:
        """Dictionary-coded values as one range of integers: value v of code system s (the
        system column's index) is base[s] + v; returns (base, size of the range)."""
        e = self.enc[c.name]
        if c.kind == "enum":
            return np.zeros(1, dtype=np.int64), len(e["values"])
        names = [e["dictionary"]] if c.kind == "text" else list(e["dictionaries"].values())
        sizes = [len(self.store.dictionary(d)) if d in self.store.manifest["dictionaries"] else 0 for d in names]
        base = np.zeros(len(sizes), dtype=np.int64)
        base[1:] = np.cumsum(sizes)[:-1]
        return base, int(sum(sizes))

    def categories(self, cl: ir.Codelist):
        """CSR map from code index to category numbers, and each category's weight (the
        largest among its codes) as a whole number of 10^-k units (ir.Codelist.scaled_weights)."""
        names = sorted({c for c in cl.categories if c is not None})
        cat_no = {c: i for i, c in enumerate(names)}
        dname = f"code.{cl.system}"
        known = dname in self.store.manifest["dictionaries"]
        dictionary = self.store.dictionary(dname) if known else np.array([], object)
        per_code: list[set[int]] = [set() for _ in range(len(dictionary))]
        weights = np.zeros(max(len(names), 1), dtype=np.int64)
        if cl.weights:
            for c, w in cl.category_weights.items():
                weights[cat_no[c]] = w
        entries = list(cl.codes) + list(cl.prefixes)
        for i, entry in enumerate(entries):
            cat = cl.categories[i] if cl.categories else None
            if cat is None:
                continue
            is_prefix = i >= len(cl.codes)
            lo = np.searchsorted(dictionary, entry)
            hi = lo
            while hi < len(dictionary) and (
                    str(dictionary[hi]).startswith(entry) if is_prefix else dictionary[hi] == entry):
                per_code[hi].add(cat_no[cat])
                hi += 1
        ptr = np.zeros(len(dictionary) + 1, dtype=np.int64)
        ptr[1:] = np.cumsum([len(s) for s in per_code])
        ids = np.array([c for s in per_code for c in sorted(s)], dtype=np.int32)
        return ptr, ids, weights, len(names)

    @staticmethod
    def above(cl: ir.Codelist, hierarchy) -> tuple[np.ndarray, np.ndarray]:
        """CSR map from category number to the numbers of the categories above it (a
        category does not count when one of those is present too)."""
        names = sorted({c for c in cl.categories if c is not None})
        cat_no = {c: i for i, c in enumerate(names)}
        higher: list[set[int]] = [set() for _ in range(max(len(names), 1))]
        for hi, lo in hierarchy:
            higher[cat_no[lo]].add(cat_no[hi])
        ptr = np.zeros(len(higher) + 1, dtype=np.int64)
        ptr[1:] = np.cumsum([len(s) for s in higher])
        return ptr, np.array([c for s in higher for c in sorted(s)], dtype=np.int64)



def _ago(label: str, months, days) -> str:
    parts = [f"{months} months" if months else "", f"{days} days" if days else ""]
    back = " ".join(str(x) for x in parts if x)
    return f"{label} - {back}" if back else label


class _Windows:
    """Each slot's rows as (first row var, end row var, what), and the bounds they need."""

    def __init__(self, g: RowExprs):
        self.g = g
        self.bounds: dict[tuple, Bound] = {}
        self.order: list[tuple[int, Bound]] = []  # (-day in the first period, bound)
        self.labels: dict[tuple, str] = {}

    def label(self, ds: tuple) -> str:
        return self.labels.setdefault(ds, f"D{len(self.labels)}")

    def upto(self, ds: tuple, months=0, days=0) -> str:
        """The index just past the patient's last row dated on or before D - months - days."""
        what = _ago(self.label(ds), months, days)
        return self.upto_days(self.g.args[self.g.days(ds, months, days, what)].days, what)

    def upto_days(self, values: tuple[int, ...], what: str) -> str:
        """The index just past the patient's last row dated on or before each period's day."""
        arg = self.g.days_arg(values, what)
        if arg not in self.bounds:
            self.bounds[arg] = b = Bound(f"i{len(self.bounds)}", arg, what)
            self.order.append((-values[0], b))
        return self.bounds[arg].var

    def of(self, slot: Slot, ds: tuple) -> tuple[str, str, str]:
        n = slot.node
        label = self.label(ds)
        if isinstance(n, ir.Trend):
            return self.upto(ds, n.months), self.upto(ds), f"({_ago(label, n.months, 0)}, {label}]"
        if n.window.kind == "active":
            return "lo", self.upto(ds), f"active on {label}"
        end = self.upto(ds, *getattr(n.window, "end", (0, 0)))
        if n.window.kind == "range":
            span = f"({_ago(label, *n.window.start)}, {_ago(label, *n.window.end)}]"
            first = self.upto(ds, *n.window.start)
        else:
            first, span = "lo", f"up to {label}"
        implied = self.implied(n, ds)
        if implied is None:
            return first, end, span
        days, why = implied
        if first != "lo":  # the later of the window's start and the filter's, period by period
            days = tuple(map(max, days, self.g.args[self.bound_days(first)].days))
        return self.upto_days(days, f"the last day its filter cannot pass ({why})"), end, f"{span}, from {why}"

    def implied(self, n: ir.Aggregate, ds: tuple) -> tuple[tuple[int, ...], str] | None:
        """Per period, the latest day a row can be sorted on and not pass the filter, where
        the filter needs a date column after a date that is the same for every patient
        ("end_date > as_of - period - 30 days") and the store says how many days at most that
        column falls after the sort date (Store.days_after): a row sorted on or before
        (that date - those days) cannot pass, so a period's loop starts after it instead of
        at the patient's first row. With what it is, for describe; None if nothing bounds it."""
        latest, why = None, []
        for part in _conjuncts(n.where):
            after = _after_a_date(part, self.g.table)
            lag = None if after is None else self.g.store.days_after(self.g.table, after[0])
            if lag is None:
                continue
            column, date, inclusive = after
            days = self.g.constant_days(date, ds)
            if days is None or (len(ds) > 1 and len(set(days)) == 1):  # a fixed date: walked once for all periods
                continue
            lag = _rounded_up(lag)
            days = tuple(x - lag - inclusive for x in days)
            latest = days if latest is None else tuple(map(max, latest, days))
            sort = self.g.spec.sort_date
            why.append(f"{column} {'>=' if inclusive else '>'} a date, at most {lag} days after {sort}")
        return None if latest is None else (latest, "; ".join(why))

    def bound_days(self, var: str) -> str:
        """The DaysArg a bound variable is found with."""
        return next(b.days for b in self.bounds.values() if b.var == var)

    def sorted_bounds(self) -> list[Bound]:
        """Latest bound first: each walk starts where the previous one stopped (the walk is
        right in either direction, quick in this one)."""
        return [b for _, b in sorted(self.order, key=lambda x: (x[0], int(x[1].var[1:])))]


def _conjuncts(n: ir.Node | None):
    """The parts of a filter that must all hold (its top-level ``and``s)."""
    if isinstance(n, ir.And):
        yield from _conjuncts(n.left)
        yield from _conjuncts(n.right)
    elif n is not None:
        yield n


def _after_a_date(n: ir.Node, table: str) -> tuple[str, ir.Node, int] | None:
    """(column, date, 1 if on that date passes too) when ``n`` is a date column of the
    row compared to be after a per-patient date ("end_date > as_of - 30 days")."""
    if isinstance(n, (ir.Gt, ir.Ge)):
        column, date, inclusive = n.left, n.right, isinstance(n, ir.Ge)
    elif isinstance(n, (ir.Lt, ir.Le)):
        column, date, inclusive = n.right, n.left, isinstance(n, ir.Le)
    else:
        return None
    if not (isinstance(column, ir.Column) and column.table == table and column.type is ir.T.DATE
            and date.type is ir.T.DATE and date.domain.per_patient):
        return None
    return column.column, date, int(inclusive)


def _rounded_up(days: int) -> int:
    """A lag at least ``days`` and a power of two (0 for none): looser, so the bounds, and
    with them the kernel's source, are the same for stores whose lags differ a little (the
    shards of one store)."""
    return 0 if days <= 0 else 1 << (days - 1).bit_length()


def _test(g: RowExprs, w: _Windows, slot: Slot, ds: tuple) -> str:
    """The slot's row test: its filter (and, for a register's 'active', an end on or after D)."""
    n = slot.node
    filt = g.cond(n.where, ds) if n.where is not None else "True"
    if isinstance(n, ir.Aggregate) and n.window.kind == "active":
        if g.spec.sort_date != "start_date":  # pragma: no cover - the IR allows registers only
            raise NotImplementedError("'active' needs rows sorted by start date")
        e = g.col("end_date")
        return _and(f"({e}[r] == {NULL} or {e}[r] >= {g.days(ds)}[t])", filt)
    return filt


def _and(*tests: str) -> str:
    kept = [t for t in tests if t != "True"]
    return " and ".join(kept) if kept else "True"


def lower(table: str, slots: list[Slot], store, period_days: tuple = (None,)) -> ScanProgram:
    """The plan's slots of ``table`` as a ScanProgram. Per patient and period it finds the row
    just past each window bound, latest bound first, so a slot visits only the rows inside
    its window and tests no dates. Slots over the same rows share one loop; a slot decided
    by one row (exists, first, last, days_since) alone in its rows stops at the first row
    that decides it. Dates, codelists and sizes are arguments, not literals: the source
    depends on the plan's shape, so another as_of, store or number of periods reuses it."""
    g = RowExprs(table, store, period_days)
    prog = ScanProgram(table, f"scan_{table}", g.date)
    g.args = {"patients": PatientsArg(), "nper": PeriodsArg(), "offsets": OffsetsArg(), **g.args}
    w = _Windows(g)
    reducers = [reducer_for(s.node, g.spec) for s in slots]
    g.slot_dates = [s.dates or (s.as_of,) for s in slots]
    rows = [w.of(s, ds) for s, ds in zip(slots, g.slot_dates)]
    grouped = _codelist_groups(g, slots, reducers, rows)
    by_value = _value_groups(g, slots, reducers, rows, grouped)
    grouped.update({k: (v.group, v.member, v.slots) for k, v in by_value.items()})
    tests = ["(group)" if k in grouped else _test(g, w, s, ds)  # a group's tests are one look-up
             for k, (s, ds) in enumerate(zip(slots, g.slot_dates))]
    readers = Counter((r[0], r[1]) for r, red, s, t in zip(rows, reducers, slots, tests) if red.reads_rows(s.node, t))
    shared: dict[tuple[str, str], RowBlock] = {}
    for k, (slot, red, (first, end, what), test) in enumerate(zip(slots, reducers, rows, tests)):
        stops = red.decided_by_one_row and red.reads_rows(slot.node, test) and readers[(first, end)] == 1
        if k in grouped:
            blk = shared.setdefault((first, end), RowBlock(what, first, end))
            if not any(b is blk for b in prog.blocks):
                prog.blocks.append(blk)
            j, m, members = grouped[k]
            if k in by_value and ValueGroup.sparse([by_value[i].kind for i in members]):  # returned, not passed
                out, ok = f"gout{j}", f"gok{j}"
                prog.returns.setdefault(out, SparseGroupOut(members, f"sbuf{j}", f"sn{j}"))
            else:
                out, ok = g.arg(f"gout{j}", GroupOutArg(members)), g.arg(f"gok{j}", GroupValidArg(members))
            if m == 0 and k in by_value:
                blk.groups.append(_value_piece(g, j, members, slots, by_value, out, ok))
            elif m == 0:
                piece = _group_piece(g, j, [slots[i] for i in members], [reducers[i] for i in members], out, ok)
                blk.groups.append(piece)
            sp = SlotProgram(k, slot, red.name, out, ok if red.has_valid else None, what, member=m)
            blk.slots.append(sp)
            prog.slots.append(sp)
            continue
        if stops:
            blk = RowBlock(what + ", up to the first match", first, end, red.backwards)
            prog.blocks.append(blk)
        elif (first, end) not in shared:
            blk = shared[(first, end)] = RowBlock(what, first, end)
            prog.blocks.append(blk)
        else:
            blk = shared[(first, end)]
        out = g.arg(f"out{k}", OutArg(k, np.dtype(red.dtype).name))
        ok = g.arg(f"ok{k}", ValidArg(k, red.empty_valid)) if red.has_valid else None
        day = g.days(g.slot_dates[k], what=f"the date of slot {k}")
        c = SlotContext(k, slot.node, test, stops, first, end, out, ok, g, day)
        sp = SlotProgram(k, slot, red.name, out, ok, what, piece=red.lower(c))
        sp.labels = c.labels
        blk.slots.append(sp)
        prog.slots.append(sp)
    prog.bounds = w.sorted_bounds()
    for blk in prog.blocks:
        _walk_once(g, w, blk)
    prog.args = g.args
    return prog


def _walk_once(g: RowExprs, w: _Windows, blk: RowBlock) -> None:
    """Rows from the patient's first up to a date, whose tests and values are the same in
    every period, are walked once for all periods: the periods in date order, each one's
    outputs taken where its rows end (every reducer's state is that of the rows so far).
    A loop that stops at its first match, or reads anything per period, is walked per period."""
    steps = [line for p in blk.pieces for line in p.init + p.step]
    bound = re.compile(rf"\b{blk.end}\b")  # a finish that reads the bound itself (count of every row)
    if blk.first != "lo" or blk.backwards or not blk.reads_rows or any("[t" in x or "break" in x for x in steps) \
            or any(bound.search(x) for p in blk.pieces for x in p.finish):
        return
    days = w.bound_days(blk.end)
    order = np.argsort(g.args[days].days, kind="stable")
    blk.walk = (days, g.arg(f"order_{days}", ConstArg(order, f"the periods in the order of {days}")))


def _codelist_groups(g: RowExprs, slots: list[Slot], reducers, rows) -> dict[int, tuple[int, int, tuple]]:
    """Slots that join a codelist group (reducers.CodelistGroup): those of one loop, one
    code column and system and one date whose filter is one codelist test, where there are
    at least GROUP_MIN of them. Per slot: (group number, member number, the group's slots)."""
    keys: dict[tuple, list[int]] = {}
    for k, (slot, red, (first, end, _)) in enumerate(zip(slots, reducers, rows)):
        kind = group_kind(slot.node, red, g.spec) if isinstance(slot.node, ir.Aggregate) else None
        if kind is None:
            continue
        test = slot.node.where
        e = g.enc[test.column.column]
        if test.codelist.system not in e["dictionaries"]:
            continue
        system = list(e["dictionaries"]).index(test.codelist.system) if e["system_column"] else None
        keys.setdefault((first, end, test.column.column, system, g.slot_dates[k]), []).append(k)
    out: dict[int, tuple[int, int, tuple]] = {}
    for ks in keys.values():
        if len(ks) >= GROUP_MIN:
            j = len({v[0] for v in out.values()})
            out.update({k: (j, m, tuple(ks)) for m, k in enumerate(ks)})
    return out


def _group_piece(g: RowExprs, j: int, slots: list[Slot], reducers, out: str, ok: str):
    test = slots[0].node.where
    e = g.enc[test.column.column]
    system = list(e["dictionaries"]).index(test.codelist.system) if e["system_column"] else None
    members = [(group_kind(s.node, red, g.spec), s.node.where.codelist) for s, red in zip(slots, reducers)]
    day = g.days(slots[0].dates or (slots[0].as_of,), what=f"the date of codelist group {j}")
    return CodelistGroup().lower(j, g, members, test.column.column, system, day, out, ok)


def _all(parts: list[ir.Node]) -> ir.Node | None:
    out = None
    for x in parts:
        out = x if out is None else ir.And(out, x)
    return out


def equality_splits(spec, where: ir.Node | None) -> list[tuple[ir.Column, object, tuple[ir.Node, ...]]]:
    """(column, constant, the filter's other parts) for each ``column == constant`` part of
    ``where`` on an encoded text or enum column of the table ``spec``: the tests a value
    group (reducers.ValueGroup) can share out, one look-up per row for all its members.
    Read by the engine's grouping and by the KPIs' chunk sizing (kpis/compute), which must
    count the members as the engine groups them."""
    parts = ir.conjuncts(where)
    out = []
    for i, n in enumerate(parts):
        if not isinstance(n, ir.Eq):
            continue
        col, const = (n.left, n.right) if isinstance(n.right, ir.Const) else (n.right, n.left)
        if isinstance(col, ir.Column) and isinstance(const, ir.Const) and col.column in spec.names \
                and spec.column(col.column).kind in ("text", "enum"):
            out.append((col, const.value, tuple(parts[:i] + parts[i + 1:])))
    return out


class _ValueMember(NamedTuple):
    """A slot's place in a value group: the group's number, its own, the group's slots, its
    kind (reducers.group_kind), the column tested, its constant, and the test all share."""

    group: int
    member: int
    slots: tuple[int, ...]
    kind: int
    column: ir.Column
    value: object
    rest: ir.Node | None


def _value_groups(g: RowExprs, slots: list[Slot], reducers, rows, taken: dict) -> dict[int, _ValueMember]:
    """Slots that join a value group (reducers.ValueGroup): those of one loop and one date
    whose filters are the same test and ``column == c`` for one column, where there are at
    least GROUP_MIN of them (a KPI's count per provider). A filter with several such tests
    joins the largest group it can."""
    options: dict[int, list[tuple]] = {}
    for k, (slot, red, (first, end, _)) in enumerate(zip(slots, reducers, rows)):
        kind = group_kind(slot.node, red, g.spec, False) if isinstance(slot.node, ir.Aggregate) else None
        if k in taken or kind is None:
            continue
        for col, value, others in equality_splits(g.spec, slot.node.where):
            if col.column in g.enc:
                key = (first, end, col.column, _all(list(others)), g.slot_dates[k])
                options.setdefault(k, []).append((key, (kind, col, value)))
    size = Counter(key for opts in options.values() for key, _ in opts)
    keys: dict[tuple, list[tuple[int, tuple]]] = {}
    for k, opts in options.items():
        key, found = max(opts, key=lambda o: size[o[0]])
        keys.setdefault(key, []).append((k, found))
    out: dict[int, _ValueMember] = {}
    j = len({v[0] for v in taken.values()})
    for key, members in keys.items():
        if len(members) >= GROUP_MIN:
            ks = tuple(k for k, _ in members)
            out.update({k: _ValueMember(j, m, ks, *found, key[3]) for m, (k, found) in enumerate(members)})
            j += 1
    return out


def _value_piece(g: RowExprs, j: int, members: tuple[int, ...], slots: list[Slot], by_value: dict,
                 out: str, ok: str):
    first, head = slots[members[0]], by_value[members[0]]
    ds = first.dates or (first.as_of,)
    codes = [int(g.encode_const(head.column, by_value[k].value)) for k in members]
    day = g.days(ds, what=f"the date of value group {j}")
    test = g.cond(head.rest, ds) if head.rest is not None else "True"
    return ValueGroup().lower(j, g, [by_value[k].kind for k in members], head.column.column, codes, test, day,
                              out, ok)


def generate(table: str, slots: list[Slot], store, period_days: tuple = (None,)) -> KernelSource:
    """The scan of ``table`` lowered and rendered (engines/scan_program.py)."""
    prog = lower(table, slots, store, period_days)
    params = ["q0", "q1", *prog.args]
    return KernelSource(prog, render(prog, _kernel_header(prog.name, params)))


@dataclass
class SpellKernel:
    """A kernel for the spell_has tests of one table: per test and spell number, the
    earliest day of a row of the table that passes the test's filter (a filter reads no
    per-patient value, so one pass serves every date: spell_has at D is earliest <= D).
    Every test of the table in one pass over its rows, each row's spell read once."""

    name: str
    source: str
    args: dict


def generate_spell_tests(table: str, nodes: list[ir.SpellHas], store) -> SpellKernel:
    g = RowExprs(table, store)
    g.numbered = True
    g.args = {"patients": PatientsArg(), "offsets": OffsetsArg(), **g.args}
    spell = g.col("spell_id")
    tests = []
    for k, n in enumerate(nodes):
        test = g.cond(n.where, (None,)) if n.where is not None else "True"
        out = g.arg(f"first{k}", SpellArg(n))
        tests += [f"                if day < {out}[s] and {test}:", f"                    {out}[s] = day"]
    name = f"spells_{table}"
    src = [
        *_kernel_header(name, ["q0", "q1", *g.args]),
        "    for q in range(q0, q1):",
        "        p = patients[q]",
        "        for r in range(offsets[p], offsets[p + 1]):",
        f"            s = {spell}[r]",
        "            if s > 0:",
        f"                day = {g.date}[r]",
        *tests,
        "",
    ]
    return SpellKernel(name, "\n".join(src), g.args)


@functools.lru_cache(maxsize=1)
def _runtime_digest() -> str:
    """A hash of the runtime helpers' source, part of every kernel's source: a changed
    runtime changes the kernels' cache key (numba's own cache would not notice)."""
    origin = importlib.util.find_spec("casefind_native.runtime").origin
    return hashlib.sha256(Path(origin).read_bytes()).hexdigest()[:12]


def _kernel_header(name: str, params: list[str]) -> list[str]:
    """The imports and signature every generated kernel starts with (the runtime's digest
    in a comment, so a changed runtime recompiles the cached kernels)."""
    return ["import numba as nb", "import numpy as np",
            f"from casefind_native import runtime as rt  # runtime source {_runtime_digest()}",
            "", "", "@nb.njit(nogil=True, cache=True)", f"def {name}({', '.join(params)}):"]
