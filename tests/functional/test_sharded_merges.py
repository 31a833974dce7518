"""A sharded store gives exactly what one store of the same patients gives, for each command
whose merge is built (docs/scale-out.md, build order step 2): the same dataset rows, in the
same order, with the same values and counts, however many shards."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from casefind.errors import CasefindError
from casefind.ingest.sharded import run_sharded_ingest
from casefind.lists.dataset import METADATA_KEY, dataset
from casefind.store import Store
from casefind.store.coverage import Coverage
from casefind.store.sharded import ShardedStore, coverage_of
from casefind_testdata import cli

RULES = Path(__file__).resolve().parents[2] / "rules"
SHARDS = (1, 2, 5)
# every shipped rule whose features are per patient (no rank within the population)
PER_PATIENT_RULES = ("frail", "multimorbidity", "charlson", "hfrs", "segments")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("merges")
    r = cli("synth", "--patients", 900, "--seed", 11, "--out", root / "src")
    assert r.exit_code == 0, r.output
    assert cli("ingest", root / "src", "--store", root / "single").exit_code == 0
    for n in SHARDS:
        run_sharded_ingest(root / "src", root / f"sh{n}", n)
    return root


def _meta(table) -> dict:
    return json.loads(table.schema.metadata[METADATA_KEY.encode()])


def _shipped(name: str) -> Path:
    return RULES / f"{name}.yml"


@pytest.mark.parametrize("n", SHARDS)
@pytest.mark.parametrize("rule", PER_PATIENT_RULES)
def test_a_sharded_dataset_is_the_single_stores(stores, rule, n):
    path = _shipped(rule)
    want = dataset(path, stores / "single")
    got = dataset(path, stores / f"sh{n}")
    assert want.num_rows > 0
    assert got.replace_schema_metadata(None).equals(want.replace_schema_metadata(None))
    a, b = _meta(want), _meta(got)
    assert a["counts"] == b["counts"]
    assert b["store_snapshot"] == ShardedStore(stores / f"sh{n}").snapshot_id


def test_many_dates_merge_date_by_date(stores):
    path = _shipped("frail")
    dates = ["2026-04-30", "2026-10-31"]
    want = dataset(path, stores / "single", as_of=dates)
    got = dataset(path, stores / "sh5", as_of=dates)
    assert got.replace_schema_metadata(None).equals(want.replace_schema_metadata(None))
    assert [c["population"] for c in _meta(got)["counts"]] == [c["population"] for c in _meta(want)["counts"]]


def test_the_sharded_coverage_spans_every_shard_as_one_store_would(stores):
    single = Coverage.of(Store.open(stores / "single").manifest)
    for n in SHARDS:
        got = coverage_of(stores / f"sh{n}")
        assert (got.first, got.last) == (single.first, single.last)


def test_ranks_within_the_population_are_refused_clearly_not_approximated(stores):
    with pytest.raises(CasefindError, match="rank within the whole population") as e:
        dataset(_shipped("high_utilisers"), stores / "sh2")
    assert "single store" in e.value.hint


def test_the_cli_writes_a_sharded_dataset_and_refuses_ranks_with_exit_code_1(stores, tmp_path):
    ok = cli("dataset", _shipped("frail"), "--store", stores / "sh2", "--output", tmp_path / "d.parquet")
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "d.parquet").exists()
    bad = cli("dataset", _shipped("high_utilisers"), "--store", stores / "sh2", "--output", tmp_path / "h.parquet")
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert "rank within the whole population" in bad.output and not (tmp_path / "h.parquet").exists()


def test_commands_whose_merge_is_not_built_still_refuse_a_sharded_store(stores, tmp_path):
    r = cli("run", _shipped("frail"), "--store", stores / "sh2", "--out", tmp_path / "o")
    assert r.exit_code == 1 and "sharded store" in r.output and "Traceback" not in r.output


def test_the_reference_engine_on_shards_gives_the_native_engines_single_store_table(stores):
    want = dataset(_shipped("frail"), stores / "single")
    got = dataset(_shipped("frail"), stores / "sh5", engine="duckdb")
    assert got.replace_schema_metadata(None).equals(want.replace_schema_metadata(None))


def test_a_missing_shard_is_a_clear_error_with_a_hint(stores, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(stores / "sh2", broken)
    shutil.rmtree(ShardedStore(broken).shard_path(1))
    with pytest.raises(CasefindError, match="shard 001") as e:
        dataset(_shipped("frail"), broken)
    assert "--shards N" in e.value.hint
