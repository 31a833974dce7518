"""What a command says before its first run in a fresh environment compiles kernels.

The native engine compiles its kernels on first use and keeps them on disk (Numba's cache
beside the kernel sources, engines/native.py); until then a KPI run or a list takes a few
seconds longer, which a newcomer or a scheduled job in a fresh container should be told
up front rather than left watching a spinner.
"""
from __future__ import annotations

import os
from pathlib import Path

# Seconds a first run spends compiling, measured with empty caches: casefind kpi
# rules/kpis/triple_aim.yml on the 50,000-patient demo store took 4.9 s (one period) and
# 5.6 s (twelve) more than the same run warm, on a shared 2-core machine.
FIRST_COMPILE_S = 5


def kernels_compiled() -> bool:
    """Whether compiled kernels from an earlier run are on disk: a kernel source in the
    kernel cache and a Numba index for one (beside it, or under NUMBA_CACHE_DIR)."""
    from casefind.engines.native import kernel_cache_dir

    folder = kernel_cache_dir()
    if next(folder.glob("k_*.py"), None) is None:
        return False
    numba_dir = os.environ.get("NUMBA_CACHE_DIR")
    compiled = Path(numba_dir) if numba_dir else folder / "__pycache__"
    return next(compiled.rglob("k_*.nbi"), None) is not None


def compile_notice(engine: str) -> str | None:
    """The line to print before a run with ``engine``, or None when nothing will compile
    (the reference engine compiles nothing; kernels already on disk are loaded)."""
    if engine != "native" or kernels_compiled():
        return None
    return f"compiling kernels for first use, about {FIRST_COMPILE_S} s; later runs reuse them"
