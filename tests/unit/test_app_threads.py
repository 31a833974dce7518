"""casefind.app.threads.cpu_bound: argon2id checks run off the event loop, one per core at a
time, so 50 sign-ins at once queue instead of all finishing late."""
from __future__ import annotations

import asyncio
import threading

from casefind.app import threads


def test_cpu_bound_runs_in_a_worker_thread_one_per_core(monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    loop_thread = threading.get_ident()
    lock, running, peak, where = threading.Lock(), [0], [0], set()
    release = threading.Event()

    def work(i, *, scale):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            where.add(threading.get_ident())
        release.wait(5)
        with lock:
            running[0] -= 1
        return i * scale

    async def crowd():
        tasks = [asyncio.ensure_future(threads.cpu_bound(work, i, scale=10)) for i in range(6)]
        while running[0] < 2:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)  # time for a third to start, were the limit not kept
        assert running[0] == 2
        release.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(crowd()) == [0, 10, 20, 30, 40, 50]
    assert peak[0] == 2 and loop_thread not in where


def test_each_event_loop_has_its_own_limiter(monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: None)  # unknown: one at a time
    assert asyncio.run(threads.cpu_bound(sum, [1, 2])) == 3
    assert asyncio.run(threads.cpu_bound(max, 4, 5)) == 5
