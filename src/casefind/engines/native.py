"""The native engine: fused Numba scans per table, then vectorised per-patient expressions.

Semantics are the reference engine's (engines/duckdb_sql.py); spec and property tests hold
the two to identical results. Compiled kernels are cached on disk under the user cache
directory, keyed by a hash of their source, so a second run does not recompile.
"""
from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import importlib.util
import itertools
import math
import os
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import platformdirs
import pyarrow as pa

from casefind.contract.dates import NULL_DAY, shift_days, to_day
from casefind.contract.dates import ymd as _ymd
from casefind.engines import fused as fusing
from casefind.engines.base import Engine, block_column, block_members
from casefind.engines.native_codegen import KernelSource, generate, generate_spell_tests
from casefind.engines.scan_program import (
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
    ScanProgram,
    SpellArg,
    ValidArg,
)
from casefind.engines.sparse_groups import SparseCounts, SparseMember
from casefind.plan import Plan, bind_days, constant_date, make_plan
from casefind.rules import ir
from casefind.store import Store

if TYPE_CHECKING:
    from casefind.engines.base import Blocks

NULL = int(NULL_DAY)
_NO_BLOCKS: dict = {}  # never written: "no blocks" as one object, so a plan made without them is reused
INT_MIN = np.iinfo(np.int64).min
TWO_63 = 2.0 ** 63


@dataclass
class Vec:
    """One value per patient and whether it is present. Text comes as dictionary codes:
    ``values`` index ``labels`` (and are 0 where the value is missing)."""

    values: np.ndarray
    valid: np.ndarray
    labels: np.ndarray | None = None

    def text(self) -> np.ndarray:
        """Text values as Python strings (an object array)."""
        if self.labels is None:
            return self.values
        if len(self.labels) == 0:
            return np.full(len(self.values), None, dtype=object)
        return self.labels[self.values]


def kernel_cache_dir() -> Path:
    env = os.environ.get("CASEFIND_KERNEL_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("casefind")) / "kernels"


def _code_of(source: str) -> str:
    """A kernel's source without its comments (which name dates and windows: "D0 - 30
    days"), so kernels that differ only there share one compile. The import line keeps its
    comment: it carries the runtime's digest, which must invalidate the cache."""
    return "\n".join(line if "runtime source" in line else line.split("  # ")[0].rstrip()
                     for line in source.splitlines())


_LOADED: dict[tuple[str, str], object] = {}  # (name, source) -> kernel, in this process


def load_kernel(name: str, source: str):
    """Write the kernel's source under its hash and import it; numba caches the compiled
    code beside it, so the next process with the same plan loads instead of compiling.
    Found again by its source (a KPI run asks once per chunk: hashing 60 kB of source
    each time was a tenth of a second of a run)."""
    kernel = _LOADED.get((name, source))
    if kernel is None:
        kernel = _LOADED[(name, source)] = _import_kernel(name, source)
    return kernel


def _import_kernel(name: str, source: str):
    digest = hashlib.sha256(_code_of(source).encode()).hexdigest()[:20]
    folder = kernel_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"k_{digest}.py"
    if not path.exists():
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(source)
        os.replace(tmp, path)
    modname = f"casefind_kernel_{digest}"
    module = sys.modules.get(modname)
    if module is None:
        spec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        spec.loader.exec_module(module)
    return getattr(module, name)


def sorted_unique(patients) -> np.ndarray:
    """Store indices sorted, each once: as given when they already are (a list's population
    is), since np.unique hashes them (40-100 ms for 156k indices with numpy 2.4)."""
    p = np.asarray(patients, dtype=np.int64)
    return p if p.size < 2 or bool((p[1:] > p[:-1]).all()) else np.unique(p)


SPLIT_WORK = 400_000  # rows + 4 x patients: less is one work item


def scan_threads() -> int:
    """Threads that run kernels: NUMBA_NUM_THREADS (default: the CPU count)."""
    import numba

    return max(1, int(numba.config.NUMBA_NUM_THREADS))


_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (process id, pool): a forked child makes its own


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(scan_threads(), thread_name_prefix="casefind-scan"))
    return _POOL[1]


def work_items(offsets: np.ndarray, periods: int = 1) -> list[tuple[int, int]]:
    """Ranges of patients of about equal work (rows, plus a little per patient, for each
    period): four per thread, so a thread that finishes early takes another."""
    n = len(offsets) - 1

    def work(p: int) -> int:  # the work before patient p
        return (int(offsets[p]) + 4 * p) * periods

    total = work(n)
    k = min(n, 4 * scan_threads()) if total >= SPLIT_WORK else 1
    if k <= 1:
        return [(0, n)]
    cuts = sorted({0, n, *(bisect.bisect_left(range(n + 1), total * j // k, key=work) for j in range(1, k))})
    return list(itertools.pairwise(cuts))


def in_batches(calls: list[tuple]) -> None:
    """Calls (function, *args) that each write outputs of their own and release the GIL
    (numba's nogil), shared out over the scan threads a batch each (every k-th call, so the
    batches cost about the same): the KPI sums of a chunk, hundreds of small loops, on every
    core instead of one."""
    k = min(scan_threads(), len(calls))
    if k <= 1:
        _call_each(calls)
        return
    for f in [_pool().submit(_call_each, calls[i::k]) for i in range(k)]:
        f.result()


def _call_each(calls: list[tuple]) -> None:
    for fn, *args in calls:
        fn(*args)


def _run_calls(calls: list) -> list:
    """Kernel calls (kernel, q0, q1, args): on the thread pool when there are several.
    What each returns (a sparse group's records, or None), in order."""
    if len(calls) > 1 and scan_threads() > 1:
        return [f.result() for f in [_pool().submit(k, q0, q1, *args) for k, q0, q1, args in calls]]
    return [k(q0, q1, *args) for k, q0, q1, args in calls]


class _Rows:
    """A table's columns for the patients evaluated (all, or the ones asked for)."""

    def __init__(self, table, rows: np.ndarray | None):
        self.table, self.rows = table, rows

    def __getitem__(self, name: str) -> np.ndarray:
        col = self.table[name]
        return col if self.rows is None else col[self.rows]


_MALLOC_TUNED = False


def keep_freed_memory() -> None:
    """Let glibc keep freed patient-sized arrays for reuse (once per process).

    Evaluation makes and drops many arrays of one value per patient (8 MB each at 1M
    patients). By default glibc maps each from the OS and unmaps it when freed, so the next
    one is faulted in again page by page: about 1 ms per MB in a virtual machine, more than
    the arithmetic. Serving arrays up to 32 MB from the heap and keeping up to 1 GB freed
    at its top makes the next array reuse the memory. Skipped where the user set glibc's
    MALLOC_* variables, or off glibc."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    if any(k.startswith("MALLOC_") for k in os.environ) or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


class NativeEngine:
    """Evaluates expressions over a store: the plan's scans (one kernel per table and stage),
    then per-patient numpy. ``patients`` (sorted store indices) limits both to those
    patients; ``evaluate_periods`` evaluates several KPI periods in one pass of each scan."""

    def __init__(self, store: Store, patients: np.ndarray | None = None):
        keep_freed_memory()
        self.store = store
        self.rows = None if patients is None else sorted_unique(patients)
        self.kernels: dict[str, KernelSource] = {}
        self.programs: dict[str, ScanProgram] = {}
        self.periods: tuple = ((None, None),)
        self.t = 0  # the period being evaluated
        self.caches: list[dict] = [{}]  # per period: (node, date) -> Vec
        self.slot_sets: list[dict] = [{}]  # per period: (node, date) -> the scan's Vec
        self.group_sets: list[dict] = [{}]  # per period: (node, date) -> (group's counts, member, period)
        self.spell_cache: dict = {}
        self.reach_sets: dict = {}  # (node, date, period days, population) -> reaches()
        self.run_patients: int | None = None  # all the chunks' patients, when evaluated chunk by chunk
        self.population: ir.Node | None = None
        self.plan: Plan | None = None
        self.planned_for: tuple = ()  # what self.plan was made for: (exprs, periods, population)
        self.sources: dict[str, KernelSource] = {}  # self.plan's kernels, by table and stage

    @property
    def cache(self) -> dict:
        return self.caches[self.t]

    @cache.setter
    def cache(self, value: dict) -> None:
        self.caches[self.t] = value

    @property
    def slots(self) -> dict:
        return self.slot_sets[self.t]

    @property
    def period_days(self) -> int | None:
        return self.periods[self.t][1]

    def use_patients(self, rows: np.ndarray) -> None:
        """Evaluate these patients (sorted store indices) from now on; what was computed for
        others is let go."""
        self.rows = np.asarray(rows, dtype=np.int64)
        self.spell_cache = {}
        self._start(self.periods)

    def patient_index(self) -> np.ndarray:
        """The store indices scanned, in output order."""
        return np.arange(self.store.n_patients, dtype=np.int64) if self.rows is None else self.rows

    # --- scans ----------------------------------------------------------------------------
    def run_scans(self, plan: Plan) -> dict:
        """The plan's scans stage by stage: a stage's filters may read the aggregations of
        the stages before it (``self.slots`` holds them by then). Returns the first period's."""
        self._start(plan.periods)
        for stage, scans in enumerate(plan.stages):
            for t, (found, grouped) in enumerate(self.run_stage(scans, stage)):
                self.slot_sets[t].update(found)
                self.group_sets[t].update(grouped)
        return self.slot_sets[0]

    def _start(self, periods) -> None:
        self.periods = tuple(periods)
        self.caches = [{} for _ in self.periods]
        self.slot_sets = [{} for _ in self.periods]
        self.group_sets = [{} for _ in self.periods]
        self.t = 0

    def run_stage(self, scans: dict, stage: int) -> list[tuple[dict, dict]]:
        """Every table's kernel over its work items, all tables' items on one thread pool;
        per period, each slot's values, and where a group's member is a count, the group's
        (members x periods x patients) array and the member's index (``_group_block``)."""
        results: list[dict] = [{} for _ in self.periods]
        grouped: list[dict] = [{} for _ in self.periods]
        calls, outputs = [], []
        days = tuple(p for _, p in self.periods)
        for table, slots in scans.items():
            what = table if not stage else f"{table} (stage {stage + 1})"
            if what not in self.sources:  # made once per plan, whichever patients are scanned
                self.sources[what] = generate(table, slots, self.store, days)
            ks = self.sources[what]
            self.kernels[what], self.programs[what] = ks, ks.program
            self._spell_tests([a.node for a in ks.program.args.values() if isinstance(a, SpellArg)])
            t = self.store.table(table)
            rowless = int(t.offsets[-1]) == 0  # e.g. no reviews recorded yet
            args = [self._arg(a, t, rowless) for a in ks.program.args.values()]
            mine = []
            if not rowless:  # a table without rows needs no kernel (nor its compile)
                kernel = load_kernel(ks.name, ks.source)
                kernel(0, 0, *args)  # compile (or load from the cache) here, not on the pool
                mine = [(kernel, q0, q1, args) for q0, q1 in self._work_items(t.offsets)]
                calls += mine
            outputs.append((ks.program, dict(zip(ks.program.args, args)), len(calls) - len(mine), len(calls)))
        returned = _run_calls(calls)
        shape = (len(self.periods), len(self.patient_index()))
        everyone = np.ones(shape, dtype=np.bool_)
        everyone.flags.writeable = False  # one for every slot that always has a value
        for prog, named, c0, c1 in outputs:  # after the kernels
            for i, (name, out) in enumerate(prog.returns.items()):
                named[name] = SparseCounts.of([r[2 * i:2 * i + 2] for r in returned[c0:c1]], len(out.slots), shape)
            for sp in prog.slots:
                _slot_values(sp, named, everyone, results, grouped)
        return [({key: _as_codes(v) if v.labels is not None else v for key, v in r.items()}, g)
                for r, g in zip(results, grouped)]

    def _work_items(self, offsets: np.ndarray) -> list[tuple[int, int]]:
        if self.rows is None:
            return work_items(offsets, len(self.periods))
        counts = offsets[self.rows + 1] - offsets[self.rows]
        return work_items(np.concatenate([[0], np.cumsum(counts)]), len(self.periods))

    def _arg(self, a, t, rowless: bool):
        """A kernel argument's array (or scalar)."""
        shape = (len(self.periods), len(self.patient_index()))
        if isinstance(a, ColumnArg):
            return np.ascontiguousarray(t[a.column])
        if isinstance(a, OffsetsArg):
            return t.offsets
        if isinstance(a, PatientsArg):
            return self.patient_index()
        if isinstance(a, PeriodsArg):
            return np.int64(len(self.periods))
        if isinstance(a, (OutArg, ValidArg)):  # kernels set every patient; over no rows: 0 / false
            dtype = np.bool_ if isinstance(a, ValidArg) else np.dtype(a.dtype)
            if rowless:
                return (np.ones if isinstance(a, ValidArg) and a.empty else np.zeros)(shape, dtype=dtype)
            return np.empty(shape, dtype=dtype)
        if isinstance(a, GroupOutArg):  # zeroed: group_fill writes only what is not 0 (rowless: 0)
            return np.zeros((len(a.slots), *shape), dtype=np.int64)
        if isinstance(a, GroupValidArg):  # rowless: missing, as the reducers give (read only where it can be)
            full = (len(a.slots), *shape)
            return np.zeros(full, dtype=np.bool_) if rowless else np.empty(full, dtype=np.bool_)
        if isinstance(a, (ConstArg, CodelistArg)):
            return a.value
        if isinstance(a, DaysArg):
            return np.array(a.days, dtype=np.int64)
        if isinstance(a, SpellArg):
            return self._spells(a.node)
        if isinstance(a, PatientValueArg):
            return self._patient_values(a)
        raise TypeError(a)  # pragma: no cover

    def _patient_values(self, a: PatientValueArg) -> np.ndarray:
        """A per-patient value a row filter reads, (periods x patients), each period's
        evaluated with that period's earlier scans."""
        out = []
        for t, d in enumerate(a.dates):
            self.t = t
            values, valid = self._pv(a.node, d)
            out.append(valid if a.valid else values)
        self.t = 0
        return np.ascontiguousarray(np.stack(out))

    def _spells(self, n: ir.SpellHas) -> np.ndarray:
        """Per spell number, the earliest day of a row of ``n.table`` passing ``n.where``
        (the largest int64 where none does; index 0, no spell, never has one)."""
        if n not in self.spell_cache:
            self._spell_tests([n])
        return self.spell_cache[n]

    def _spell_tests(self, nodes: list[ir.SpellHas]) -> None:
        """``_spells`` of every node not yet known, one kernel (one pass) per table."""
        names = self.store.manifest["dictionaries"]
        size = (names["spell"]["size"] if "spell" in names else 0) + 1
        by_table: dict[str, list[ir.SpellHas]] = {}
        for n in dict.fromkeys(nodes):
            if n not in self.spell_cache:
                by_table.setdefault(n.table, []).append(n)
        for table, todo in by_table.items():
            outs = {n: np.full(size, np.iinfo(np.int64).max, np.int64) for n in todo}
            t = self.store.table(table)
            if int(t.offsets[-1]) and size > 1:
                ks = generate_spell_tests(table, todo, self.store)
                args = [outs[a.node] if isinstance(a, SpellArg) else self._arg(a, t, False) for a in ks.args.values()]
                kernel = load_kernel(ks.name, ks.source)
                kernel(0, 0, *args)
                _run_calls([(kernel, q0, q1, args) for q0, q1 in self._work_items(t.offsets)])
            self.spell_cache.update(outs)

    def _pv(self, n: ir.Node, d: dt.date):
        v = self.eval(n, d)
        values = v.values
        if n.type is ir.T.DATE:
            values = np.where(v.valid, values, NULL).astype(np.int64)
        return np.ascontiguousarray(values), np.ascontiguousarray(v.valid)

    # --- per-patient expressions ----------------------------------------------------------
    def evaluate(self, exprs: dict[str, ir.Node], as_of: dt.date, population: ir.Node | None = None) -> pa.Table:
        return self.evaluate_periods(exprs, [(as_of, None)], population)[0]

    def evaluate_periods(self, exprs: dict[str, ir.Node], periods: list[tuple[dt.date, int | None]],
                         population: ir.Node | None = None, blocks: Blocks | None = None) -> list[pa.Table]:
        """``exprs`` at each (date, KPI period days) of ``periods``: one table per period.
        Every scan runs once for all periods; the per-patient expressions then run period
        by period. Called again with the same arguments (for other patients), the plan and
        kernels are reused. ``blocks``: named groups of numeric expressions, each one column
        of fixed-size lists (``block_column``) rather than a column per member."""
        self.scan_periods(exprs, periods, population, blocks)
        return self.period_tables(exprs, blocks)

    def scan_periods(self, exprs: dict[str, ir.Node], periods: list[tuple[dt.date, int | None]],
                     population: ir.Node | None = None, blocks: Blocks | None = None) -> None:
        """``evaluate_periods``' first half: the plan (made once for these arguments) and its
        scans, whose values ``period_tables`` then reads."""
        blocks = _NO_BLOCKS if blocks is None else blocks
        same = self.planned_for and self.planned_for[0] is exprs and self.planned_for[2] is population
        if not same or self.planned_for[1] != tuple(periods) or self.planned_for[3] is not blocks:
            self.plan = make_plan({**exprs, **block_members(blocks)}, periods[0][0], population, periods)
            self.planned_for, self.sources = (exprs, tuple(periods), population, blocks), {}
        self.population = population
        self.run_scans(self.plan)

    def prefuse_periods(self, exprs: dict[str, ir.Node], blocks: Blocks | None = None) -> None:
        """Every period's fusible outputs and block members, after the scans (``prefuse``:
        one loop for all of them per period). Part of ``period_tables``, or run before it
        (on another thread, see evaluate_periods_chunks)."""
        members = [m for nodes in (_NO_BLOCKS if blocks is None else blocks).values() for m in nodes]
        for t, (d, _) in enumerate(self.periods):
            self.t = t
            self.prefuse([*exprs.values(), *members], d)
        self.t = 0

    def period_tables(self, exprs: dict[str, ir.Node], blocks: Blocks | None = None,
                      prefused: bool = False) -> list[pa.Table]:
        """``evaluate_periods``' second half: each period's table from the scans' values
        (``prefused``: prefuse_periods has run)."""
        blocks = _NO_BLOCKS if blocks is None else blocks
        if not prefused:
            self.prefuse_periods(exprs, blocks)
        tables = []
        for t, (d, _) in enumerate(self.periods):
            self.t = t
            table = self._outputs(exprs, d, fuse=False)
            for name, nodes in blocks.items():
                table = table.append_column(name, self._block(nodes, d))
            tables.append(table)
            # the table holds what it needs; let the rest go
            self.caches[t], self.slot_sets[t], self.group_sets[t] = {}, {}, {}
        self.t = 0
        return tables

    def _block(self, nodes: tuple[ir.Node, ...], d: dt.date) -> pa.Array:
        """Numeric expressions as one (patients x members) column of fixed-size lists."""
        return block_column(self._block_rows(nodes, d))

    def _block_rows(self, nodes: tuple[ir.Node, ...], d: dt.date) -> np.ndarray:
        """Numeric expressions as one (patients x members) array, a missing value as 0:
        each member copied whole into its row of a (members x patients) float64 array, handed
        over transposed (a view: block_sums_into reads it a member at a time, in order;
        block_column makes the patient-major copy Arrow needs). Members that are a scan's
        group counts are read from the group instead (``_group_block``)."""
        view = self._group_block(nodes, d)
        if view is not None:
            return view
        rows = np.zeros((len(nodes), self.n()))
        for j, node in enumerate(nodes):
            v = self.eval(node, d)
            if v.valid.all():
                np.copyto(rows[j], v.values, casting="unsafe")
            else:
                np.copyto(rows[j], v.values, where=v.valid, casting="unsafe")
            self.cache.pop((node, d), None)
        return rows.T

    def _group_block(self, nodes: tuple[ir.Node, ...], d: dt.date) -> np.ndarray | None:
        """The block as (patients x members) int64 when every member is a count of a scan's
        group, read from the groups' arrays without evaluating each member: a view when
        they are one group's members in order (a KPI split by sixty providers is one value
        group of a count per provider: no copy, no call per member), else one gather (with
        few providers the group may be the settings of one provider). Else None."""
        found = [self.group_sets[self.t].get((node, d)) for node in nodes]
        if not found or None in found:
            return None
        counts, first, t = found[0]
        if isinstance(counts, SparseCounts) and all(c is counts and i == t for c, _, i in found):
            return counts.block(t, [m for _, m, _ in found])
        if all(c is counts and m == first + j and i == t for j, (c, m, i) in enumerate(found)):
            return counts[first:first + len(nodes), t].T
        return np.stack([c.member(m, i) if isinstance(c, SparseCounts) else c[m, i] for c, m, i in found]).T

    def period_values(self, exprs: dict[str, ir.Node], blocks: Blocks | None = None,
                      prefused: bool = False) -> list[tuple[dict, dict]]:
        """``period_tables`` without Arrow: per period, each expression's (Vec, type) and
        each block's (patients x members) array, for callers that read numpy (the KPI sums:
        kpis/values.ArrayValues)."""
        blocks = _NO_BLOCKS if blocks is None else blocks
        if not prefused:
            self.prefuse_periods(exprs, blocks)
        out = []
        for t, (d, _) in enumerate(self.periods):
            self.t = t
            vecs = {name: (self.eval(node, d), node.type) for name, node in exprs.items()}
            out.append((vecs, {name: self._block_rows(nodes, d) for name, nodes in blocks.items()}))
            # the values hold what they need; let the rest go
            self.caches[t], self.slot_sets[t], self.group_sets[t] = {}, {}, {}
        self.t = 0
        return out

    def prefuse(self, nodes: list[ir.Node], d: dt.date) -> None:
        """The fusible ones of ``nodes`` computed at ``d`` by one compiled loop over the
        patients (engines/fused.py) and cached as if evaluated, when there are enough
        patients x nodes for the loop to pay for its compile; else nothing (numpy, later)."""
        fusion = _fusion(tuple(nodes))
        if not fusion.outputs or not self.fusing_pays(fusion.fused):
            return
        n = self.n()
        kernel = load_kernel(fusion.name, fusion.source)
        leaves = [self.eval(x, d) for x in fusion.leaves]
        values = {"i": [], "f": [], "b": []}
        for x, v, (kind, _) in zip(fusion.leaves, leaves, fusing.leaf_slots(fusion.leaves)):
            values[kind].append(_leaf_values(x, v))
        valid = tuple(np.ascontiguousarray(v.valid, dtype=np.bool_) for v in leaves)
        out = {kind: tuple(np.empty(n, dtype) for k in fusion.kinds if k == kind)
               for kind, dtype in (("i", np.int64), ("f", np.float64), ("b", np.bool_))}
        ok = tuple(np.empty(n, np.bool_) for _ in fusion.outputs)
        kernel(n, np.int64(to_day(d)), *(tuple(values[k]) for k in "ifb"), valid, out["i"], out["f"], out["b"], ok)
        taken = {"i": 0, "f": 0, "b": 0}
        for node, kind, present in zip(fusion.outputs, fusion.kinds, ok):
            got = out[kind][taken[kind]]
            taken[kind] += 1
            labels = fusion.labels.get(node)
            if labels is not None:
                text = np.empty(len(labels), dtype=object)
                text[:] = labels
                self.cache[(node, d)] = Vec(got.astype(np.int32), present, text)
            else:
                self.cache[(node, d)] = Vec(got, present)

    def fusing_pays(self, nodes: int) -> bool:
        """Whether the evaluation's patients x periods x fused nodes reach FUSE_MIN_WORK:
        below it, a first run's compile (3.5 s for triple_aim.yml's 102 nodes, once per
        machine) costs more than the loop saves (about 2.5 ns a node and patient)."""
        patients = self.run_patients or self.n()
        return patients * len(self.periods) * nodes >= fusing.FUSE_MIN_WORK

    def _outputs(self, exprs: dict[str, ir.Node], as_of: dt.date, fuse: bool = True) -> pa.Table:
        if fuse:
            self.prefuse(list(exprs.values()), as_of)
        cols = {"patient": pa.array(self.patient_index().astype(np.int32))}
        # an output's sub-expressions are computed once (memoised per node and date) and let
        # go after the last output that needs them: new columns then reuse freed memory. Each
        # key is looked at when it is made and after its last use, not after every output
        # (a KPI split by 60 providers has hundreds of outputs: that was quadratic)
        last_use: dict = {}
        for i, node in enumerate(exprs.values()):
            last_use.update(dict.fromkeys(self.reaches(node, as_of), i))
        drop_after: list[list] = [[] for _ in exprs]
        for key, i in last_use.items():
            drop_after[i].append(key)
        for i, (name, node) in enumerate(exprs.items()):
            before = len(self.cache)
            cols[name] = self.to_arrow(node.type, self.eval(node, as_of))
            made = list(itertools.islice(reversed(self.cache), len(self.cache) - before))
            for key in drop_after[i] + [k for k in made if last_use.get(k, -1) < i]:
                if key not in self.sticky:
                    self.cache.pop(key, None)
        return pa.table(cols)

    sticky = frozenset({"birth ymd"})  # cache entries kept for the whole evaluation

    def reaches(self, node: ir.Node, d: dt.date) -> set:
        """The cache keys evaluating ``node`` at ``d`` uses (the same for every chunk of
        patients: kept, keyed by what they depend on)."""
        key = (node, d, self.period_days, self.population)
        if key not in self.reach_sets:
            self.reach_sets[key] = self._reaches(node, d)
        return self.reach_sets[key]

    def _reaches(self, node: ir.Node, d: dt.date) -> set:
        keys, stack = set(), [(node, d)]
        while stack:
            n, d = stack.pop()
            if (n, d) in keys:
                continue
            keys.add((n, d))
            if isinstance(n, ir.At):
                stack.append((n.operand, constant_date(n.when, d, None, self.period_days)))
            elif isinstance(n, ir.PopulationRank):
                keys.add(("standing", n.operand, d))
                if self.population is not None:
                    stack.append((self.population, d))
            if not isinstance(n, (ir.Aggregate, ir.Trend)):
                stack.extend((c, d) for c in ir.children(n))
        return keys

    def to_arrow(self, t: ir.T, v: Vec) -> pa.Array:
        full = bool(v.valid.all())
        mask = None if full else ~v.valid

        def present(dtype):  # missing values as 0, so that casts cannot overflow
            return (v.values if full else np.where(v.valid, v.values, 0)).astype(dtype, copy=False)

        if t is ir.T.DATE:
            return pa.array(present(np.int32), pa.int32(), mask=mask).cast(pa.date32())
        if t is ir.T.BOOL:
            return pa.array(v.values.astype(bool, copy=False), mask=mask)
        if t is ir.T.INT:
            return pa.array(present(np.int64), mask=mask)
        if t is ir.T.FLOAT:
            return pa.array(present(np.float64), mask=mask)
        if v.labels is not None:  # the codes pick their labels: no string per patient in Python
            if len(v.labels) == 0:
                return pa.nulls(len(v.values), pa.string())
            return pa.array(v.labels, pa.string()).take(pa.array(v.values, mask=mask))
        return pa.array(v.values, pa.string(), mask=mask)

    def n(self) -> int:
        return self.store.n_patients if self.rows is None else len(self.rows)

    def const(self, value, t: ir.T) -> Vec:
        n = self.n()
        if t is ir.T.DATE:
            return Vec(np.full(n, to_day(value), dtype=np.int64), np.ones(n, bool))
        if t is ir.T.TEXT:
            labels = np.empty(1, dtype=object)
            labels[0] = value
            return Vec(np.zeros(n, dtype=np.int32), np.ones(n, bool), labels)
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
            months, days = bind_days(n.months, self.period_days), bind_days(n.days, self.period_days)
            return Vec(shift_days(vals, months, days), v.valid)
        if isinstance(n, ir.At):
            return self.eval(n.operand, constant_date(n.when, d, None, self.period_days))
        if isinstance(n, (ir.Aggregate, ir.Trend)):
            v = self.slots[(n, d)]
            if isinstance(v, SparseMember):
                v = self.slots[(n, d)] = Vec(v.values(), np.ones(self.n(), np.bool_))
            return Vec(v.values.astype(np.int64, copy=False) if n.type is ir.T.DATE else v.values, v.valid, v.labels)
        if isinstance(n, ir.PopulationRank):
            return self.rank(n, d)
        if isinstance(n, ir.RankInPool):
            return self.rank_in_pool(n, d)
        if isinstance(n, ir.Binary):
            return self.binary(n, d)
        if isinstance(n, ir.Not):
            v = self.eval(n.operand, d)
            return Vec(~(v.values.astype(bool) & v.valid), np.ones(self.n(), bool))
        if isinstance(n, ir.Neg):
            v = self.eval(n.operand, d)
            if n.type is ir.T.INT:  # -(-2**63) does not fit: missing, as in SQL
                return Vec(-v.values, v.valid & (v.values != INT_MIN))
            return Vec(-v.values, v.valid)
        if isinstance(n, ir.IsIn):
            return self.is_in(n, d)
        if isinstance(n, ir.Case):
            return self.case(n, d)
        if isinstance(n, ir.Func):
            return self.func(n, d)
        raise NotImplementedError(f"{type(n).__name__} (native engine)")

    def is_in(self, n: ir.IsIn, d: dt.date) -> Vec:
        """``x in (...)`` as one set look-up per label (text) or np.isin (numbers, dates),
        however long the list."""
        v = self.eval(n.operand, d)
        yes = np.ones(self.n(), bool)
        if v.labels is not None:
            wanted = {o.value for o in n.options}
            match = np.array([x in wanted for x in v.labels], dtype=bool)
            hit = match[v.values] if len(match) else np.zeros(self.n(), bool)
            return Vec(hit & v.valid, yes)
        options = np.array([to_day(o.value) if o.type is ir.T.DATE else o.value for o in n.options])
        return Vec(np.isin(v.values, options) & v.valid, yes)

    def attr(self, name: str, d: dt.date) -> Vec:
        p = _Rows(self.store.table("patients"), self.rows)
        n = self.n()
        D = to_day(d)
        yes = np.ones(n, bool)
        if name == "age":
            if "birth ymd" not in self.cache:  # the same at every evaluation date
                self.cache["birth ymd"] = _ymd(p["birth_date"])
            by, bm, bd = self.cache["birth ymd"]
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
            values = np.array(self.store.table("patients").encodings["sex"]["values"], dtype=object)
            codes = p["sex"]
            return Vec(np.maximum(codes, 0).astype(np.int32), codes >= 0, values)
        practices = self.store.table("practices")
        column = {"practice": "practice_code", "locality": "locality_code", "system": "system_code"}[name]
        codes = np.array(practices.arrow.column(column).to_pylist(), dtype=object)
        return Vec(p["practice"].astype(np.int32, copy=False), yes, codes)

    def scalar(self, n: ir.Node):
        """A constant number, date (its day number) or true/false as a scalar, else None:
        operators broadcast it rather than fill a column with it."""
        if isinstance(n, (ir.Const, ir.Param)) and n.type in (ir.T.INT, ir.T.FLOAT, ir.T.BOOL, ir.T.DATE):
            return to_day(n.value) if n.type is ir.T.DATE else n.value
        return None

    def masked(self, n: ir.Node, d: dt.date, dtype=None):
        """(values with missing ones as 0, validity or None when all are valid); a constant
        stays a scalar."""
        c = self.scalar(n)
        if c is not None:
            return (dtype(c) if dtype else c), None
        v = self.eval(n, d)
        values = v.values
        if values.dtype != object and not v.valid.all():
            values = np.where(v.valid, values, 0)
        return (values.astype(dtype, copy=False) if dtype else values), v.valid

    def binary(self, n: ir.Binary, d: dt.date) -> Vec:
        yes = np.ones(self.n(), bool)
        if n.op in ("and", "or"):
            a, b = self.eval(n.left, d), self.eval(n.right, d)
            x, y = a.values.astype(bool, copy=False) & a.valid, b.values.astype(bool, copy=False) & b.valid
            return Vec(x & y if n.op == "and" else x | y, yes)
        if n.op in ("==", "!=") and ir.T.TEXT in (n.left.type, n.right.type):
            return self.text_equal(n, d)
        dtype = None
        if n.op not in ("==", "!=", "<", "<=", ">", ">="):
            dtype = np.float64 if n.type is ir.T.FLOAT else np.int64
        av, a_ok = self.masked(n.left, d, dtype)
        bv, b_ok = self.masked(n.right, d, dtype)
        if a_ok is None and b_ok is None:  # two constants: one of them as a column
            av, valid = np.full(self.n(), av), yes
        else:
            valid = a_ok if b_ok is None else b_ok if a_ok is None else a_ok & b_ok
        if dtype is None:
            op = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
                  ">": np.greater, ">=": np.greater_equal}[n.op]
            return Vec(np.asarray(op(av, bv), dtype=bool) & valid, yes)
        with np.errstate(all="ignore"):
            if n.op == "/":
                ok = valid & (bv != 0)
                out = np.divide(av, np.where(ok, bv, 1))
                return Vec(out, ok & np.isfinite(out))
            out = {"+": np.add, "-": np.subtract, "*": np.multiply}[n.op](av, bv)
        if n.type is ir.T.INT:
            return Vec(out, valid & ~_int_overflow(n.op, av, bv, out))
        return Vec(out, valid & np.isfinite(out))

    def text_equal(self, n: ir.Binary, d: dt.date) -> Vec:
        """Text ``==``/``!=``: a comparison of each label, then a look-up per patient."""
        a, b = self.eval(n.left, d), self.eval(n.right, d)
        yes = np.ones(self.n(), bool)
        if b.labels is not None and len(b.labels) == 1 and b.valid.all() and a.labels is not None:
            a, b = b, a  # the constant on the left
        if a.labels is not None and len(a.labels) == 1 and a.valid.all() and b.labels is not None:
            hit = b.labels == a.labels[0]
            if n.op == "!=":
                hit = ~hit
            return Vec((hit[b.values] if len(hit) else np.zeros(self.n(), bool)) & b.valid, yes)
        op = np.equal if n.op == "==" else np.not_equal
        return Vec(np.asarray(op(a.text(), b.text()), dtype=bool) & a.valid & b.valid, yes)

    def case(self, n: ir.Case, d: dt.date) -> Vec:
        if n.type is ir.T.TEXT:
            v = self.text_case(n, d)
            if v is not None:
                return v
        size = self.n()
        text = n.type is ir.T.TEXT
        values = np.empty(size, dtype=object) if text else \
            np.zeros(size, dtype=np.int64 if n.type is ir.T.INT else np.float64)  # whole numbers stay exact
        valid = np.zeros(size, bool)

        def put(where, node):  # where: a mask, or None for everyone
            c = self.scalar(node) if not text else (node.value if isinstance(node, (ir.Const, ir.Param)) else None)
            if c is not None:
                np.copyto(values, c, where=True if where is None else where)
                np.copyto(valid, True, where=True if where is None else where)
            else:
                v = self.eval(node, d)
                np.copyto(values, v.text() if text else v.values, where=True if where is None else where)
                np.copyto(valid, v.valid, where=True if where is None else where)

        if n.default is not None:
            put(None, n.default)
        for cond, val in reversed(n.whens):  # the first true condition wins
            c = self.eval(cond, d)
            put(c.values.astype(bool, copy=False) & c.valid, val)
        if n.type is ir.T.INT:
            values = values.astype(np.int64)
        return Vec(values, valid)

    def text_case(self, n: ir.Case, d: dt.date) -> Vec | None:
        """A text case as codes into the labels of its branches; None when a branch's text
        has no labels."""
        branches = [self.eval(v, d) for _, v in n.whens] + ([self.eval(n.default, d)] if n.default is not None else [])
        if any(v.labels is None for v in branches):
            return None
        index: dict = {}
        remaps = [np.array([index.setdefault(x, len(index)) for x in v.labels], dtype=np.int32) for v in branches]
        codes = np.zeros(self.n(), dtype=np.int32)
        valid = np.zeros(self.n(), bool)

        def put(where, v, remap):  # where: a mask, or None for everyone
            if len(remap) == 0:
                np.copyto(valid, False, where=True if where is None else where)
            else:
                np.copyto(codes, remap[v.values], where=True if where is None else where)
                np.copyto(valid, v.valid, where=True if where is None else where)

        if n.default is not None:
            put(None, branches[-1], remaps[-1])
        for i in reversed(range(len(n.whens))):  # the first true condition wins
            c = self.eval(n.whens[i][0], d)
            put(c.values.astype(bool, copy=False) & c.valid, branches[i], remaps[i])
        labels = np.empty(len(index), dtype=object)
        labels[:] = list(index)
        return Vec(codes, valid, labels)

    def func(self, n: ir.Func, d: dt.date) -> Vec:
        args = [self.eval(a, d) for a in n.args]
        if n.name in ("min", "max") and n.type is ir.T.INT:  # whole numbers: exact, in 64 bits
            fill = np.iinfo(np.int64).max if n.name == "min" else INT_MIN
            stack = np.stack([np.where(a.valid, a.values, fill).astype(np.int64) for a in args])
            valid = np.any([a.valid for a in args], axis=0)
            out = stack.min(axis=0) if n.name == "min" else stack.max(axis=0)
            return Vec(np.where(valid, out, 0), valid)
        if n.name in ("min", "max"):  # least/greatest: missing values are skipped
            stack = np.stack([np.where(a.valid, a.values, np.nan).astype(np.float64) for a in args])
            valid = np.any([a.valid for a in args], axis=0)
            with warnings.catch_warnings():  # all-missing columns: nan, masked by valid
                warnings.simplefilter("ignore", RuntimeWarning)
                out = np.nanmin(stack, axis=0) if n.name == "min" else np.nanmax(stack, axis=0)
            return Vec(np.where(valid, out, 0), valid)
        a = args[0]
        x = np.where(a.valid, a.values, 0.0).astype(np.float64, copy=False)  # a new array: worked in place
        with np.errstate(all="ignore"):
            if n.name == "logistic":  # 1 / (1 + exp(-x))
                np.negative(x, out=x)
                np.exp(x, out=x)
                np.add(x, 1.0, out=x)
                return Vec(np.divide(1.0, x, out=x), a.valid)
            if n.name == "exp":
                out = np.exp(x, out=x)
                return Vec(out, a.valid & np.isfinite(out))
            if n.name == "log":  # of zero or less: missing
                positive = x > 0
                return Vec(np.log(np.where(positive, x, 1.0)), a.valid & positive)
            if n.name == "abs":
                fits = a.values != INT_MIN if n.type is ir.T.INT else True
                return Vec(np.abs(a.values), a.valid & fits)
            if n.name == "round":  # half away from zero, as SQL rounds; beyond 64 bits: missing
                if n.args[0].type is ir.T.INT:
                    return Vec(a.values, a.valid)
                r = np.sign(x) * np.floor(np.abs(x) + 0.5)
                fits = (r >= -TWO_63) & (r < TWO_63)
                return Vec(np.where(fits, r, 0).astype(np.int64), a.valid & fits)
            if n.name == "days_between":
                b = args[1]
                return Vec(b.values - a.values, a.valid & b.valid)
            if n.name == "weekday":  # day 0 (1970-01-01) was a Thursday, ISO day 4
                return Vec(np.where(a.valid, (a.values.astype(np.int64) + 3) % 7 + 1, 0), a.valid)
        raise NotImplementedError(n.name)

    def members(self, x: Vec, d: dt.date) -> np.ndarray:
        """Patients whose value counts in a ranking: in the rule's population, with a value."""
        if self.population is None:
            return x.valid
        pop = self.eval(self.population, d)
        return pop.values.astype(bool, copy=False) & pop.valid & x.valid

    def standing(self, operand: ir.Node, d: dt.date):
        """For each patient, how many of the population's values are below theirs and how many
        are at most theirs, and how many values the population has: one sort serves every
        percentile and top of the same value."""
        key = ("standing", operand, d)
        if key not in self.cache:
            from casefind_native import ranking

            x = self.eval(operand, d)
            member = self.members(x, d)
            vals = np.ascontiguousarray(x.values, dtype=np.float64)
            below, at_most = np.empty(len(vals), dtype=np.int64), np.empty(len(vals), dtype=np.int64)
            pool = ranking.standing(vals, np.ascontiguousarray(member), below, at_most)
            self.cache[key] = (below, at_most, int(pool), x.valid)
        return self.cache[key]

    def top(self, n: ir.PopulationRank, d: dt.date) -> Vec | None:
        """top(x, f) without sorting: x is top when fewer than f × (members) values exceed
        it, that is when x is at least the (m+1)-th largest member value, m = ceil(f × members) - 1,
        found by a partial sort. None (sort instead) when values include nan."""
        x = self.eval(n.operand, d)
        vals = x.values.astype(np.float64, copy=False)
        pool = vals[self.members(x, d)]
        if np.isnan(vals[x.valid]).any():
            return None
        m = math.ceil(n.fraction * len(pool)) - 1  # how many member values may exceed a top value
        if len(pool) == 0 or m < 0:
            return Vec(np.zeros(self.n(), bool), np.ones(self.n(), bool))
        if m >= len(pool):
            return Vec(x.valid.copy(), np.ones(self.n(), bool))
        k = len(pool) - 1 - m
        return Vec((vals >= np.partition(pool, k)[k]) & x.valid, np.ones(self.n(), bool))

    def rank_in_pool(self, n: ir.RankInPool, d: dt.date) -> Vec:
        """A rank within values gathered beforehand: members below and at most each value,
        by binary search of the sorted pool (nan last, as ``ranking.standing`` orders)."""
        x = self.eval(n.operand, d)
        vals = np.ascontiguousarray(x.values, dtype=np.float64)
        pool = n.pool.values
        size = len(pool)
        if n.kind == "percentile":
            if size == 0:
                return Vec(np.zeros(self.n()), np.zeros(self.n(), bool))
            return Vec(100.0 * np.searchsorted(pool, vals, "left") / size, x.valid)
        above = size - np.searchsorted(pool, vals, "right")
        return Vec((above < n.fraction * size) & x.valid, np.ones(self.n(), bool))

    def rank(self, n: ir.PopulationRank, d: dt.date) -> Vec:
        if n.kind == "top" and ("standing", n.operand, d) not in self.cache:
            v = self.top(n, d)
            if v is not None:
                return v
        below, at_most, pool, valid = self.standing(n.operand, d)
        if n.kind == "percentile":
            if pool == 0:
                return Vec(np.zeros(self.n()), np.zeros(self.n(), bool))
            return Vec(100.0 * below / pool, valid)
        above = pool - at_most
        return Vec((above < n.fraction * pool) & valid, np.ones(self.n(), bool))


_LEAF_DTYPE = {ir.T.BOOL: np.bool_, ir.T.INT: np.int64, ir.T.DATE: np.int64, ir.T.FLOAT: np.float64}


def _slot_values(sp, named: dict, everyone: np.ndarray, results: list[dict], grouped: list[dict]) -> None:
    """A slot's value per period into ``results`` (a group's member cast to its reducer's
    type, a copy; a sparse one's Vec made only if it is read, see NativeEngine._eval) and,
    for a group's count, where it lies in the group into ``grouped``."""
    values = named[sp.out]
    dates = sp.slot.dates or (sp.slot.as_of,)
    if isinstance(values, SparseCounts):
        for i, d in enumerate(dates):
            results[i][(sp.slot.node, d)] = SparseMember(values, sp.member, i)
            grouped[i][(sp.slot.node, d)] = (values, sp.member, i)
        return
    valid = named[sp.ok] if sp.ok else everyone
    counts = None
    if sp.member is not None:  # a codelist group's int64 outputs: the slot's own type
        counts = values if not sp.ok and _dtype(sp) == np.int64 else None
        values = values[sp.member].astype(_dtype(sp), copy=False)
        valid = valid[sp.member] if sp.ok else valid
    for i, d in enumerate(dates):
        results[i][(sp.slot.node, d)] = Vec(values[i], valid[i], sp.labels)
        if counts is not None:
            grouped[i][(sp.slot.node, d)] = (counts, sp.member, i)


def _leaf_values(node: ir.Node, v: Vec) -> np.ndarray:
    """A leaf's values as the fused loop reads them: its kernel type, contiguous, and
    true/false ones false where missing (the loop's ``and`` and ``not`` read them so)."""
    values = np.ascontiguousarray(v.values, dtype=_LEAF_DTYPE[node.type])
    if node.type is ir.T.BOOL and not v.valid.all():
        values = values & v.valid
    return values


@functools.lru_cache(maxsize=32)
def _fusion(nodes: tuple[ir.Node, ...]) -> fusing.Fusion:
    """The fused loop for these outputs, made once per process (its source depends on the
    expressions alone, not on the store or the patients)."""
    return fusing.fuse(list(nodes))


def _dtype(sp) -> np.dtype:
    """The output type of a slot's reducer."""
    from casefind.contract import TABLES
    from casefind.engines.reducers import reducer_for

    return np.dtype(reducer_for(sp.slot.node, TABLES[sp.slot.table]).dtype)


def _as_codes(v: Vec) -> Vec:
    """A scan's text output (indices into its labels, held as floats) as label codes."""
    if len(v.labels) == 0:
        return Vec(np.zeros(len(v.values), np.int32), np.zeros(len(v.values), bool), v.labels)
    return Vec(np.where(v.valid, v.values, 0).astype(np.int32), v.valid, v.labels)


def _int_overflow(op: str, a, b, out) -> np.ndarray:
    """Where 64-bit whole-number ``a op b`` (computed, wrapping, as ``out``) overflowed."""
    a, b, out = (np.asarray(x, dtype=np.int64) for x in (a, b, out))
    if op == "+":
        return ((a ^ out) & (b ^ out)) < 0
    if op == "-":
        return ((a ^ b) & (a ^ out)) < 0
    nonzero = a != 0  # a product is exact when dividing it by one factor gives the other
    with np.errstate(all="ignore"):
        back = out // np.where(nonzero, a, 1)
    edge = ((a == -1) & (b == INT_MIN)) | ((b == -1) & (a == INT_MIN))
    return (nonzero & (back != b)) | edge


def evaluate(store: Store, exprs: dict[str, ir.Node], as_of: dt.date,
             population: ir.Node | None = None, patients: np.ndarray | None = None) -> pa.Table:
    """Every stored patient's values (or, with ``patients``, those patients', each once, in
    store order): ``patient`` (store index), then each named expression at ``as_of``."""
    return NativeQueryEngine().evaluate(store, exprs, as_of, population, patients)


def _ranks(exprs: dict[str, ir.Node], population: ir.Node | None) -> bool:
    """Whether anything ranks within the population (which needs every patient's value)."""
    roots = list(exprs.values()) + ([population] if population is not None else [])
    return any(ir.contains(n, ir.PopulationRank, into=(ir.ROWS, ir.DATE)) for n in roots)


class NativeQueryEngine(Engine):
    """The production engine: the plan's fused Numba kernels, one scan per table for every
    aggregation, date and period (``NativeEngine`` per store). With ``patients`` the kernels
    scan only those patients' rows, unless a percentile or top ranks within the population
    (then every patient is computed and theirs returned)."""

    name = "native"

    def evaluate(self, store: Store, exprs: dict[str, ir.Node], as_of: dt.date,
                 population: ir.Node | None = None, patients: np.ndarray | None = None) -> pa.Table:
        if patients is None:
            return NativeEngine(store).evaluate(exprs, as_of, population)
        rows = sorted_unique(patients)
        if _ranks(exprs, population):
            return NativeEngine(store).evaluate(exprs, as_of, population).take(pa.array(rows))
        return NativeEngine(store, rows).evaluate(exprs, as_of, population)

    def evaluate_periods(self, store: Store, exprs: dict[str, ir.Node], periods: list[tuple[dt.date, int | None]],
                         population: ir.Node | None = None, patients: np.ndarray | None = None,
                         blocks: Blocks | None = None) -> list[pa.Table]:
        """``exprs`` (which may hold a KPI's ``period``) at each (end date, period days) of
        ``periods``, one table per period, every table scanned once for all of them (and
        ``blocks``, each a column of fixed-size lists: NativeEngine.evaluate_periods)."""
        if patients is not None and _ranks(exprs, population):
            rows = pa.array(sorted_unique(patients))
            return [t.take(rows) for t in NativeEngine(store).evaluate_periods(exprs, periods, population, blocks)]
        return NativeEngine(store, patients).evaluate_periods(exprs, periods, population, blocks)

    def evaluate_periods_chunks(self, store: Store, exprs: dict[str, ir.Node],
                                periods: list[tuple[dt.date, int | None]],
                                chunks: list[np.ndarray], blocks: Blocks | None = None,
                                arrays: bool = False) -> Iterator[list]:
        """``evaluate_periods`` for each group of patients in ``chunks`` (sorted store
        indices) in turn, with one plan and one set of kernels: memory then grows with the
        chunk, not with every patient. Where something ranks within the population (which
        needs every patient's value), every patient is evaluated once and cut in chunks.
        ``arrays``: each period's values as NativeEngine.period_values gives them (with
        the chunk's patients), not as a table (where nothing ranks)."""
        if _ranks(exprs, None):
            tables = NativeEngine(store).evaluate_periods(exprs, periods, blocks=blocks)
            for rows in chunks:
                yield [t.take(pa.array(rows)) for t in tables]
            return
        engines = (NativeEngine(store), NativeEngine(store))
        for engine in engines:
            engine.run_patients = sum(len(rows) for rows in chunks)

        def scan(engine: NativeEngine, rows: np.ndarray) -> NativeEngine:
            engine.use_patients(rows)
            engine.scan_periods(exprs, periods, blocks=blocks)
            engine.prefuse_periods(exprs, blocks)
            return engine

        # the next chunk's scans and fused loops run (on another thread, kernels without the
        # GIL) while the caller sums this chunk's tables: two engines take turns, so both
        # cores work (each side about half of 12 months of triple_aim at 1M)
        with ThreadPoolExecutor(1, thread_name_prefix="casefind-ahead") as ahead:
            ready = ahead.submit(scan, engines[0], chunks[0]) if chunks else None
            for i in range(len(chunks)):
                engine = ready.result()
                if i + 1 < len(chunks):
                    ready = ahead.submit(scan, engines[(i + 1) % 2], chunks[i + 1])
                if arrays:
                    yield [(engine.patient_index(), *x) for x in engine.period_values(exprs, blocks, prefused=True)]
                else:
                    yield engine.period_tables(exprs, blocks, prefused=True)


ENGINE = NativeQueryEngine()
