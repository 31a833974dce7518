"""CPU-heavy work off the event loop (file and lock work goes to Starlette's
``run_in_threadpool``; see views/common.py ``guarded``).

``cpu_bound`` is for argon2id password checks: each uses its own 64 MiB and a core for tens of milliseconds, so running
50 at once only makes all 50 finish late (and takes 3 GB); they are let through a core at a
time, in turn, while the event loop keeps serving pages.
"""
from __future__ import annotations

import asyncio
import functools
import os
import weakref
from collections.abc import Callable
from typing import TypeVar

from anyio import CapacityLimiter, to_thread

T = TypeVar("T")
_LIMITERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop → its limiter


def _cpu_limiter() -> CapacityLimiter:
    loop = asyncio.get_running_loop()
    limiter = _LIMITERS.get(loop)
    if limiter is None:
        limiter = _LIMITERS[loop] = CapacityLimiter(max(1, os.cpu_count() or 1))
    return limiter


async def cpu_bound(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` in a worker thread, at most one per core at a time."""
    return await to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=_cpu_limiter())
