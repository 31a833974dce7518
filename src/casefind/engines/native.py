"""The native engine: fused Numba scans per table, then vectorised per-patient expressions.

Semantics are the reference engine's (engines/duckdb_sql.py); spec and property tests hold
the two to identical results. Compiled kernels are cached on disk under the user cache
directory, keyed by a hash of their source, so a second run does not recompile.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs
import pyarrow as pa

from casefind.contract.dates import NULL_DAY, to_day
from casefind.engines.native_codegen import KernelSource, generate
from casefind.plan import Plan, constant_date, make_plan
from casefind.rules import ir
from casefind.store import Store

NULL = int(NULL_DAY)


@dataclass
class Vec:
    """One value per patient and whether it is present."""

    values: np.ndarray
    valid: np.ndarray


def kernel_cache_dir() -> Path:
    env = os.environ.get("CASEFIND_KERNEL_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("casefind")) / "kernels"


def load_kernel(ks: KernelSource):
    """Write the kernel's source under its hash and import it; numba caches the compiled
    code beside it, so the next process with the same plan loads instead of compiling."""
    digest = hashlib.sha256(ks.source.encode()).hexdigest()[:20]
    folder = kernel_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"k_{digest}.py"
    if not path.exists():
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(ks.source)
        os.replace(tmp, path)
    modname = f"casefind_kernel_{digest}"
    module = sys.modules.get(modname)
    if module is None:
        spec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        spec.loader.exec_module(module)
    return getattr(module, ks.name)


def _ymd(days: np.ndarray):
    d = days.astype("datetime64[D]")
    y = d.astype("datetime64[Y]").astype(np.int64) + 1970
    m = d.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (d - d.astype("datetime64[M]")).astype(np.int64) + 1
    return y, m, day


def shift_days(days: np.ndarray, months: int, extra_days: int) -> np.ndarray:
    """Per-patient calendar arithmetic, the day clamped to the month's end."""
    out = days.astype(np.int64)
    if months:
        y, m, d = _ymd(days)
        total = (y * 12 + (m - 1)) + months
        ny, nm = total // 12, total % 12 + 1
        first = (np.array((ny - 1970) * 12 + (nm - 1), dtype="datetime64[M]")).astype("datetime64[D]")
        next_first = (np.array((ny - 1970) * 12 + nm, dtype="datetime64[M]")).astype("datetime64[D]")
        last = (next_first - first).astype(np.int64)
        out = first.astype(np.int64) + np.minimum(d, last) - 1
    return out + extra_days


class NativeEngine:
    def __init__(self, store: Store):
        self.store = store
        self.kernels: dict[str, KernelSource] = {}
        self.slots: dict = {}
        self.cache: dict = {}  # (node, date) -> Vec, for one evaluation
        self.population: ir.Node | None = None

    # --- scans ----------------------------------------------------------------------------
    def run_scans(self, plan: Plan) -> dict:
        results = {}
        for table, slots in plan.scans.items():
            ks = generate(table, slots, self.store, lambda n, d: self._pv(n, d))
            self.kernels[table] = ks
            t = self.store.table(table)
            args, outs = [], {}
            for name, spec in ks.args:
                if isinstance(spec, tuple) and spec and spec[0] == "column":
                    args.append(np.ascontiguousarray(t[spec[1]]))
                elif isinstance(spec, tuple) and spec and spec[0] == "offsets":
                    args.append(t.offsets)
                elif isinstance(spec, tuple) and spec and spec[0] in ("out", "ok"):
                    slot = slots[spec[1]]
                    dtype = np.bool_ if spec[0] == "ok" else self._out_dtype(slot.node)
                    outs[name] = np.zeros(self.store.n_patients, dtype=dtype)
                    args.append(outs[name])
                else:
                    args.append(spec)
            load_kernel(ks)(*args)
            for slot, out, ok in ks.outputs:
                values = outs[out]
                valid = outs[ok] if ok else np.ones(len(values), dtype=np.bool_)
                results[(slot.node, slot.as_of)] = Vec(values, valid)
        return results

    @staticmethod
    def _out_dtype(node) -> type:
        if isinstance(node, ir.Aggregate):
            if node.func == "exists":
                return np.bool_
            if node.func in ("count", "count_distinct", "days_since"):
                return np.int64
        return np.float64

    def _pv(self, n: ir.Node, d: dt.date):
        v = self.eval(n, d)
        values = v.values
        if n.type is ir.T.DATE:
            values = np.where(v.valid, values, NULL).astype(np.int64)
        return np.ascontiguousarray(values), np.ascontiguousarray(v.valid)

    # --- per-patient expressions ----------------------------------------------------------
    def evaluate(self, exprs: dict[str, ir.Node], as_of: dt.date, population: ir.Node | None = None) -> pa.Table:
        self.plan = make_plan(exprs, as_of, population)
        self.population = population
        self.cache = {}  # per-patient values used in row filters are computed once, here too
        self.slots = self.run_scans(self.plan)
        cols = {"patient": pa.array(np.arange(self.store.n_patients, dtype=np.int32))}
        for name, node in exprs.items():
            cols[name] = self.to_arrow(node.type, self.eval(node, as_of))
        return pa.table(cols)

    def to_arrow(self, t: ir.T, v: Vec) -> pa.Array:
        mask = ~v.valid
        if t is ir.T.DATE:
            return pa.array(np.where(v.valid, v.values, 0).astype(np.int32), pa.int32(), mask=mask).cast(pa.date32())
        if t is ir.T.BOOL:
            return pa.array(v.values.astype(bool), mask=mask)
        if t is ir.T.INT:
            return pa.array(np.where(v.valid, v.values, 0).astype(np.int64), mask=mask)
        if t is ir.T.FLOAT:
            return pa.array(np.where(v.valid, v.values, 0).astype(np.float64), mask=mask)
        return pa.array(v.values, pa.string(), mask=mask)

    def n(self) -> int:
        return self.store.n_patients

    def const(self, value, t: ir.T) -> Vec:
        n = self.n()
        if t is ir.T.DATE:
            return Vec(np.full(n, to_day(value), dtype=np.int64), np.ones(n, bool))
        if t is ir.T.TEXT:
            arr = np.empty(n, dtype=object)
            arr[:] = value
            return Vec(arr, np.ones(n, bool))
        return Vec(np.full(n, value), np.ones(n, bool))

    def eval(self, node: ir.Node, d: dt.date) -> Vec:
        key = (node, d)
        if key not in self.cache:
            self.cache[key] = self._eval(node, d)
        return self.cache[key]

    def _eval(self, n: ir.Node, d: dt.date) -> Vec:
        if isinstance(n, (ir.Const, ir.Param)):
            return self.const(n.value, n.type)
        if isinstance(n, ir.AsOf):
            return self.const(d, ir.T.DATE)
        if isinstance(n, ir.Attr):
            return self.attr(n.name, d)
        if isinstance(n, ir.Shift):
            v = self.eval(n.date, d)
            vals = np.where(v.valid, v.values, 0)
            return Vec(shift_days(vals, n.months, n.days), v.valid)
        if isinstance(n, ir.At):
            return self.eval(n.operand, constant_date(n.when, d))
        if isinstance(n, (ir.Aggregate, ir.Trend)):
            v = self.slots[(n, d)]
            return Vec(v.values.astype(np.int64) if n.type is ir.T.DATE else v.values, v.valid)
        if isinstance(n, ir.PopulationRank):
            return self.rank(n, d)
        if isinstance(n, ir.Binary):
            return self.binary(n, d)
        if isinstance(n, ir.Not):
            v = self.eval(n.operand, d)
            return Vec(~(v.values.astype(bool) & v.valid), np.ones(self.n(), bool))
        if isinstance(n, ir.Neg):
            v = self.eval(n.operand, d)
            return Vec(-v.values, v.valid)
        if isinstance(n, ir.IsIn):
            v = self.eval(n.operand, d)
            hit = np.zeros(self.n(), bool)
            for o in n.options:
                hit |= v.values == (to_day(o.value) if o.type is ir.T.DATE else o.value)
            return Vec(hit & v.valid, np.ones(self.n(), bool))
        if isinstance(n, ir.Case):
            return self.case(n, d)
        if isinstance(n, ir.Func):
            return self.func(n, d)
        raise NotImplementedError(f"{type(n).__name__} (native engine)")

    def attr(self, name: str, d: dt.date) -> Vec:
        p = self.store.table("patients")
        n = self.n()
        D = to_day(d)
        yes = np.ones(n, bool)
        if name == "age":
            by, bm, bd = _ymd(p["birth_date"])
            before = (d.month < bm) | ((d.month == bm) & (d.day < bd))
            return Vec(d.year - by - before.astype(np.int64), yes)
        if name == "registered":
            end = p["registration_end"]
            return Vec((p["registration_start"] <= D) & ((end == NULL) | (end >= D)), yes)
        if name == "alive":
            death = p["death_date"]
            return Vec((death == NULL) | (death > D), yes)
        if name in ("birth_date", "death_date", "registration_start", "registration_end"):
            days = p[name].astype(np.int64)
            return Vec(days, days != NULL)
        if name == "imd_decile":
            v = p["imd_decile"].astype(np.int64)
            return Vec(v, v != 0)
        if name == "sex":
            values = np.array(p.encodings["sex"]["values"], dtype=object)
            codes = p["sex"]
            return Vec(values[np.maximum(codes, 0)], codes >= 0)
        practices = self.store.table("practices")
        column = {"practice": "practice_code", "locality": "locality_code", "system": "system_code"}[name]
        codes = np.array(practices.arrow.column(column).to_pylist(), dtype=object)
        return Vec(codes[p["practice"]], yes)

    def binary(self, n: ir.Binary, d: dt.date) -> Vec:
        a, b = self.eval(n.left, d), self.eval(n.right, d)
        yes = np.ones(self.n(), bool)
        if n.op in ("and", "or"):
            x, y = a.values.astype(bool) & a.valid, b.values.astype(bool) & b.valid
            return Vec(x & y if n.op == "and" else x | y, yes)
        valid = a.valid & b.valid
        if n.op in ("==", "!=", "<", "<=", ">", ">="):
            av = np.where(a.valid, a.values, 0) if a.values.dtype != object else a.values
            bv = np.where(b.valid, b.values, 0) if b.values.dtype != object else b.values
            op = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
                  ">": np.greater, ">=": np.greater_equal}[n.op]
            return Vec(op(av, bv).astype(bool) & valid, yes)
        av = np.where(a.valid, a.values, 0).astype(np.float64 if n.type is ir.T.FLOAT else np.int64)
        bv = np.where(b.valid, b.values, 0).astype(np.float64 if n.type is ir.T.FLOAT else np.int64)
        if n.op == "/":
            ok = valid & (bv != 0)
            return Vec(np.divide(av, np.where(ok, bv, 1)), ok)
        return Vec({"+": np.add, "-": np.subtract, "*": np.multiply}[n.op](av, bv), valid)

    def case(self, n: ir.Case, d: dt.date) -> Vec:
        size = self.n()
        text = n.type is ir.T.TEXT
        values = np.empty(size, dtype=object) if text else np.zeros(size, dtype=np.float64)
        valid = np.zeros(size, bool)
        if n.default is not None:
            dv = self.eval(n.default, d)
            values[:] = dv.values
            valid[:] = dv.valid
        for cond, val in reversed(n.whens):  # the first true condition wins
            c = self.eval(cond, d)
            hit = c.values.astype(bool) & c.valid
            v = self.eval(val, d)
            values[hit] = v.values[hit]
            valid[hit] = v.valid[hit]
        if n.type is ir.T.INT:
            values = values.astype(np.int64)
        return Vec(values, valid)

    def func(self, n: ir.Func, d: dt.date) -> Vec:
        args = [self.eval(a, d) for a in n.args]
        if n.name in ("min", "max"):  # least/greatest: missing values are skipped
            stack = np.stack([np.where(a.valid, a.values, np.nan).astype(np.float64) for a in args])
            valid = np.any([a.valid for a in args], axis=0)
            with warnings.catch_warnings():  # all-missing columns: nan, masked by valid
                warnings.simplefilter("ignore", RuntimeWarning)
                out = np.nanmin(stack, axis=0) if n.name == "min" else np.nanmax(stack, axis=0)
            return Vec(np.where(valid, out, 0), valid)
        a = args[0]
        x = np.where(a.valid, a.values, 0).astype(np.float64)
        with np.errstate(all="ignore"):
            if n.name == "logistic":
                return Vec(1.0 / (1.0 + np.exp(-x)), a.valid)
            if n.name == "exp":
                return Vec(np.exp(x), a.valid)
            if n.name == "log":
                return Vec(np.log(x), a.valid)
            if n.name == "abs":
                return Vec(np.abs(a.values), a.valid)
            if n.name == "round":  # half away from zero, as SQL rounds
                return Vec((np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64), a.valid)
            if n.name == "days_between":
                b = args[1]
                return Vec(b.values - a.values, a.valid & b.valid)
        raise NotImplementedError(n.name)

    def rank(self, n: ir.PopulationRank, d: dt.date) -> Vec:
        x = self.eval(n.operand, d)
        if self.population is not None:
            pop = self.eval(self.population, d)
            member = pop.values.astype(bool) & pop.valid
        else:
            member = np.ones(self.n(), bool)
        pool = np.sort(x.values[member & x.valid].astype(np.float64))
        vals = x.values.astype(np.float64)
        if n.kind == "percentile":
            if len(pool) == 0:
                return Vec(np.zeros(self.n()), np.zeros(self.n(), bool))
            below = np.searchsorted(pool, vals, side="left")
            return Vec(100.0 * below / len(pool), x.valid)
        above = len(pool) - np.searchsorted(pool, vals, side="right")
        return Vec((above < n.fraction * len(pool)) & x.valid, np.ones(self.n(), bool))


def evaluate(store: Store, exprs: dict[str, ir.Node], as_of: dt.date,
             population: ir.Node | None = None) -> pa.Table:
    return NativeEngine(store).evaluate(exprs, as_of, population)
