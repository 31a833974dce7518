"""``casefind diagnose`` against its hand-written DuckDB SQL peer (benchmarks/diagnose_peer.py):
three rules, each evaluated at 13 month-ends (now, and the crisis curve's washout and window,
whose last is a year earlier), cohort sizes per practice, turnover with reasons, pairwise overlap and
the crisis curve with its matched comparison. Checked first: the peer's rows equal ours
(sizes, turnover, overlap, and every point of every curve, matched pairs included)."""
from __future__ import annotations

import datetime as dt

import duckdb
import pytest

import diagnose_peer
from bench_support import check_rows, race, record, rounds
from casefind.diagnose import crisis
from casefind.diagnose.run import Options, diagnose

AS_OF = dt.date(2026, 10, 31)
RULES = {
    "admitted": 'count(activity, setting == "emergency_admission", within=months(12)) >= 2',
    "ae_frequent": 'count(activity, setting == "ae", within=months(12)) >= 3',
    "costly": "sum(activity.cost, within=months(12)) >= 5000",
}


@pytest.fixture(scope="module")
def rule_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("diagnose-rules")
    paths = []
    for name, when in RULES.items():
        path = folder / f"{name}.yml"
        path.write_text(f'rule: {name}\nas_of: "{AS_OF}"\npopulation: registered and alive\n'
                        f"criteria:\n  include:\n    selected: {when}\n")
        paths.append(path)
    return paths


def _peer_con(peer_db):
    con = duckdb.connect()
    con.execute(f"ATTACH '{peer_db}' AS src (READ_ONLY)")
    con.execute("USE src")  # read the source tables; temporary tables stay in memory
    return con


def test_diagnose_against_duckdb_peer(benchmark, rules_store, peer_db, rule_files):
    def ours():
        return diagnose(rule_files, rules_store, AS_OF, Options())

    window = crisis.Window(AS_OF)
    identification = [int(m) for m in window.identification_months]
    con = _peer_con(peer_db)

    def peer():
        return diagnose_peer.run_all(con, AS_OF, identification, window.washout)

    d, p = ours(), peer()
    compared = check_rows([{"rule": r, "practice": pr, "people": n} for r, by in d.sizes.items()
                           for pr, n in by.items()], p["sizes"], ("rule", "practice"), "sizes")
    compared += check_rows([t.row() for t in d.turnover], p["turnover"], ("rule",), "turnover")
    compared += check_rows(d.overlap.pairs(), p["overlap"], ("rule_a", "rule_b"), "overlap")
    compared += check_rows([r for c in d.curves for r in c.rows], p["crisis"], ("rule", "group", "month"), "crisis")
    _, times = race(benchmark, "casefind", ours, {"duckdb_peer": peer}, rounds(benchmark, 3))
    record(benchmark, "casefind", times)
    benchmark.extra_info.update(compared=compared, identified={c.rule: c.identified for c in d.curves},
                                matched={c.rule: c.matched for c in d.curves})
    con.close()
