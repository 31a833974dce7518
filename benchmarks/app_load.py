"""A bounded load test of the review app (`casefind serve`) on 127.0.0.1 only: N clinicians
at once sign in, open their practice's list, open patients and decide, as people would.

Each clinician decides a disjoint set of its practice's listed patients (clinician k of m
sharing a practice takes the k-th, (k+m)-th, ... rows), so every decision posted must appear
in the review log exactly once: ``check_log`` counts lost and duplicated ones."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
HANDLE = re.compile(r'href="/patient/([^"/]+)"')


def private_copy(store: Path, dest: Path) -> Path:
    """The store and its identities as hard links (snapshots are never written in place),
    without its review log, runs and audit log: the load test writes into its own."""
    for src, dst in ((store, dest), (store.with_name(store.name + "-identities"),
                                     dest.with_name(dest.name + "-identities"))):
        if src.exists():
            fresh = shutil.ignore_patterns("decisions", ".decisions.lock", "lists", "audit", "kpi", "app")
            shutil.copytree(src, dst, copy_function=_link, symlinks=True, ignore=fresh)
    return dest


def _link(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@dataclass
class Timings:
    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    decided: list[tuple[str, int]] = field(default_factory=list)  # (clinician, row position)
    decide_spans: list[tuple[float, float]] = field(default_factory=list)  # (started, answered), perf_counter

    def decide_rate(self) -> float | None:
        """Decisions per second from the first decision posted to the last one answered:
        the review log's throughput, without the sign-ins before it."""
        if not self.decide_spans:
            return None
        seconds = max(e for _, e in self.decide_spans) - min(s for s, _ in self.decide_spans)
        return round(len(self.decide_spans) / seconds, 1) if seconds > 0 else None

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for page, values in self.seconds.items():
            ordered = sorted(values)
            out[page] = {"n": len(ordered), "p50_ms": 1000 * statistics.median(ordered),
                         "p95_ms": 1000 * ordered[max(0, round(0.95 * len(ordered)) - 1)],
                         "max_ms": 1000 * ordered[-1]}
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn serving ``app`` in a thread on 127.0.0.1."""

    def __init__(self, app, port: int):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the app did not start in 30 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


async def _timed(t: Timings, page: str, call):
    started = time.perf_counter()
    r = await call
    t.seconds[page].append(time.perf_counter() - started)
    if r.status_code >= 400:
        t.errors.append(f"{page}: HTTP {r.status_code}")
    return r


async def clinician(base: str, name: str, password: str, practice: str, slot: int, of: int, decisions: int,
                    t: Timings) -> None:
    """One clinician's session: sign in, the list, then open and decide ``decisions`` patients."""
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=120, follow_redirects=False) as c:
        page = await _timed(t, "sign-in page", c.get("/login"))
        token = CSRF.search(page.text).group(1)
        await _timed(t, "sign in", c.post("/login", data={"csrf": token, "username": name, "password": password}))
        listing = await _timed(t, "list", c.get(f"/practice/{practice}"))
        handles = list(dict.fromkeys(HANDLE.findall(listing.text)))
        for position in list(range(slot, len(handles), of))[:decisions]:
            patient = await _timed(t, "patient", c.get(f"/patient/{handles[position]}"))
            token = CSRF.search(patient.text).group(1)
            started = time.perf_counter()
            r = await _timed(t, "decide", c.post(f"/patient/{handles[position]}/decision", data={
                "csrf": token, "decision": "accepted", "reason": "", "note": f"load test {name}"}))
            if r.status_code < 400:
                t.decided.append((name, position))
                t.decide_spans.append((started, time.perf_counter()))
            await _timed(t, "list", c.get(f"/practice/{practice}"))


async def crowd(base: str, clinicians: list[tuple[str, str, str, int, int]], decisions: int) -> tuple[Timings, float]:
    t = Timings()
    started = time.perf_counter()
    await asyncio.gather(*(clinician(base, name, pw, practice, slot, of, decisions, t)
                           for name, pw, practice, slot, of in clinicians))
    return t, time.perf_counter() - started


def check_log(store: Path, t: Timings, reviewers: set[str]) -> dict[str, int]:
    """Decisions posted against the review log: none lost, none twice; and the audit log's
    hash chain intact after the crowd's concurrent (group-committed) appends."""
    from casefind import audit
    from casefind.store import decisions

    log = decisions.read_log(store).to_pylist()
    ours = [r for r in log if (r.get("note") or "").startswith("load test ")]
    keys = [(r["rule"], r["patient_id"]) for r in ours]
    return {"posted": len(t.decided), "in_log": len(ours), "distinct": len(set(keys)),
            "reviewers": len({r["note"][len("load test "):] for r in ours} & reviewers),
            "audit_entries": (checked := audit.verify(store)).entries, "audit_chain_ok": int(checked.ok)}
