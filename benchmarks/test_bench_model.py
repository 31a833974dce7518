"""Model scoring: model("emergency_12m") (the shipped artefact) for every adult of the store,
on the native engine (kernels compiled), against the same computation in hand-written DuckDB
SQL (model_peer.py) in the same run, each first checked to give the same risk per patient."""
from __future__ import annotations

import datetime as dt
import shutil

import duckdb
import numpy as np

import model_peer
import peers
from bench_support import check_rows, race, rounds
from casefind.engines.base import get_engine
from casefind.rules import ir
from casefind.rules.compile import compile_rule
from casefind.store import Store

AS_OF = dt.date(2026, 10, 31)
RULE = 'rule: score\nas_of: "2026-10-31"\npopulation: registered and alive and age >= 18\n' \
       'features:\n  risk: model("emergency_12m")\n'


def _rule(tmp_path):
    """A one-feature rule beside a copy of the shipped artefact (in models/, where model() looks)."""
    (tmp_path / "models").mkdir()
    shutil.copy(model_peer.ARTEFACT, tmp_path / "models")
    shutil.copytree(model_peer.ARTEFACT.parents[1] / "codelists" / "published", tmp_path / "codelists" / "published")
    (tmp_path / "score.yml").write_text(RULE)
    return compile_rule(tmp_path / "score.yml")


def _ours(store, rule) -> list[dict]:
    st = Store.open(store)
    exprs = {"risk": rule.features["risk"], "member": rule.population}
    t = get_engine("native").evaluate(st, exprs, AS_OF, population=rule.population)
    member = t.column("member").to_numpy(zero_copy_only=False)
    ids = st.table("patients")["patient_id"][t.column("patient").to_numpy()[member]]
    risk = t.column("risk").to_numpy(zero_copy_only=False)[member]
    return [{"patient_id": str(i), "risk": float(r)} for i, r in zip(ids, risk)]


def test_model_scoring_vs_duckdb(benchmark, rules_store, peer_db, tmp_path):
    rule = _rule(tmp_path)
    assert isinstance(rule.features["risk"], ir.Logistic)
    sql = model_peer.scores_sql(AS_OF)
    ours_rows = _ours(rules_store, rule)   # warm: kernels compiled (or loaded from the cache)
    with duckdb.connect(str(peer_db), read_only=True) as con:
        peer_rows = peers.duckdb_query(con, sql).to_pylist()
    compared = check_rows(ours_rows, peer_rows, ("patient_id",), "model scores: DuckDB SQL")

    def duckdb_sql():
        with duckdb.connect(str(peer_db), read_only=True) as con:
            peers.duckdb_query(con, sql)

    result, _ = race(benchmark, "native_scoring", lambda: _ours(rules_store, rule), {"duckdb_sql": duckdb_sql},
                     rounds(benchmark, 5))
    benchmark.extra_info.update(patients=len(result), rows_compared=compared,
                                mean_risk=round(float(np.mean([r["risk"] for r in result])), 4))
