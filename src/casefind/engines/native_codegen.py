"""Generate one fused Numba kernel per table from the plan's slots.

A kernel runs over a range of patients. A patient's rows are in date order, so each window
is a run of rows found from its bounds; the slots over the same rows share one loop, which
tests only their filters. Generated code is plain Python that a reader can follow
(``casefind explain`` prints it); the helpers it calls live in casefind_native.runtime and are
compiled (and cached) once, not per kernel.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.util
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from casefind.contract import TABLES
from casefind.contract.dates import NULL_DAY, to_day
from casefind.contract.dates import shift_date
from casefind.plan import Slot
from casefind.rules import ir

NULL = int(NULL_DAY)
IN_BAND = "nan"  # the null part of a row value that is nan when missing


@dataclass
class KernelSource:
    """Generated source plus the arrays to pass, in argument order."""

    table: str
    name: str
    source: str
    args: list[tuple[str, object]] = field(default_factory=list)   # (arg name, array or spec)
    outputs: list[tuple[Slot, str, str | None]] = field(default_factory=list)  # slot, value arr, valid arr
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # value arr -> labels, for text values


class _Gen:
    def __init__(self, table: str, store, patient_values, spell_values=None):
        self.table = table
        self.store = store
        self.spec = TABLES[table]
        self.enc = store.table(table).encodings
        self.args: dict[str, object] = {}
        self.patient_values = patient_values  # callable(node, date) -> (values, valid) arrays
        self.spell_values = spell_values  # callable(SpellHas, date) -> bool array by spell number
        self.numbered = False  # codelist arguments numbered, not named (see codelist_arg)
        self.codelists: dict[ir.Codelist, str] = {}

    def arg(self, name: str, value) -> str:
        self.args.setdefault(name, value)
        return name

    def col(self, column: str) -> str:
        return self.arg(f"c_{column}", ("column", column))

    # --- row-level expressions: (python expression, expression that is True when null) ---
    # The null part is None (never missing), a test, or IN_BAND: the value is a float that
    # is nan when missing (row arithmetic, see casefind_native.runtime), tested by consumers.
    def value(self, n: ir.Node, d: dt.date, r: str = "r") -> tuple[str, str | None]:
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
            values, valid = self.patient_values(n, d)
            k = len([a for a in self.args if a.startswith("pv")]) // 2
            va = self.arg(f"pv{k}", values)
            ok = self.arg(f"pv{k}_ok", valid)
            return f"{va}[p]", f"not {ok}[p]"
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
        if isinstance(n, ir.Shift):  # a row's date moved by calendar months and days
            a, an = self.value(n.date, d, r)
            if not n.months:
                return f"({a} + {n.days})", an
            return f"rt.shift_day({a}, {n.months}, {n.days})", an
        raise NotImplementedError(f"{type(n).__name__} inside a row filter (native engine)")

    def as_float(self, n: ir.Node, d: dt.date, r: str) -> str:
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
            bs = self.arg(f"base_{column}", base)
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
        m = self.arg(f"member{k}", member)
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

    def cond(self, n: ir.Node, d: dt.date, r: str = "r") -> str:
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
            has = self.arg(f"spells{k}", self.spell_values(n, d))
            return f"{has}[{self.col('spell_id')}[{r}]]"
        if isinstance(n, ir.IsIn):
            if n.operand.type in (ir.T.TEXT, ir.T.CODE):
                return self.text_test(n.operand, [o.value for o in n.options], False, r)
            a, an = self.value(n.operand, d, r)
            opts = sorted({float(to_day(o.value)) if o.type is ir.T.DATE else float(o.value) for o in n.options})
            if len(opts) <= 8:
                test = " or ".join(f"{a} == {o!r}" for o in opts)
            else:
                test = f"rt.in_sorted({self.arg(f'in{len(self.args)}', np.array(opts, dtype=np.float64))}, {a})"
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
        dictionary = self.store.dictionary(name) if name in self.store.manifest["dictionaries"] else np.array([], object)
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
        member = self.arg(self.codelist_arg(cl), self.lookup(cl))
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
        dictionary = self.store.dictionary(dname) if dname in self.store.manifest["dictionaries"] else np.array([], object)
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
            while hi < len(dictionary) and (str(dictionary[hi]).startswith(entry) if is_prefix else dictionary[hi] == entry):
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


def _stamps(k: int, size: str, what: str) -> str:
    """Scratch for a distinct count: stamp[v] == p once patient p's v has been counted."""
    return f"    stamp{k} = np.full({size}, -1, dtype=np.int32)  # the last patient who had each {what}"


def _count_once(k: int, key: str, indent: str) -> str:
    return (f"{indent}if stamp{k}[{key}] != p:\n"
            f"{indent}    stamp{k}[{key}] = p\n"
            f"{indent}    a{k} += 1")


def _and(*tests: str) -> str:
    kept = [t for t in tests if t != "True"]
    return " and ".join(kept) if kept else "True"


def _ago(label: str, months: int, days: int) -> str:
    parts = [f"{months} months" if months else "", f"{days} days" if days else ""]
    back = " ".join(x for x in parts if x)
    return f"{label} - {back}" if back else label


class _Block:
    """The slots that share one loop over a range of a patient's rows."""

    def __init__(self, what: str, rows: str):
        self.what, self.rows = what, rows
        self.slots: list[str] = []
        self.init: list[str] = []
        self.body: list[str] = []
        self.finish: list[str] = []

    def lines(self) -> list[str]:
        name = "slot" if len(self.slots) == 1 else "slots"
        out = [f"        # {name} {', '.join(self.slots)}: {self.what}", *self.init]
        if self.body:
            out.append(f"        for r in {self.rows}:")
            out += self.body
        return out + self.finish


@functools.lru_cache(maxsize=1)
def _runtime_digest() -> str:
    """A hash of the runtime helpers' source, part of every kernel's source: a changed
    runtime changes the kernels' cache key (numba's own cache would not notice)."""
    origin = importlib.util.find_spec("casefind_native.runtime").origin
    return hashlib.sha256(Path(origin).read_bytes()).hexdigest()[:12]


def _searches(date: str, searches: list[tuple[int, int, str]]) -> list[str]:
    """Each window bound's row index, latest bound first, each walk starting where the
    previous one stopped (the walk is right in either direction, quick in this one)."""
    lines, start = [], "hi"
    for _, j, what in sorted(searches):
        lines.append(f"        i{j} = rt.rows_upto({date}, lo, hi, {start}, b{j})  # b{j} = {what}")
        start = f"i{j}"
    return lines


def _kernel_header(name: str, params: list[str]) -> list[str]:
    """The imports and signature every generated kernel starts with (the runtime's digest
    in a comment, so a changed runtime recompiles the cached kernels)."""
    return ["import numba as nb", "import numpy as np",
            f"from casefind_native import runtime as rt  # runtime source {_runtime_digest()}",
            "", "", "@nb.njit(nogil=True, cache=True)", f"def {name}({', '.join(params)}):"]


def generate_spell_test(n: ir.SpellHas, d: dt.date, store, spell_values) -> KernelSource:
    """A kernel that marks each spell (by number) having a row of ``n.table`` that passes
    ``n.where`` dated on or before ``d``: out[s] is True for such a spell s (out[0], no
    spell, stays False). Its output has one entry per spell number, not per patient."""
    g = _Gen(n.table, store, lambda *_: (_ for _ in ()).throw(NotImplementedError("per-patient value")),
             spell_values)
    g.numbered = True
    offsets = g.arg("offsets", ("offsets", None))
    date, spell = g.col(TABLES[n.table].sort_date), g.col("spell_id")
    day = g.arg("D", np.int64(to_day(d)))
    test = g.cond(n.where, d) if n.where is not None else "True"
    out = g.arg("out", ("spells", None))
    name = f"spells_{n.table}"
    src = [
        *_kernel_header(name, ['p0', 'p1', *g.args]),
        "    for p in range(p0, p1):",
        f"        for r in range({offsets}[p], {offsets}[p + 1]):",
        f"            s = {spell}[r]",
        f"            if s > 0 and not {out}[s] and {date}[r] <= {day} and {test}:",
        f"                {out}[s] = True",
        "",
    ]
    return KernelSource(n.table, name, "\n".join(src), list(g.args.items()))


def generate(table: str, slots: list[Slot], store, patient_values, spell_values=None) -> KernelSource:
    """One kernel per table, over patients p0..p1-1 (a work item; the engine runs work items
    on threads, in parallel). Per patient it finds the row just past each window bound,
    latest bound first, so a slot visits only the rows inside its window and tests no dates.
    Slots over the same rows share one loop; an exists/first/last/days_since alone in its
    rows stops at the first row that decides it. Dates, codelists and sizes are arguments,
    not literals: the source depends on the plan's shape (and the order of its window bounds),
    so another as_of or store mostly reuses the compiled kernel."""
    g = _Gen(table, store, patient_values, spell_values)
    spec = TABLES[table]
    offsets = g.arg("offsets", ("offsets", None))
    date = g.col(spec.sort_date)
    labels: dict[dt.date, str] = {}
    bounds: dict[tuple, tuple[str, str]] = {}  # (date, months, days) -> (row index var, day arg)
    searches: list[tuple[int, int, str]] = []  # (-day, bound number, what)
    scratch: list[str] = []
    shared: dict[tuple[str, str], _Block] = {}  # (first row, end row) -> block
    blocks: list[_Block] = []
    outputs = []
    text_labels: dict[str, np.ndarray] = {}  # output array -> labels of the codes it holds (text values)

    def upto(d: dt.date, months: int = 0, days: int = 0) -> tuple[str, str]:
        """The index just past the patient's last row dated on or before D - months - days."""
        key = (d, months, days)
        if key not in bounds:
            j = len(bounds)
            label = labels.setdefault(d, f"D{len(labels)}")
            day = to_day(shift_date(d, -months, -days))
            bounds[key] = (f"i{j}", g.arg(f"b{j}", np.int64(day)))
            searches.append((-day, j, _ago(label, months, days)))
        return bounds[key]

    def window(slot: Slot) -> tuple[str, str, str, str]:
        """(first row, end row, what the rows are, the slot's row test)."""
        n, d = slot.node, slot.as_of
        filt = g.cond(n.where, d) if n.where is not None else "True"
        label = labels.setdefault(d, f"D{len(labels)}")
        if isinstance(n, ir.Trend):
            return upto(d, n.months)[0], upto(d)[0], f"({_ago(label, n.months, 0)}, {label}]", filt
        if n.window.kind == "active":
            if spec.sort_date != "start_date":  # pragma: no cover - the IR allows registers only
                raise NotImplementedError("'active' needs rows sorted by start date")
            end, dk = upto(d)
            e = g.col("end_date")
            return "lo", end, f"active on {label}", _and(f"({e}[r] == {NULL} or {e}[r] >= {dk})", filt)
        end = upto(d, *n.window.end)[0]
        if n.window.kind == "range":
            what = f"({_ago(label, *n.window.start)}, {_ago(label, *n.window.end)}]"
            return upto(d, *n.window.start)[0], end, what, filt
        return "lo", end, f"up to {_ago(label, *n.window.end)}", filt

    windows = [window(slot) for slot in slots]
    funcs = [s.node.func if isinstance(s.node, ir.Aggregate) else "trend" for s in slots]
    # slots that read rows, per range of rows (exists and count without a filter need none)
    readers = Counter((w[0], w[1]) for w, f in zip(windows, funcs)
                      if not (f in ("exists", "count") and w[3] == "True"))

    for k, slot in enumerate(slots):
        n, d, f = slot.node, slot.as_of, funcs[k]
        first, end, what, test = windows[k]
        out = g.arg(f"out{k}", ("out", k))
        ok = None
        # decided by one row and alone in its rows: a loop of its own from the end that
        # decides it, stopping at the first match (else it shares the loop, checking every row)
        brk = f in ("exists", "first", "last", "days_since") and readers[(first, end)] == 1 \
            and not (f == "exists" and test == "True")
        if brk:
            backwards = f in ("last", "days_since")
            rows = f"range({end} - 1, {first} - 1, -1)" if backwards else f"range({first}, {end})"
            b = _Block(f"rows {what}" + (", latest first" if backwards else "") + ", up to the first match", rows)
            blocks.append(b)
        else:
            b = shared.get((first, end))
            if b is None:
                b = shared[(first, end)] = _Block(f"rows {what}", f"range({first}, {end})")
                blocks.append(b)
        b.slots.append(f"{k} ({f})")
        if f == "exists":
            b.init.append(f"        a{k} = False")
            if test == "True":
                b.finish.append(f"        {out}[p] = {end} > {first}")
            elif brk:
                b.body.append(f"            if {test}:\n                a{k} = True\n                break")
                b.finish.append(f"        {out}[p] = a{k}")
            else:
                b.body.append(f"            if not a{k} and {test}:\n                a{k} = True")
                b.finish.append(f"        {out}[p] = a{k}")
        elif f == "count":
            if test == "True":
                b.finish.append(f"        {out}[p] = {end} - {first}")
            else:
                b.init.append(f"        a{k} = 0")
                b.body.append(f"            if {test}:\n                a{k} += 1")
                b.finish.append(f"        {out}[p] = a{k}")
        elif f in ("sum", "mean", "min", "max", "first", "last"):
            encoded = isinstance(n.value, ir.Column) and n.value.type in (ir.T.TEXT, ir.T.CODE)
            if encoded:  # text: its index in the column's code space, named by the labels
                v, present, text_labels[out] = g.code_key(n.value.column, "r")
                vn = f"not ({present})"
            else:
                v, vn = g.value(n.value, d)
            in_band, computed = vn == IN_BAND, v
            if in_band:  # computed per row, nan when missing: computed once, then tested
                v, vn = f"x{k}", None
            ok = g.arg(f"ok{k}", ("ok", k))
            has = f"not ({vn})" if vn else "True"
            b.init.append(f"        a{k} = 0.0\n        n{k} = 0")
            upd = {"sum": f"a{k} += {v}\n                n{k} += 1",
                   "mean": f"a{k} += {v}\n                n{k} += 1",
                   "min": f"a{k} = {v} if n{k} == 0 or {v} < a{k} else a{k}\n                n{k} += 1",
                   "max": f"a{k} = {v} if n{k} == 0 or {v} > a{k} else a{k}\n                n{k} += 1",
                   "first": f"a{k} = {v}\n                n{k} = 1" + ("\n                break" if brk else ""),
                   "last": f"a{k} = {v}\n                n{k} = 1" + ("\n                break" if brk else "")}[f]
            once = f"n{k} == 0" if f == "first" and not brk else "True"
            if in_band:
                nested = upd.replace("\n                ", "\n                    ")
                b.body.append(f"            if {_and(once, test)}:\n                x{k} = {computed}\n"
                              f"                if x{k} == x{k}:\n                    {nested}")
            else:
                b.body.append(f"            if {_and(once, test, has)}:\n                {upd}")
            if f == "sum":
                b.finish.append(f"        {out}[p] = a{k}\n        {ok}[p] = True")
            elif f == "mean":
                b.finish.append(f"        {out}[p] = a{k} / n{k} if n{k} else 0.0\n        {ok}[p] = n{k} > 0")
            else:
                b.finish.append(f"        {out}[p] = a{k}\n        {ok}[p] = n{k} > 0")
        elif f == "days_since":
            ok = g.arg(f"ok{k}", ("ok", k))
            dk = g.arg(f"D{k}", np.int64(to_day(d)))
            b.init.append(f"        a{k} = {NULL}")
            stop = "\n                break" if brk else ""
            b.body.append(f"            if {test}:\n                a{k} = {date}[r]{stop}")
            b.finish.append(f"        {out}[p] = {dk} - a{k}\n        {ok}[p] = a{k} != {NULL}")
        elif f in ("count_distinct", "weighted_categories"):
            if f == "weighted_categories" or n.value.column.startswith("category:"):
                # a category counts once per patient: stamp[category] == p once it is counted
                ptr, ids, weights, ncat = g.categories(n.codelist)
                cp, ci = g.arg(f"catptr{k}", ptr), g.arg(f"catid{k}", ids)
                size = g.arg(f"ncat{k}", np.int64(max(ncat, 1)))
                code = g.col("primary_diagnosis" if table == "activity" else "code")
                scratch.append(_stamps(k, size, "category"))
                b.init.append(f"        a{k} = 0")
                b.body.append(f"            if {_and(test, f'{code}[r] >= 0')}:\n"
                              f"                for j in range({cp}[{code}[r]], {cp}[{code}[r] + 1]):\n"
                              + _count_once(k, f"{ci}[j]", "                    "))
                if f == "weighted_categories":
                    # whole units added in 64 bits, divided once: the double nearest the exact sum
                    w = g.arg(f"weights{k}", weights)
                    sc = g.arg(f"scale{k}", np.float64(10 ** n.codelist.weight_places))
                    if n.hierarchy:
                        hp, hi = (g.arg(f"{x}{k}", a) for x, a in zip(("aboveptr", "above"), g.above(n.codelist, n.hierarchy)))
                        total = f"rt.weighted_hierarchy(stamp{k}, {w}, p, {hp}, {hi})"
                    else:
                        total = f"rt.weighted(stamp{k}, {w}, p)"
                    b.finish.append(f"        {out}[p] = {total} / {sc} if a{k} else 0.0")
                else:
                    b.finish.append(f"        {out}[p] = a{k}")
            elif isinstance(n.value, ir.Column) and g.spec.column(n.value.column).kind in ("code", "text", "enum"):
                # dictionary-coded values: stamp[value] == p once the patient's value is counted
                c = g.spec.column(n.value.column)
                v = g.col(c.name)
                base, size = g.code_space(c)
                bs = g.arg(f"base{k}", base)
                sz = g.arg(f"size{k}", np.int64(max(size, 1)))
                sys_col = g.enc[c.name].get("system_column") if c.kind == "code" else None
                if sys_col:
                    s_ = g.col(sys_col)
                    has, key = f"{v}[r] >= 0 and {s_}[r] >= 0", f"{bs}[{s_}[r]] + {v}[r]"
                else:
                    has, key = f"{v}[r] >= 0", f"{bs}[0] + {v}[r]"
                scratch.append(_stamps(k, sz, "value"))
                b.init.append(f"        a{k} = 0")
                b.body.append(f"            if {_and(test, has)}:\n"
                              f"                x{k} = {key}\n" + _count_once(k, f"x{k}", "                "))
                b.finish.append(f"        {out}[p] = a{k}")
            else:  # other values: collect them, then count the distinct ones
                v, vn = g.value(n.value, d)
                has = f"not ({vn})" if vn else "True"
                rows_max = g.arg("maxrows", np.int64(np.diff(store.table(table).offsets).max(initial=0)))
                scratch.append(f"    buf{k} = np.empty({rows_max}, dtype=np.float64)")
                b.init.append(f"        n{k} = 0")
                b.body.append(f"            if {_and(test, has)}:\n"
                              f"                buf{k}[n{k}] = {v}\n                n{k} += 1")
                b.finish.append(f"        {out}[p] = rt.count_unique(buf{k}[:n{k}])")
        elif f == "trend":
            y = "1.0"
            if n.value is not None:  # a missing value adds nothing (the row still counts)
                yv, yn = g.value(n.value, d)
                y = f"(0.0 if {yn} else {yv})" if yn else yv
            bk = g.arg(f"bounds{k}", np.array([to_day(shift_date(d, -i)) for i in range(n.months + 1)], dtype=np.int64))
            m = g.arg(f"months{k}", np.int64(n.months))
            scratch.append(f"    y{k} = np.zeros({m}, dtype=np.float64)\n    rows{k} = np.zeros({m}, dtype=np.int64)")
            # the monthly buckets are cleared at the patient's first row in the window, so
            # patients with none (most) cost nothing
            b.init.append(f"        t{k} = 0")
            b.body.append(f"            if {test}:\n"
                          f"                if t{k} == 0:\n"
                          f"                    y{k}[:] = 0.0\n                    rows{k}[:] = 0\n"
                          f"                t{k} += 1\n"
                          f"                x{k} = rt.bucket({date}[r], {bk})\n"
                          f"                y{k}[x{k}] += {y}\n                rows{k}[x{k}] += 1")
            b.finish.append(f"        {out}[p] = rt.monthly_slope(y{k}, rows{k}) if t{k} else 0.0")
        else:  # pragma: no cover
            raise NotImplementedError(f)
        outputs.append((slot, out, ok))
    name = f"scan_{table}"
    src = [
        *_kernel_header(name, ["p0", "p1", *g.args]),
        "    # patients p0 <= p < p1: one work item (the engine runs work items on threads);",
        "    # scratch space is per work item",
        *scratch,
        "    for p in range(p0, p1):",
        f"        lo, hi = {offsets}[p], {offsets}[p + 1]  # the patient's rows, in date order",
        *_searches(date, searches),
        *[line for blk in blocks for line in blk.lines()],
        "",
    ]
    return KernelSource(table, name, "\n".join(src), list(g.args.items()), outputs, text_labels)
