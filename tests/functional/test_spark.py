"""Apache Spark local mode (several worker threads) gives exactly the single store's
results: lists, datasets (ranks within the population included, by the two passes),
KPIs at every level, before and after disclosure control, and budgets (docs/scale-out.md, "Spark").
The executors run the same per-shard tasks as one machine; these tests check the wiring
(partitions, pickling, errors coming back) gives the same bits."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from casefind import spark as cfspark
from casefind.errors import CasefindError
from casefind.kpis import compute
from casefind.kpis.periods import parse
from casefind.kpis.run import run_kpis
from casefind.kpis.sharded import compute_sharded
from casefind.lists.dataset import dataset
from casefind.lists.run import run
from casefind.store.sharded import ShardedStore, open_any
from casefind_testdata import cli, single_and_sharded

RULES = Path(__file__).resolve().parents[2] / "rules"
SHARDS = (2, 7)


@pytest.fixture(scope="module")
def spark():
    session = cfspark.start_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return single_and_sharded(tmp_path_factory.mktemp("spark"), 6000, 5, SHARDS)


def _bare(table):
    return table.replace_schema_metadata(None)


@pytest.mark.parametrize("n", SHARDS[-1:])  # 7: every shard a partition, more than the worker threads
@pytest.mark.parametrize("rule", ["frail", "segments", "high_utilisers", "rising_risk"])
def test_a_dataset_on_spark_is_the_single_stores(spark, stores, rule, n):
    path = RULES / f"{rule}.yml"
    dates = ["2026-06-30", "2026-10-31"]
    want = dataset(path, stores / "single", as_of=dates)
    with cfspark.on(spark):
        got = dataset(path, stores / f"sh{n}", as_of=dates)
    assert want.num_rows > 0 and _bare(got).equals(_bare(want))


def _list(result):
    table = pq.read_table(result.out_dir / "list.parquet")
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    return _bare(table.drop_columns(["run_id"])), manifest


@pytest.mark.parametrize("n", SHARDS)
@pytest.mark.parametrize("rule", ["high_utilisers"])  # ranks, two passes, caps; frail runs through the CLI test
def test_a_list_on_spark_is_the_single_stores(spark, stores, rule, n, tmp_path):
    path = RULES / f"{rule}.yml"
    want, a = _list(run(path, stores / "single", tmp_path / "one"))
    here, c = _list(run(path, stores / f"sh{n}", tmp_path / "here"))  # at 7 shards this once failed its
    with cfspark.on(spark):                                           # re-check (recheck._by_reach)
        got, b = _list(run(path, stores / f"sh{n}", tmp_path / "spark"))
    assert want.num_rows > 0 and got.equals(want) and here.equals(want)
    for m in (b, c):
        assert (a["counts"], a["excluded"], a.get("segments")) == (m["counts"], m["excluded"], m.get("segments"))


PERIODS = ("2026-09", "2026-10")
TRIPLE_AIM = RULES / "kpis" / "triple_aim.yml"


def _before_disclosure(store_root: Path) -> pa.Table:
    periods = [parse(p) for p in PERIODS]
    ksets = compute.compile_for(TRIPLE_AIM, periods, None)
    store = open_any(store_root)
    if isinstance(store, ShardedStore):
        return compute_sharded(store, ksets, "r")
    return compute.compute(store, ksets, compute.evaluate_chunks(store, ksets), "r")


def _same(a: pa.Table, b: pa.Table) -> None:
    a, b = a.drop_columns(["run_id"]), b.drop_columns(["run_id"])
    assert a.num_rows > 0 and {"practice", "locality", "system", "provider"} <= set(a.column("level").to_pylist())
    for name in a.column_names:
        assert a.column(name).equals(b.column(name)), name


def test_kpis_on_spark_are_the_single_stores_before_and_after_disclosure_control(spark, stores, tmp_path):
    want = _before_disclosure(stores / "single")
    with cfspark.on(spark):
        got = _before_disclosure(stores / "sh7")
    _same(want, got)
    periods = [parse(p) for p in PERIODS]
    want = run_kpis(TRIPLE_AIM, stores / "single", periods, history_path=tmp_path / "a.duckdb").results
    with cfspark.on(spark):
        got = run_kpis(TRIPLE_AIM, stores / "sh7", periods, history_path=tmp_path / "b.duckdb").results
    assert pc.sum(want.column("suppressed")).as_py() > 0, "disclosure control had cells to suppress"
    _same(want, got)


def test_the_cli_runs_a_list_on_spark(spark, stores, tmp_path):
    jobs = spark.sparkContext.statusTracker()
    before = len(jobs.getJobIdsForGroup())
    r = cli("spark", "--master", "local[2]", "run", RULES / "frail.yml", "--store", stores / "sh2",
            "--out", tmp_path / "cli")
    assert r.exit_code == 0, r.output
    assert len(jobs.getJobIdsForGroup()) > before, "the shards went through Spark"
    one = cli("run", RULES / "frail.yml", "--store", stores / "single", "--out", tmp_path / "one")
    assert one.exit_code == 0
    a = pq.read_table(next((tmp_path / "one").iterdir()) / "list.parquet").drop_columns(["run_id"])
    b = pq.read_table(next((tmp_path / "cli").iterdir()) / "list.parquet").drop_columns(["run_id"])
    assert _bare(a).equals(_bare(b))
    assert spark.sparkContext._jsc is not None, "the CLI left the running session alone"


def test_the_cli_runs_a_budget_on_spark(spark, stores, tmp_path):
    """`casefind spark budget`: both passes (the parts, then the store's record numbers) on
    the executors, every table of the folder the single store's."""
    budget, args = RULES / "budgets" / "lead_provider.yml", ("--year", "2026-27", "--history", tmp_path / "k.duckdb")
    jobs = spark.sparkContext.statusTracker()
    before = len(jobs.getJobIdsForGroup())
    r = cli("spark", "budget", budget, "--store", stores / "sh2", "--out", tmp_path / "spark", *args,
            "--register", tmp_path / "a.duckdb")
    assert r.exit_code == 0, r.output
    assert len(jobs.getJobIdsForGroup()) >= before + 2, "both passes went through Spark"
    one = cli("budget", budget, "--store", stores / "single", "--out", tmp_path / "one", *args,
              "--register", tmp_path / "b.duckdb")
    assert one.exit_code == 0, one.output
    want, got = (tmp_path / d / "budget-lead_provider-2026-27" for d in ("one", "spark"))
    for f in sorted(want.glob("*.parquet")):
        assert pq.read_table(got / f.name).equals(pq.read_table(f)), f.name


def test_a_single_store_on_spark_is_refused_clearly(spark, stores, tmp_path):
    r = cli("spark", "run", RULES / "frail.yml", "--store", stores / "single", "--out", tmp_path / "x")
    assert r.exit_code == 1 and "single store" in r.output and "--shards N" in r.output
    assert "Traceback" not in r.output


def test_a_users_error_on_an_executor_comes_back_as_itself(spark, stores, tmp_path):
    """A shard that is not the snapshot shards.json names: StoreError raised on the executor."""
    broken = tmp_path / "broken"
    shutil.copytree(stores / "sh2", broken)
    manifest = json.loads((broken / "shards.json").read_text())
    manifest["shards"][1]["snapshot_id"] = "0" * 16
    (broken / "shards.json").write_text(json.dumps(manifest))
    with cfspark.on(spark), pytest.raises(CasefindError, match="shard 001 holds snapshot") as e:
        dataset(RULES / "frail.yml", broken)
    assert "--shards N" in e.value.hint
    r = cli("spark", "dataset", RULES / "frail.yml", "--store", broken, "-o", tmp_path / "d.parquet")
    assert r.exit_code == 1 and "shard 001" in r.output and "Traceback" not in r.output


def test_the_mapper_is_spark_only_inside_the_block(spark, stores):
    from casefind.store.sharded import current_mapper

    with cfspark.on(spark) as mapper:
        assert current_mapper() is mapper and "Spark" in mapper.name
    assert current_mapper().name == "this machine"
    assert ShardedStore(stores / "sh2").map(lambda shard, i: shard.n_patients, "counting") == [
        m.patients for m in ShardedStore(stores / "sh2").shard_manifest.shards]


def test_a_bug_on_an_executor_comes_back_as_a_clear_failure_naming_the_shard(spark, stores):
    from casefind.spark.mapper import ShardTaskFailed

    def _broken_task(shard, i):  # defined here: pickled by value, so the executor can run it
        raise ValueError(f"boom on {i}")

    with cfspark.on(spark), pytest.raises(ShardTaskFailed, match="shard 000 failed on a Spark executor: "
                                                               "ValueError: boom on 0") as e:
        ShardedStore(stores / "sh2").map(_broken_task, "breaking")
    assert "executor's log" in e.value.hint


def test_a_failed_spark_job_is_a_clear_failure(spark, stores):
    """A task the executors cannot even load (here: a function of a test module that is not
    on their path) fails the job; that comes back as one failure, not Py4J's wall of text."""
    from casefind.spark.mapper import ShardTaskFailed

    with cfspark.on(spark), pytest.raises(ShardTaskFailed, match="the Spark job for loading failed"):
        ShardedStore(stores / "sh2").map(_module_level_task, "loading")


def _module_level_task(shard, i):
    return i


def test_the_cli_runs_diagnose_evaluate_and_quality_on_spark(spark, stores, tmp_path):
    """Their per-shard tasks (patients, cohorts, monthly costs; index dates and values;
    the quality counts and the dates) pickled to the executors and back: the single store's
    answers."""
    jobs = spark.sparkContext.statusTracker()
    commands = {
        "diagnose": (("frail", "high_utilisers", "--as-of", "2026-10-31"), ("timings_s", "store_snapshot", "out_dir")),
        "evaluate": ((RULES / "evaluations" / "case_management.yml",), ("timings_s", "run_id", "folder")),
        "quality": ((), ("store", "snapshot_id", "created", "generated", "trend")),
    }
    for name, (args, own) in commands.items():
        out = ("--out", tmp_path / name) if name != "quality" else ()
        before = len(jobs.getJobIdsForGroup())
        r = cli("spark", name, *args, "--store", stores / "sh7", *out, "--json")
        assert r.exit_code == 0, (name, r.output)
        assert len(jobs.getJobIdsForGroup()) > before, f"{name}'s shards went through Spark"
        one = cli(name, *args, "--store", stores / "single", *(("--out", tmp_path / f"{name}-one") if out else ()),
                  "--json")
        assert one.exit_code == 0, (name, one.output)
        got, want = (json.loads(x.stdout[x.stdout.index("{"):]) for x in (r, one))
        assert {k: v for k, v in got.items() if k not in own} == {k: v for k, v in want.items() if k not in own}, name


def _shards_of(root: Path) -> list[tuple]:
    from casefind.store.shards import read_manifest

    m = read_manifest(root)
    return [(s.snapshot_id, s.patients, s.rows) for s in m.shards]


def test_an_ingest_on_spark_builds_the_shards_one_machine_builds(spark, tmp_path):
    """`casefind spark ingest --shards 3` of a delivery whose activity and diagnoses are
    folders of Parquet parts, as a lake holds them: each part split on an executor, each
    shard built on one (and built again there where a spell id is shared across shards):
    the same shards, quarantines and identities as one machine builds from the same
    delivery in single files."""
    from tests.functional.test_sharded_spells import N_SHARDS, _share_spells, as_parts

    from casefind.ingest.sharded import run_sharded_ingest
    from casefind.store.reader import Store
    from casefind.store.shards import read_manifest

    assert cli("synth", "--patients", 600, "--seed", 5, "--out", tmp_path / "src").exit_code == 0
    _share_spells(tmp_path / "src")
    want = run_sharded_ingest(tmp_path / "src", tmp_path / "one", N_SHARDS)
    jobs = spark.sparkContext.statusTracker()
    before = len(jobs.getJobIdsForGroup())
    as_parts(tmp_path / "src", tmp_path / "lake")
    r = cli("spark", "ingest", tmp_path / "lake", "--store", tmp_path / "spark", "--shards", N_SHARDS, "--json")
    assert r.exit_code == 0, r.output
    assert len(jobs.getJobIdsForGroup()) >= before + 4, "two tables' parts split, shards built, some again, on Spark"
    got = json.loads(r.stdout[r.stdout.index("{"):])
    assert got["snapshot_id"] == want.snapshot_id and _shards_of(tmp_path / "spark") == _shards_of(tmp_path / "one")
    assert sum(got["tables"]["activity"]["quarantined"].values()) > 0
    for a, b in zip(*(read_manifest(tmp_path / d).shards for d in ("one", "spark")), strict=True):
        one, other = Store.open(tmp_path / "one" / a.folder), Store.open(tmp_path / "spark" / b.folder)
        for table in ("activity", "diagnoses"):
            assert other.quarantine(table).equals(one.quarantine(table)), (a.id, table)
    ids = sorted(p.name for p in (tmp_path / "spark-identities").glob("shards-*/shard-*"))
    assert ids == [f"shard-{i:03d}" for i in range(N_SHARDS)]


def test_strict_on_spark_refuses_as_one_machine_does(spark, tmp_path):
    from casefind_testdata import GOOD, write_source

    bad = {**GOOD, "diagnoses": [(d[0], "bad-date", *d[2:]) for d in GOOD["diagnoses"]]}
    src = write_source(tmp_path / "src", bad)
    one = cli("ingest", src, "--store", tmp_path / "one", "--shards", 2, "--strict", "--json")
    r = cli("spark", "ingest", src, "--store", tmp_path / "s", "--shards", 2, "--strict", "--json")
    assert r.exit_code == one.exit_code == 3 and "Traceback" not in r.output
    assert "shards 1, 2 of 2: --strict" in r.output
    got, want = (json.loads(x.stdout[x.stdout.index("{"):]) for x in (r, one))
    assert got["tables"] == want["tables"] and got["quarantined_total"] > 0
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("shards", [(), ("--shards", "1")])
def test_a_single_store_ingest_on_spark_is_refused_before_anything_is_built(tmp_path, shards):
    from casefind_testdata import GOOD, write_source

    src = write_source(tmp_path / "src", GOOD)
    r = cli("spark", "ingest", src, "--store", tmp_path / "s", *shards)
    assert r.exit_code == 2 and "--shards N" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "s").exists()


def test_a_dead_session_does_not_hide_the_jobs_error():
    """A job that runs the driver out of memory kills its JVM; stopping that session then
    fails (Connection refused). The CLI stops the session when the command ends, and that
    failure once replaced the job's own error with "cannot read or write a file"."""

    class Dead:
        def stop(self):
            raise ConnectionRefusedError(111, "Connection refused")

    mapper = cfspark.SparkShards(master="local[1]")
    mapper._spark = Dead()  # as if this mapper had started it
    mapper.stop()
    assert mapper._spark is None


def test_driver_memory_is_checked_before_spark_starts(tmp_path):
    r = cli("spark", "--driver-memory", "lots", "quality", "--store", tmp_path)
    assert r.exit_code == 2 and "not a memory size" in r.output and "4g or 8192m" in r.output
    assert "Traceback" not in r.output
