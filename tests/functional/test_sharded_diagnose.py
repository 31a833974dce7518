"""`casefind diagnose` on a sharded store gives exactly what one store of the same patients
gives: sizes per practice, turnover (a year back and against a run), overlap and the crisis
curves with their matched pairs, however many shards (docs/scale-out.md). high_utilisers
ranks within the population, so its cohorts take the two-pass pools at every date."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from casefind.diagnose.run import Options, diagnose
from casefind.store.sharded import ShardedStore
from casefind_testdata import cli, single_and_sharded

SHARDS = (1, 3, 4)
RULES = ("frail", "multimorbidity", "high_utilisers")
SHIPPED = Path(__file__).resolve().parents[2] / "rules"
AS_OF = dt.date(2026, 10, 31)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return single_and_sharded(tmp_path_factory.mktemp("sharded-diagnose"), 6000, 8, SHARDS)


def _diagnosis(root, **options):
    return diagnose([SHIPPED / f"{r}.yml" for r in RULES], root, AS_OF, Options(**options))


def _same_curves(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert (a.rule, a.identified, a.matched, a.rows, a.summary) == (b.rule, b.identified, b.matched, b.rows,
                                                                        b.summary)
        assert all(np.array_equal(x, y) for x, y in zip(a.pairs, b.pairs))


def test_a_sharded_diagnosis_is_the_single_stores(stores):
    want = _diagnosis(stores / "single")
    assert all(sum(s.values()) > 0 for s in want.sizes.values())
    assert sum(c.matched for c in want.curves) >= 20  # the curves' matching has pairs to get wrong
    for n in SHARDS:
        got = _diagnosis(stores / f"sh{n}")
        assert got.sizes == want.sizes, n
        assert got.turnover == want.turnover, n
        assert (got.overlap.pairs(), got.overlap.intersections) == (want.overlap.pairs(), want.overlap.intersections)
        assert got.ppv == want.ppv, n
        _same_curves(got.curves, want.curves)
        assert got.store_snapshot == ShardedStore(stores / f"sh{n}").snapshot_id


def test_turnover_against_a_run_on_a_sharded_store_is_the_single_stores(stores, tmp_path):
    turnover = {}
    for name in ("single", "sh3"):
        r = cli("run", "frail", "--store", stores / name, "--as-of", "2026-04-30", "--out", tmp_path / name, "--json")
        assert r.exit_code == 0, r.output
        run_id = json.loads(r.stdout)["run_id"]
        d = _diagnosis(stores / name, against=run_id, window=0)
        turnover[name] = [dataclasses.replace(t, against=None) for t in d.turnover]
        assert [t.against for t in d.turnover] == [run_id, None, None]
    assert turnover["sh3"] == turnover["single"]


def test_the_cli_writes_the_single_stores_files_from_a_sharded_store(stores, tmp_path):
    out = {}
    for name in ("single", "sh4"):
        r = cli("diagnose", *RULES, "--store", stores / name, "--out", tmp_path / name, "--as-of", AS_OF.isoformat(),
                "--json")
        assert r.exit_code == 0, r.output
        drop = ("timings_s", "store_snapshot", "out_dir")
        out[name] = {k: v for k, v in json.loads(r.stdout).items() if k not in drop}
    assert out["sh4"] == out["single"]
    folder = f"diagnose-{AS_OF.isoformat()}"
    for table in ("sizes", "upset", "crisis"):
        want = pq.read_table(tmp_path / "single" / folder / f"{table}.parquet")
        assert pq.read_table(tmp_path / "sh4" / folder / f"{table}.parquet").equals(want), table
