"""What a command says before its first run in a fresh environment compiles kernels.

The native engine compiles its kernels on first use and keeps them on disk (Numba's cache
beside the kernel sources, engines/native.py); until then a KPI run or a list takes a few
seconds longer, which a newcomer or a scheduled job in a fresh container should be told
up front rather than left watching a spinner.
"""
from __future__ import annotations

import os
from pathlib import Path

# Seconds a first run spends compiling, by job: measured with empty caches (both Numba's and
# the kernel sources), the whole command against the same command warm, on the
# 50,000-patient demo store on a shared 2-core machine (2026-12-08; docs/benchmarks.md).
# A KPI file compiles the KPI runtime (per-practice sums, age bands) besides its kernels,
# and all of triple_aim.yml's scans are one large kernel per table.
FIRST_COMPILE_S = {"list": 2, "kpi": 12}
KPI_RUNTIME = "aggregate.group_sums_into"  # compiled by every KPI run, by no list


def numba_cache_dir() -> Path:
    """Where Numba keeps compiled code: NUMBA_CACHE_DIR, which casefind_native sets, when
    unset, to the user's cache folder (casefind_native/__init__.py; the same rule here, so
    that asking does not import Numba; tests/functional/test_cli.py checks that the two agree)."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    return Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                      "casefind", "numba")


def kernels_compiled(job: str = "list") -> bool:
    """Whether compiled kernels from an earlier run are on disk: a kernel source in the
    kernel cache and a Numba index for one, and for a KPI run the KPI runtime's index too
    (a list run leaves it uncompiled, and the KPI run after it compiles for seconds).
    Before, the index was looked for beside the sources, where Numba never puts it
    (casefind_native points it elsewhere), so a fresh process with every kernel cached
    still said it would compile."""
    from casefind.engines.native import kernel_cache_dir

    if next(kernel_cache_dir().glob("k_*.py"), None) is None:
        return False
    numba = numba_cache_dir()
    if next(numba.rglob("k_*.nbi"), None) is None:
        return False
    return job != "kpi" or next(numba.rglob(f"{KPI_RUNTIME}-*.nbi"), None) is not None


def compile_notice(engine: str, job: str = "list") -> str | None:
    """The line to print before a run (``job``: "list" or "kpi") with ``engine``, or None
    when nothing will compile (the reference engine compiles nothing; kernels already on
    disk are loaded)."""
    if engine != "native" or kernels_compiled(job):
        return None
    return f"compiling kernels for first use, about {FIRST_COMPILE_S[job]} s; later runs reuse them"
