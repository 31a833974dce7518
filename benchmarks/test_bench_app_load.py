"""The review app under load (issue 12): CASEFIND_BENCH_CLINICIANS (default 50) clinicians at
once on 127.0.0.1, each signing in, opening its practice's list, then opening and deciding
CASEFIND_BENCH_DECISIONS (default 3) patients, reopening the list after each. Reports p50 /
p95 / max latency per page and decisions per second (over the whole run, and from the first
decision to the last, without the sign-ins), and fails if a decision is lost or
recorded twice, or any request fails. Runs on a private hard-linked copy of the benchmark
store (its own review log), so other benchmarks see the store unchanged."""
from __future__ import annotations

import asyncio
import json
import os

from app_load import Server, check_log, crowd, free_port, private_copy
from bench_support import PATIENTS

CLINICIANS = int(os.environ.get("CASEFIND_BENCH_CLINICIANS", "50"))
DECISIONS = int(os.environ.get("CASEFIND_BENCH_DECISIONS", "3"))


def _clinicians(store, users_path, practices: list[str]) -> list[tuple[str, str, str, int, int]]:
    """CLINICIANS accounts spread over the practices with listed patients, round robin."""
    from casefind.app.users import UserStore

    users = UserStore(users_path)
    chosen = [practices[i % len(practices)] for i in range(CLINICIANS)]
    share = {p: chosen.count(p) for p in set(chosen)}
    seen: dict[str, int] = {}
    out = []
    for i, practice in enumerate(chosen):
        name, password = f"load{i:03d}", f"load-password-{i:03d}-x"
        users.add(name, "clinician", [practice], password)
        out.append((name, password, practice, seen.setdefault(practice, 0), share[practice]))
        seen[practice] += 1
    return out


def test_fifty_clinicians_browse_and_decide(benchmark, rules_store, bench_dir, capsys):
    from casefind.app.app import create_app
    from casefind.lists.run import run
    from casefind.store import listings

    store = private_copy(rules_store, bench_dir / "store-app-load")
    out = bench_dir / "out-app-load"
    run(_frail(), store, out)
    practices = sorted({p for listing in listings.runs(store) for p in listing.practices})
    clinicians = _clinicians(store, bench_dir / "load-users.json", practices)
    app = create_app(store, bench_dir / "load-users.json", out_dirs=[out])
    port = free_port()
    with Server(app, port):
        timings, seconds = asyncio.run(crowd(f"http://127.0.0.1:{port}", clinicians, DECISIONS))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    log = check_log(store, timings, {c[0] for c in clinicians})
    figures = {"patients": PATIENTS, "clinicians": CLINICIANS, "practices": len(set(c[2] for c in clinicians)),
               "seconds": round(seconds, 2), "decisions_per_second": round(len(timings.decided) / seconds, 1),
               "decisions_per_second_deciding": timings.decide_rate(),
               "pages": {k: {m: round(v, 1) for m, v in s.items()} for k, s in timings.summary().items()},
               "log": log, "errors": timings.errors[:10]}
    with capsys.disabled():
        print("\n= casefind app load (127.0.0.1) = " + json.dumps(figures))
    assert not timings.errors, timings.errors[:10]
    assert log["posted"] == log["in_log"] == log["distinct"] > 0, log  # none lost, none twice
    assert log["audit_chain_ok"] == 1, log


def _frail():
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "rules" / "frail.yml"
