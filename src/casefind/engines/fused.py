"""Per-patient expressions fused into one compiled loop (the native engine's second half).

After the scans, what remains is per patient: ``and``, comparisons, arithmetic, ``case``,
functions, over the scans' values. Done a numpy operation at a time, 12 months of
``triple_aim.yml`` at 1M patients make about 230 temporary arrays per period and chunk, and
that took as long as every scan. Here the expressions of one evaluation become one Numba
loop over patients, each node a local variable: sub-expressions shared by several outputs
are computed once per patient, nothing per node is written to memory.

What the loop cannot compute (aggregations, attributes, ``at``, shifts, ranks, text other
than a ``case`` of fixed labels) is a *leaf*: the numpy path (``NativeEngine.eval``)
computes it and the loop reads it. Semantics are the numpy path's, value for value (tests:
tests/unit/test_fused.py and the property test with fusion forced): every node's value is
0 where it is missing, whole numbers are exact in 64 bits and missing on overflow, decimals
missing when not finite. The kernel's source depends only on the expressions, so one
compile serves every period, chunk and store (cached on disk as the scan kernels are).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from casefind.contract.dates import to_day
from casefind.rules import ir

# patients x periods x fused nodes from which the loop pays for its first compile (numpy below)
FUSE_MIN_WORK = 500_000_000

_KIND = {ir.T.BOOL: "b", ir.T.INT: "i", ir.T.DATE: "i", ir.T.FLOAT: "f"}  # a leaf's array by type
_ZERO = {"b": "False", "i": "np.int64(0)", "f": "0.0"}
_CMP = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
INT_MIN = int(np.iinfo(np.int64).min)

_HELPERS = '''
@nb.njit(inline="always")
def _add(a, b):
    out = np.int64(np.uint64(a) + np.uint64(b))
    return out, ((a ^ out) & (b ^ out)) >= 0


@nb.njit(inline="always")
def _sub(a, b):
    out = np.int64(np.uint64(a) - np.uint64(b))
    return out, ((a ^ b) & (a ^ out)) >= 0


@nb.njit(inline="always")
def _mul(a, b):
    out = np.int64(np.uint64(a) * np.uint64(b))
    if a == 0:
        return out, True
    if a == -1:
        return out, b != INT_MIN
    return out, (out // a == b) and not (b == -1 and a == INT_MIN)


@nb.njit(inline="always")
def _least(acc, have, x, ok):  # decimals: missing and nan values are skipped, as np.nanmin
    if ok and not math.isnan(x):
        return (x if (not have or x < acc) else acc), True
    return acc, have


@nb.njit(inline="always")
def _greatest(acc, have, x, ok):
    if ok and not math.isnan(x):
        return (x if (not have or x > acc) else acc), True
    return acc, have


@nb.njit(inline="always")
def _round(x):  # half away from zero; beyond 64 bits (or nan): missing
    s = 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)
    r = s * np.floor(abs(x) + 0.5)
    if r >= -TWO_63 and r < TWO_63:
        return np.int64(r), True
    return np.int64(0), False
'''


def _literal(n: ir.Const | ir.Param) -> str | None:
    """A constant as Python source of its kernel type, or None when it cannot be one."""
    v = n.value
    if isinstance(v, ir.PeriodDays):  # bound per period: the numpy path binds it
        return None
    if n.type is ir.T.BOOL:
        return "True" if v else "False"
    if n.type is ir.T.INT and isinstance(v, int) and not isinstance(v, bool):
        return f"np.int64({int(v)})" if INT_MIN <= v < 2 ** 63 else None
    if n.type is ir.T.FLOAT and isinstance(v, (int, float)) and math.isfinite(v):
        return repr(float(v))
    if n.type is ir.T.DATE:
        return f"np.int64({to_day(v)})"
    return None



_FUNCS = (ir.Logistic, ir.Exp, ir.Log, ir.Abs, ir.Round, ir.Least, ir.Greatest, ir.DaysBetween, ir.Weekday)
_CONV = {ir.T.INT: "np.int64", ir.T.DATE: "np.int64", ir.T.FLOAT: "float", ir.T.BOOL: "bool"}


@dataclass
class Fusion:
    """The fused loop for some output expressions: its source, the leaves it reads (in
    argument order), the outputs it writes (each into the int, float or bool arrays, by
    type) and a text case's labels (the codes it writes index them)."""

    outputs: list[ir.Node]
    kinds: list[str]
    leaves: list[ir.Node]
    labels: dict[ir.Node, list[str]]
    fused: int
    source: str
    name: str = "fused"


def fusible(n: ir.Node) -> bool:
    """Whether the loop would compute ``n`` itself (rather than read it as a leaf)."""
    return _Fuser().supported(n)


def fuse(outputs: list[ir.Node]) -> Fusion:
    """The loop computing every fusible output (the others are the caller's)."""
    f = _Fuser()
    mine = [n for n in dict.fromkeys(outputs) if f.supported(n) and not isinstance(n, (ir.Const, ir.Param, ir.AsOf))]
    kinds, writes = [], []
    count = {"i": 0, "f": 0, "b": 0}
    for j, n in enumerate(mine):
        v, k = f.var(n)
        kind = "i" if n.type is ir.T.TEXT else _KIND[n.type]
        kinds.append(kind)
        writes += [f"O{kind}{count[kind]}[i] = {v}", f"OK{j}[i] = {k}"]
        count[kind] += 1
    params = "n, D, Ai, Af, Ab, K, Oi, Of, Ob, OK"  # leaves' values by kind (whole, decimal, true/false)
    head = ["import math", "", "import numba as nb", "import numpy as np", "",
            "INT_MIN = np.int64(-9223372036854775808)", "TWO_63 = 2.0 ** 63", _HELPERS, "",
            "@nb.njit(nogil=True, cache=True, error_model=\"numpy\")", f"def fused({params}):"]
    unpack = [f"A{j} = A{kind}[{at}]" for j, (kind, at) in enumerate(leaf_slots(list(f.leaves)))]
    unpack += [f"K{j} = K[{j}]" for j in range(len(f.leaves))]
    unpack += [f"O{kind}{j} = O{kind}[{j}]" for kind in "ifb" for j in range(count[kind])]
    unpack += [f"OK{j} = OK[{j}]" for j in range(len(mine))]
    body = ["    " + line for line in unpack] + ["    for i in range(n):"] + \
           ["        " + line for line in f.lines + writes]
    source = "\n".join(head + body) + "\n"
    labels = {n: f.text_labels[n] for n in mine if n in f.text_labels}
    return Fusion(mine, kinds, list(f.leaves), labels, f.fused, source)


def leaf_slots(leaves: list[ir.Node]) -> list[tuple[str, int]]:
    """Each leaf's argument: its kind's tuple (``i``, ``f`` or ``b``) and its place there
    (one tuple per kind, so each is of one type, which Numba types quickly)."""
    count = {"i": 0, "f": 0, "b": 0}
    slots = []
    for n in leaves:
        kind = _KIND[n.type]
        slots.append((kind, count[kind]))
        count[kind] += 1
    return slots


class _Fuser:
    """Walks the outputs once, writing local variables per node (``v<j>``, and ``k<j>``
    for whether it is present, or the literal ``True``) in the order they are needed."""

    def __init__(self):
        self.leaves: dict[ir.Node, int] = {}
        self.names: dict[ir.Node, tuple[str, str]] = {}
        self.lines: list[str] = []
        self.fused = 0
        self.ok: dict[ir.Node, bool] = {}
        self.text_labels: dict[ir.Node, list[str]] = {}
        self.count = 0

    def fresh(self) -> int:
        self.count += 1
        return self.count

    def supported(self, n: ir.Node) -> bool:
        """Whether the loop computes ``n`` itself (its operands may be leaves)."""
        if n not in self.ok:
            self.ok[n] = self._supported(n)
        return self.ok[n]

    @staticmethod
    def _supported(n: ir.Node) -> bool:
        if n.domain != ir.PATIENT:
            return False
        if isinstance(n, (ir.Const, ir.Param)):
            return _literal(n) is not None
        if isinstance(n, ir.AsOf):
            return True
        if isinstance(n, ir.Case):
            if n.type is ir.T.TEXT:
                values = [v for _, v in n.whens] + ([n.default] if n.default is not None else [])
                return all(isinstance(v, ir.Const) and isinstance(v.value, str) for v in values)
            return n.type in _KIND
        if isinstance(n, ir.Comparison):
            return n.left.type in _KIND and n.right.type in _KIND
        if isinstance(n, ir.IsIn):
            return n.operand.type in (ir.T.INT, ir.T.FLOAT, ir.T.DATE) and \
                all(_literal(o) is not None for o in n.options)
        if isinstance(n, (ir.Logical, ir.Arithmetic, ir.Not, ir.Neg, *_FUNCS)):
            return n.type in _KIND and all(c.type in _KIND for c in ir.children(n))
        return False

    def var(self, n: ir.Node) -> tuple[str, str]:
        """(value, present) of ``n`` as source: names, or literals."""
        if n not in self.names:
            if isinstance(n, (ir.Const, ir.Param)) and self.supported(n):
                self.names[n] = (_literal(n), "True")
            elif isinstance(n, ir.AsOf):
                self.names[n] = ("D", "True")
            else:
                self.names[n] = self.node(n) if self.supported(n) else self.leaf(n)
        return self.names[n]

    def leaf(self, n: ir.Node) -> tuple[str, str]:
        """A value the numpy path computes: read from its array (0 where missing)."""
        j = self.leaves.setdefault(n, len(self.leaves))
        t = self.fresh()
        self.lines += [f"k{t} = K{j}[i]", f"v{t} = A{j}[i]"]
        return f"v{t}", f"k{t}"

    def emit(self, value: str, present: str, zero: str) -> tuple[str, str]:
        """A node's value and presence as locals. Only true/false values are made false
        where missing (``and``, ``not`` and conditions read them so); a number where it is
        missing is whatever it came to, as on the numpy path. No branch: a loop body of
        straight-line code compiles quickly."""
        t = self.fresh()
        self.fused += 1
        if present == "True":
            self.lines.append(f"v{t} = {value}")
            return f"v{t}", "True"
        self.lines += [f"k{t} = {present}", f"v{t} = ({value}) & k{t}" if zero == "False" else f"v{t} = {value}"]
        return f"v{t}", f"k{t}"

    def node(self, n: ir.Node) -> tuple[str, str]:
        if isinstance(n, ir.Logical):
            (a, _), (b, _) = self.var(n.left), self.var(n.right)
            return self.emit(f"({a} != 0) {'&' if n.op == 'and' else '|'} ({b} != 0)", "True", "False")
        if isinstance(n, ir.Comparison):
            (a, ka), (b, kb) = self.var(n.left), self.var(n.right)
            return self.emit(f"({a} {_CMP[n.op]} {b}) & {ka} & {kb}", "True", "False")
        if isinstance(n, ir.Arithmetic):
            return self.arithmetic(n)
        if isinstance(n, ir.Not):
            a, _ = self.var(n.operand)
            return self.emit(f"{a} == 0", "True", "False")
        if isinstance(n, ir.Neg):
            a, ka = self.var(n.operand)
            if n.type is ir.T.INT:
                return self.emit(f"-np.int64({a})", f"{ka} & ({a} != INT_MIN)", "np.int64(0)")
            return self.emit(f"-float({a})", ka, "0.0")
        if isinstance(n, ir.IsIn):
            a, ka = self.var(n.operand)
            hits = " | ".join(f"({a} == {_literal(o)})" for o in n.options) or "False"
            return self.emit(f"({hits}) & {ka}", "True", "False")
        if isinstance(n, ir.Case):
            return self.case(n)
        return self.func(n)

    def arithmetic(self, n: ir.Arithmetic) -> tuple[str, str]:
        (a, ka), (b, kb) = self.var(n.left), self.var(n.right)
        both = f"{ka} & {kb}"
        t = self.fresh()
        if n.type is ir.T.FLOAT:
            a, b = f"float({a})", f"float({b})"
            if n.op == "/":  # missing when dividing by zero (no exception: error_model="numpy")
                self.lines.append(f"w{t} = {a} / {b}")
                return self.emit(f"w{t}", f"{both} & ({b} != 0.0) & math.isfinite(w{t})", "0.0")
            self.lines.append(f"w{t} = {a} {n.op} {b}")
            return self.emit(f"w{t}", f"{both} & math.isfinite(w{t})", "0.0")
        fn = {"+": "_add", "-": "_sub", "*": "_mul"}[n.op]  # exact, missing beyond 64 bits
        self.lines.append(f"w{t}, f{t} = {fn}(np.int64({a}), np.int64({b}))")
        return self.emit(f"w{t}", f"{both} & f{t}", "np.int64(0)")

    def case(self, n: ir.Case) -> tuple[str, str]:
        """The first true condition's value, else the default (missing without one). A text
        case's value is its label's code, labels numbered in the order of the branches
        (whens, then the default), as the numpy path numbers them."""
        text = n.type is ir.T.TEXT
        branches = [*n.whens, (None, n.default)] if n.default is not None else list(n.whens)
        order: dict[str, int] = {}
        if text:
            for _, value in branches:
                order.setdefault(value.value, len(order))
            self.text_labels[n] = list(order)
        zero = "np.int64(0)" if text else _ZERO[_KIND[n.type]]
        t = self.fresh()
        self.lines += [f"c{t} = {zero}", f"e{t} = False"]
        for cond, value in reversed(branches):  # the first true condition wins: written last
            if text:
                v, k = f"np.int64({order[value.value]})", "True"
            else:
                v, k = self.var(value)
                v = f"{_CONV[n.type]}({v})"
            if cond is None:
                self.lines += [f"c{t} = {v}", f"e{t} = {k}"]
            else:
                c, _ = self.var(cond)
                self.lines += [f"if {c} != 0:", f"    c{t} = {v}", f"    e{t} = {k}"]
        return self.emit(f"c{t}", f"e{t}", zero)

    def func(self, n: ir.Func) -> tuple[str, str]:
        args = [self.var(a) for a in n.args]
        a, ka = args[0]
        x = f"float({a})"
        if isinstance(n, (ir.Least, ir.Greatest)):  # missing arguments are skipped
            present = " | ".join(k for _, k in args)
            if n.type is ir.T.INT:
                pick = "min" if isinstance(n, ir.Least) else "max"
                fill = "np.int64(9223372036854775807)" if pick == "min" else "INT_MIN"
                terms = [f"(np.int64({v}) if {k} else {fill})" for v, k in args]
                return self.emit(f"{pick}({', '.join(terms)})" if len(terms) > 1 else terms[0], present, "np.int64(0)")
            t = self.fresh()
            fn = "_least" if isinstance(n, ir.Least) else "_greatest"
            self.lines += [f"m{t} = np.nan", f"h{t} = False"]
            self.lines += [f"m{t}, h{t} = {fn}(m{t}, h{t}, float({v}), {k})" for v, k in args]
            return self.emit(f"m{t}", present, "0.0")
        if isinstance(n, ir.Logistic):
            return self.emit(f"1.0 / (1.0 + math.exp(-{x}))", ka, "0.0")
        if isinstance(n, ir.Exp):
            t = self.fresh()
            self.lines.append(f"x{t} = math.exp({x})")
            return self.emit(f"x{t}", f"{ka} & math.isfinite(x{t})", "0.0")
        if isinstance(n, ir.Log):  # of zero or less: missing
            return self.emit(f"math.log({x} if {x} > 0 else 1.0)", f"{ka} & ({x} > 0)", "0.0")
        if isinstance(n, ir.Abs):
            if n.type is ir.T.INT:
                return self.emit(f"abs(np.int64({a}))", f"{ka} & ({a} != INT_MIN)", "np.int64(0)")
            return self.emit(f"abs({x})", ka, "0.0")
        if isinstance(n, ir.Round):
            if n.args[0].type is ir.T.INT:
                return self.emit(f"np.int64({a})", ka, "np.int64(0)")
            t = self.fresh()
            self.lines.append(f"r{t}, q{t} = _round({x})")
            return self.emit(f"r{t}", f"{ka} & q{t}", "np.int64(0)")
        if isinstance(n, ir.DaysBetween):
            b, kb = args[1]
            return self.emit(f"np.int64({b}) - np.int64({a})", f"{ka} & {kb}", "np.int64(0)")
        if isinstance(n, ir.Weekday):  # day 0 (1970-01-01) was a Thursday, ISO day 4
            return self.emit(f"(np.int64({a}) + 3) % 7 + 1", ka, "np.int64(0)")
        raise NotImplementedError(type(n).__name__)  # pragma: no cover - _supported admits no other
