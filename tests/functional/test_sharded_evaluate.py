"""`casefind evaluate` on a sharded store gives exactly what one store of the same patients
gives: the same matched pairs, balance and effects, however many shards (docs/scale-out.md).
An evaluation that ranks within the population is refused, not ranked within each shard."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from casefind.errors import UsageError
from casefind.evaluate.run import evaluate
from casefind.store.sharded import ShardedStore
from casefind_testdata import cli, single_and_sharded

SPEC = Path(__file__).resolve().parents[2] / "rules" / "evaluations" / "case_management.yml"
SHARDS = (1, 3, 4)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return single_and_sharded(tmp_path_factory.mktemp("sharded-evaluate"), 8000, 3, SHARDS)


def _nearest(tmp_path) -> Path:
    """The shipped evaluation with nearest-neighbour matching on the features (no model)."""
    text = SPEC.read_text().replace("method: propensity", "method: nearest").replace("caliper: 0.2", "caliper: 1.0")
    path = tmp_path / "nearest.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("method", ["propensity", "nearest"])
def test_a_sharded_evaluation_is_the_single_stores(stores, method, tmp_path):
    spec = SPEC if method == "propensity" else _nearest(tmp_path)
    want = evaluate(spec, stores / "single")
    assert want.counts["matched"] >= 20  # enough pairs that a wrong order would show
    for n in SHARDS:
        got = evaluate(spec, stores / f"sh{n}")
        assert got.counts == want.counts, n
        assert got.patient_ids.equals(want.patient_ids), n
        for field in ("set_id", "treated", "control", "month", "distance"):
            assert (getattr(got.matches, field) == getattr(want.matches, field)).all(), (n, field)
        assert got.balance == want.balance, n
        assert got.effects == want.effects, n
        assert got.snapshot_id == ShardedStore(stores / f"sh{n}").snapshot_id


def test_the_cli_writes_the_single_stores_files_from_a_sharded_store(stores, tmp_path):
    out = {}
    for name in ("single", "sh3"):
        r = cli("evaluate", SPEC, "--store", stores / name, "--out", tmp_path / name, "--json")
        assert r.exit_code == 0, r.output
        out[name] = json.loads(r.stdout)
        assert out[name]["counts"]["matched"] > 0
    assert out["sh3"]["effects"] == out["single"]["effects"]
    assert out["sh3"]["balance"] == out["single"]["balance"]
    for table in ("matches", "effects", "balance"):
        want = pq.read_table(tmp_path / "single" / "evaluate-case_management" / f"{table}.parquet")
        got = pq.read_table(tmp_path / "sh3" / "evaluate-case_management" / f"{table}.parquet")
        assert got.equals(want), table
    manifest = json.loads((tmp_path / "sh3" / "evaluate-case_management" / "manifest.json").read_text())
    assert manifest["snapshot_id"] == ShardedStore(stores / "sh3").snapshot_id


def test_an_evaluation_that_ranks_within_the_population_is_refused_on_a_sharded_store(stores, tmp_path):
    """It would rank within each shard; refused with a clear error (exit 2), not wrong."""
    text = SPEC.read_text().replace("coded_conditions: count_distinct(diagnoses.code)",
                                    "coded_conditions: percentile(count_distinct(diagnoses.code))")
    assert "percentile(" in text
    path = tmp_path / "ranked.yml"
    path.write_text(text)
    evaluate(path, stores / "single")  # fine on one store
    with pytest.raises(UsageError, match="ranks within the population"):
        evaluate(path, stores / "sh3")
    r = cli("evaluate", path, "--store", stores / "sh3", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "single store" in r.output and "Traceback" not in r.output
