"""What a query engine is, and the one registry of them (after ehrQL's ``query_engines/base.py``).

An engine evaluates compiled IR (``casefind.rules.ir``) over a store. Everything that
evaluates a rule — lists (``casefind run``), datasets, KPIs, the tests — asks the registry
for an engine by name (``get_engine``) and calls ``evaluate``; nothing else knows which
engines exist. A new engine is a subclass of ``Engine`` in its own module, named in
``_MODULES`` below; every test parametrised over ``ENGINES`` then runs it too, and the spec
and property tests hold it to the reference engine's values.
"""
from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from casefind.errors import UsageError
from casefind.rules.errors import did_you_mean

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from casefind.rules import ir
    from casefind.store import Store

    Blocks = dict[str, tuple[ir.Node, ...]]  # named groups of numeric expressions, evaluated as one block


class Engine:
    """An engine: ``evaluate`` the named expressions over a store at one date.

    ``evaluate(store, exprs, as_of, population=None, patients=None) -> pyarrow.Table``
    must return one row per stored patient, in store order — or, with ``patients`` (store
    indices), one row per patient in it, in store order, each once — with the column
    ``patient`` (the store index, int32) first, then one column per entry of ``exprs``, in
    its order and under its name: the expression's value at ``as_of``, typed as the IR
    types it (int64, float64, date32, bool, string), missing as null. ``population`` is
    what ``percentile``/``top`` rank within, always over the whole store, whoever is
    returned. The semantics every engine implements are written out in the reference
    engine (``casefind.engines.duckdb_sql``); engines must give its values (floats to
    1e-9 relative, the rest exactly).

    Subclasses set ``name`` (the registry key and ``--engine`` value); ``reference`` is true
    for the one engine the others are checked against (a run re-checks its listed patients
    with it when another engine made the list).
    """

    name: ClassVar[str] = ""
    reference: ClassVar[bool] = False

    def evaluate(self, store: Store, exprs: dict[str, ir.Node], as_of: dt.date,
                 population: ir.Node | None = None, patients: np.ndarray | None = None) -> pa.Table:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<engine {self.name}>"


def block_column(values: np.ndarray) -> pa.Array:
    """A (patients x members) block of numbers as one column of fixed-size lists of float64
    (no copy of a float64 array): how an engine that evaluates a block of expressions at
    once (the native engine's ``evaluate_periods(..., blocks=...)``) hands it over."""
    import numpy as np
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(values, dtype=np.float64).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


@dataclass(frozen=True)
class SparseBlock:
    """A (patients x members) block of counts held as those that are not 0: ``count[r]`` of
    member ``member[r]`` for patient position ``at[r]``, in patient order (the native
    engine's sparse value groups: a patient sees few of sixty providers). The KPI sums read
    it as it is (casefind_native.aggregate.sparse_block_sums_into); anything else reads it
    as the dense array it stands for."""

    at: Any
    member: Any
    count: Any
    shape: tuple[int, int]

    def __array__(self, dtype=None, copy=None):
        import numpy as np

        out = np.zeros(self.shape, dtype=np.int64)
        out[self.at, self.member] = self.count
        return out if dtype is None else out.astype(dtype)


def block_members(blocks: Blocks) -> dict[str, ir.Node]:
    """Each block's members as expressions of their own, named ``<block>#<j>``."""
    return {f"{name}#{j}": node for name, nodes in blocks.items() for j, node in enumerate(nodes)}


def block_values(column, size: int) -> np.ndarray:
    """A ``block_column`` (or a chunked one) back as (patients x members) float64."""
    col = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), size)


# name -> (the module whose ``ENGINE`` is that engine, a line for --help). Modules are
# imported when an engine is first asked for, so listing the names (the CLI's --engine
# choices) imports neither Numba nor DuckDB, and engine modules import this one without a cycle.
_MODULES = {
    "native": ("casefind.engines.native", "fused Numba kernels"),
    "duckdb": ("casefind.engines.duckdb_sql", "the reference SQL engine (same values, slower)"),
}
REFERENCE = "duckdb"  # the correctness oracle
DEFAULT = "native"


class _Registry(Mapping):
    """A read-only ``dict[str, Engine]`` whose engines are loaded on first use."""

    def __init__(self, modules: dict[str, str]):
        self._modules = dict(modules)

    def __getitem__(self, name: str) -> Engine:
        engine = importlib.import_module(self._modules[name]).ENGINE  # KeyError if not registered
        assert engine.name == name, (name, engine)
        return engine

    def __contains__(self, name: object) -> bool:  # by name: loads nothing
        return name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __repr__(self) -> str:
        return f"ENGINES({', '.join(self._modules)})"


ENGINES: Mapping[str, Engine] = _Registry({name: module for name, (module, _) in _MODULES.items()})


def engines_help() -> str:
    """Every engine and what it is, for ``--engine``'s help (imports no engine)."""
    return "; ".join(f"{name}: {summary}" for name, (_, summary) in _MODULES.items()) + "."


def get_engine(name: str) -> Engine:
    """The registered engine called ``name``; a ``UsageError`` (with a did-you-mean) if none is."""
    if not isinstance(name, str) or name not in ENGINES:
        raise UsageError(f"no engine {name!r}; choose one of {', '.join(ENGINES)}",
                         did_you_mean(str(name), ENGINES), option="--engine")
    return ENGINES[name]
