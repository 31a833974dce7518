"""Generate one fused Numba kernel per table from the plan's slots.

The kernel walks each patient's rows once (rows are in date order), and for every slot tests
its window and filter and updates its accumulator. Generated code is plain Python that a
reader can follow (``casefind explain`` prints it); helpers it calls live in casefind_native.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from casefind.contract import TABLES
from casefind.contract.dates import NULL_DAY, to_day
from casefind.plan import Slot, shift_date
from casefind.rules import ir

NULL = int(NULL_DAY)


@dataclass
class KernelSource:
    """Generated source plus the arrays to pass, in argument order."""

    table: str
    name: str
    source: str
    args: list[tuple[str, object]] = field(default_factory=list)   # (arg name, array or spec)
    outputs: list[tuple[Slot, str, str | None]] = field(default_factory=list)  # slot, value arr, valid arr


class _Gen:
    def __init__(self, table: str, store, patient_values):
        self.table = table
        self.store = store
        self.spec = TABLES[table]
        self.enc = store.table(table).encodings
        self.args: dict[str, object] = {}
        self.patient_values = patient_values  # callable(node, date) -> (values, valid) arrays

    def arg(self, name: str, value) -> str:
        self.args.setdefault(name, value)
        return name

    def col(self, column: str) -> str:
        return self.arg(f"c_{column}", ("column", column))

    # --- row-level expressions: (python expression, expression that is True when null) ---
    def value(self, n: ir.Node, d: dt.date, r: str = "r") -> tuple[str, str | None]:
        if isinstance(n, ir.Column):
            c = self.spec.column(n.column)
            a = self.col(n.column)
            null = {"date": f"{a}[{r}] == {NULL}", "float": f"np.isnan({a}[{r}])",
                    "int": f"{a}[{r}] == 0"}.get(c.kind, f"{a}[{r}] < 0")
            return f"{a}[{r}]", null
        if isinstance(n, (ir.Const, ir.Param)):
            if n.type is ir.T.DATE:
                return str(to_day(n.value)), None
            if n.type is ir.T.BOOL:
                return ("True" if n.value else "False"), None
            return repr(n.value), None
        if n.domain.per_patient:  # a per-patient value used in a row filter: precomputed
            values, valid = self.patient_values(n, d)
            k = len([a for a in self.args if a.startswith("pv")]) // 2
            va = self.arg(f"pv{k}", values)
            ok = self.arg(f"pv{k}_ok", valid)
            return f"{va}[p]", f"not {ok}[p]"
        if n.type is ir.T.BOOL:
            return self.cond(n, d, r), None
        if isinstance(n, ir.Binary) and n.op in ("+", "-", "*", "/"):
            (a, an), (b, bn) = self.value(n.left, d, r), self.value(n.right, d, r)
            nulls = " or ".join(x for x in (an, bn) if x)
            if n.op == "/":
                nulls = f"{nulls} or {b} == 0" if nulls else f"{b} == 0"
                return f"({a} / {b})", nulls
            return f"({a} {n.op} {b})", nulls or None
        if isinstance(n, ir.Neg):
            a, an = self.value(n.operand, d, r)
            return f"(-{a})", an
        if isinstance(n, ir.Func) and n.name == "days_between":  # day numbers: a difference
            (a, an), (b, bn) = self.value(n.args[0], d, r), self.value(n.args[1], d, r)
            return f"({b} - {a})", " or ".join(x for x in (an, bn) if x) or None
        raise NotImplementedError(f"{type(n).__name__} inside a row filter (native engine)")

    def encode_const(self, column_node: ir.Node, const) -> str:
        """A text constant compared with an encoded column becomes its index (-2: absent)."""
        if not isinstance(column_node, ir.Column):
            raise NotImplementedError("text comparisons in a row filter need a column on the left")
        c = self.spec.column(column_node.column)
        e = self.enc[c.name]
        if c.kind == "enum":
            vals = e["values"]
            return str(vals.index(const) if const in vals else -2)
        if c.kind == "text":
            dictionary = self.store.dictionary(e["dictionary"])
            i = np.searchsorted(dictionary, const) if len(dictionary) else 0
            return str(int(i) if i < len(dictionary) and dictionary[i] == const else -2)
        raise NotImplementedError(f"comparing codes with text: use a codelist ({c.name})")

    def cond(self, n: ir.Node, d: dt.date, r: str = "r") -> str:
        if isinstance(n, ir.Binary) and n.op in ("and", "or"):
            return f"({self.cond(n.left, d, r)} {n.op} {self.cond(n.right, d, r)})"
        if isinstance(n, ir.Not):
            return f"(not {self.cond(n.operand, d, r)})"
        if isinstance(n, ir.InCodelist):
            return self.in_codelist(n, r)
        if isinstance(n, ir.IsIn):
            if n.operand.type in (ir.T.TEXT, ir.T.CODE):
                a, an = self.value(n.operand, d, r)
                opts = [self.encode_const(n.operand, o.value) for o in n.options]
            else:
                (a, an), opts = self.value(n.operand, d, r), [self.value(o, d, r)[0] for o in n.options]
            test = " or ".join(f"{a} == {o}" for o in opts)
            return f"(not ({an}) and ({test}))" if an else f"({test})"
        if isinstance(n, ir.Binary):
            op = n.op
            if n.left.type in (ir.T.TEXT, ir.T.CODE) or n.right.type in (ir.T.TEXT, ir.T.CODE):
                col, const = (n.left, n.right) if isinstance(n.right, ir.Const) else (n.right, n.left)
                a, an = self.value(col, d, r)
                b = self.encode_const(col, const.value)
                test = f"{a} {op} {b}"
                return f"(not ({an}) and {test})" if an else f"({test})"
            (a, an), (b, bn) = self.value(n.left, d, r), self.value(n.right, d, r)
            nulls = " or ".join(f"({x})" for x in (an, bn) if x)
            return f"(not ({nulls}) and {a} {op} {b})" if nulls else f"({a} {op} {b})"
        if isinstance(n, ir.Column) and n.type is ir.T.BOOL:
            return self.value(n, d, r)[0]
        if isinstance(n, (ir.Const, ir.Param)):
            return "True" if n.value else "False"
        if n.domain.per_patient:
            v, vn = self.value(n, d, r)
            return f"(not ({vn}) and {v})"
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
        member = self.arg(f"cl_{cl.name}", self.lookup(cl))
        sys_test = ""
        if e["system_column"]:
            sys_col = self.col(e["system_column"])
            sys_test = f"{sys_col}[{r}] == {list(e['dictionaries']).index(cl.system)} and "
        return f"({sys_test}{code}[{r}] >= 0 and {member}[{code}[{r}]])"

    def categories(self, cl: ir.Codelist):
        """CSR map from code index to category numbers, and each category's weight (the
        largest among its codes)."""
        names = sorted({c for c in cl.categories if c is not None})
        cat_no = {c: i for i, c in enumerate(names)}
        dname = f"code.{cl.system}"
        dictionary = self.store.dictionary(dname) if dname in self.store.manifest["dictionaries"] else np.array([], object)
        per_code: list[set[int]] = [set() for _ in range(len(dictionary))]
        weights = np.full(max(len(names), 1), -np.inf)  # the largest weight among a category's codes
        entries = list(cl.codes) + list(cl.prefixes)
        for i, entry in enumerate(entries):
            cat = cl.categories[i] if cl.categories else None
            if cat is None:
                continue
            w = cl.weights[i] if cl.weights else None
            if w is not None:
                weights[cat_no[cat]] = max(weights[cat_no[cat]], w)
            is_prefix = i >= len(cl.codes)
            lo = np.searchsorted(dictionary, entry)
            hi = lo
            while hi < len(dictionary) and (str(dictionary[hi]).startswith(entry) if is_prefix else dictionary[hi] == entry):
                per_code[hi].add(cat_no[cat])
                hi += 1
        weights[np.isinf(weights)] = 0.0  # a category with no weighted code scores 0
        ptr = np.zeros(len(dictionary) + 1, dtype=np.int64)
        ptr[1:] = np.cumsum([len(s) for s in per_code])
        ids = np.array([c for s in per_code for c in sorted(s)], dtype=np.int32)
        return ptr, ids, weights, len(names)


CHUNK = 1024  # patients per parallel work item


def _indent(lines: list[str]) -> list[str]:
    return ["\n".join("    " + ln for ln in block.split("\n")) for block in lines]


def generate(table: str, slots: list[Slot], store, patient_values) -> KernelSource:
    g = _Gen(table, store, patient_values)
    spec = TABLES[table]
    date = g.col(spec.sort_date)
    offsets = g.arg("offsets", ("offsets", None))
    init, body, finish, outputs, scratch = [], [], [], [], []
    max_hi = []
    for k, slot in enumerate(slots):
        n, d = slot.node, slot.as_of
        D = to_day(d)
        filt = g.cond(n.where, d) if n.where is not None else "True"
        # dates are arguments, not literals: a new as_of reuses the compiled kernel
        if isinstance(n, ir.Trend):
            bounds = np.array([to_day(shift_date(d, -i)) for i in range(n.months + 1)], dtype=np.int32)
            b = g.arg(f"bounds{k}", bounds)
            hi = D
            window = f"d > {b}[{n.months}] and d <= {b}[0]"
        elif n.window.kind == "active":
            start, end = g.col("start_date"), g.col("end_date")
            dk = g.arg(f"D{k}", np.int64(D))
            window = f"{start}[r] <= {dk} and ({end}[r] == {NULL} or {end}[r] >= {dk})"
            hi = D
        else:
            hi = to_day(shift_date(d, -n.window.end[0], -n.window.end[1]))
            window = f"d <= {g.arg(f'hi{k}', np.int64(hi))}"
            if n.window.kind == "range":
                lo = to_day(shift_date(d, -n.window.start[0], -n.window.start[1]))
                window += f" and d > {g.arg(f'lo{k}', np.int64(lo))}"
        max_hi.append(hi)
        out = g.arg(f"out{k}", ("out", k))
        ok = None
        f = n.func if isinstance(n, ir.Aggregate) else "trend"
        comment = f"        # slot {k}: {f} at {d.isoformat()}"
        init.append(comment)
        test = f"{window} and {filt}"
        if f == "exists":
            init.append(f"        a{k} = False")
            body.append(f"            if not a{k} and {test}:\n                a{k} = True")
            finish.append(f"        {out}[p] = a{k}")
        elif f == "count":
            init.append(f"        a{k} = 0")
            body.append(f"            if {test}:\n                a{k} += 1")
            finish.append(f"        {out}[p] = a{k}")
        elif f in ("sum", "mean", "min", "max", "first", "last"):
            v, vn = g.value(n.value, d)
            is_date = n.value.type is ir.T.DATE
            ok = g.arg(f"ok{k}", ("ok", k))
            has = f"not ({vn})" if vn else "True"
            init.append(f"        a{k} = 0.0\n        n{k} = 0")
            upd = {"sum": f"a{k} += {v}", "mean": f"a{k} += {v}",
                   "min": f"a{k} = {v} if n{k} == 0 or {v} < a{k} else a{k}",
                   "max": f"a{k} = {v} if n{k} == 0 or {v} > a{k} else a{k}",
                   "first": f"a{k} = {v} if n{k} == 0 else a{k}",
                   "last": f"a{k} = {v}"}[f]
            body.append(f"            if {test} and {has}:\n                {upd}\n                n{k} += 1")
            if f == "sum":
                finish.append(f"        {out}[p] = a{k}\n        {ok}[p] = True")
            elif f == "mean":
                finish.append(f"        {out}[p] = a{k} / n{k} if n{k} else 0.0\n        {ok}[p] = n{k} > 0")
            else:
                finish.append(f"        {out}[p] = a{k}\n        {ok}[p] = n{k} > 0")
        elif f == "days_since":
            ok = g.arg(f"ok{k}", ("ok", k))
            init.append(f"        a{k} = {NULL}")
            body.append(f"            if {test}:\n                a{k} = d")
            dk = g.arg(f"D{k}", np.int64(D))
            finish.append(f"        {out}[p] = {dk} - a{k}\n        {ok}[p] = a{k} != {NULL}")
        elif f in ("count_distinct", "weighted_categories"):
            if f == "weighted_categories" or n.value.column.startswith("category:"):
                ptr, ids, weights, ncat = g.categories(n.codelist)
                cp, ci = g.arg(f"catptr{k}", ptr), g.arg(f"catid{k}", ids)
                code = g.col("primary_diagnosis" if table == "activity" else "code")
                scratch.append(f"        seen{k} = np.zeros({max(ncat, 1)}, dtype=np.bool_)")
                init.append(f"        seen{k}[:] = False")
                body.append(f"            if {test} and {code}[r] >= 0:\n"
                            f"                for j in range({cp}[{code}[r]], {cp}[{code}[r] + 1]):\n"
                            f"                    seen{k}[{ci}[j]] = True")
                if f == "weighted_categories":
                    w = g.arg(f"weights{k}", weights)
                    finish.append(f"        {out}[p] = rt.weighted(seen{k}, {w})")
                else:
                    finish.append(f"        {out}[p] = seen{k}.sum()")
            else:  # distinct codes (or other values)
                v, vn = g.value(n.value, d)
                key = v
                if n.value.type is ir.T.CODE and g.enc[n.value.column]["system_column"]:
                    key = f"np.int64({g.col(g.enc[n.value.column]['system_column'])}[r]) * 4294967296 + {v}"
                has = f"not ({vn})" if vn else "True"
                rows_max = g.arg("maxrows", np.int64(np.diff(store.table(table).offsets).max(initial=0)))
                scratch.append(f"        buf{k} = np.empty({rows_max}, dtype=np.float64)")
                init.append(f"        n{k} = 0")
                body.append(f"            if {test} and {has}:\n                buf{k}[n{k}] = {key}\n                n{k} += 1")
                finish.append(f"        {out}[p] = rt.count_unique(buf{k}[:n{k}])")
        elif f == "trend":
            y = "1.0" if n.value is None else g.value(n.value, d)[0]
            scratch.append(f"        y{k} = np.zeros({n.months}, dtype=np.float64)\n"
                           f"        rows{k} = np.zeros({n.months}, dtype=np.int64)")
            init.append(f"        y{k}[:] = 0.0\n        rows{k}[:] = 0")
            body.append(f"            if {test}:\n                x = rt.bucket(d, {b})\n"
                        f"                y{k}[x] += {y}\n                rows{k}[x] += 1")
            finish.append(f"        {out}[p] = rt.monthly_slope(y{k}, rows{k})")
        else:  # pragma: no cover
            raise NotImplementedError(f)
        outputs.append((slot, out, ok))
    stop = g.arg("stop", np.int64(max(max_hi) if max_hi else 0))
    params = ", ".join(g.args)
    name = f"scan_{table}"
    src = [
        "import numba as nb",
        "import numpy as np",
        "from casefind_native import runtime as rt",
        "",
        "",
        f"@nb.njit(parallel=True, cache=True)",
        f"def {name}({params}):",
        f"    n = {offsets}.shape[0] - 1",
        f"    # patients in chunks of {CHUNK}, chunks in parallel; scratch space is allocated per chunk",
        f"    for c in nb.prange((n + {CHUNK - 1}) // {CHUNK}):",
        *scratch,
        f"        for p in range(c * {CHUNK}, min(n, (c + 1) * {CHUNK})):",
        f"            lo, hi = {offsets}[p], {offsets}[p + 1]",
        *_indent(init),
        "            for r in range(lo, hi):",
        f"                d = {date}[r]",
        f"                if d > {stop}:  # rows are in date order: nothing later is in any window",
        "                    break",
        *_indent(body),
        *_indent(finish),
        "",
    ]
    return KernelSource(table, name, "\n".join(src), list(g.args.items()), outputs)
