"""A sharded store gives exactly what one store of the same patients gives, for each command
whose merge is built (docs/scale-out.md, build order step 2): the same dataset rows, in the
same order, with the same values and counts, however many shards."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from casefind.errors import CasefindError
from casefind.ingest.sharded import run_sharded_ingest
from casefind.lists.dataset import METADATA_KEY, dataset
from casefind.store import Store
from casefind.store.coverage import Coverage
from casefind.store.sharded import ShardedStore, coverage_of
from casefind_testdata import cli, single_and_sharded

RULES = Path(__file__).resolve().parents[2] / "rules"
SHARDS = (1, 2, 5)
# every shipped rule whose features are per patient (no rank within the population)
PER_PATIENT_RULES = ("frail", "multimorbidity", "charlson", "hfrs", "segments")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return single_and_sharded(tmp_path_factory.mktemp("merges"), 900, 11, SHARDS)


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


@pytest.mark.parametrize("engine", ["native", "duckdb"])
@pytest.mark.parametrize("rule", ["high_utilisers", "rising_risk"])
def test_ranks_within_the_population_are_exact_by_two_passes(stores, rule, engine):
    """top_cost (top 5%), cost_percentile and top_2pct rank within the whole population."""
    dates = ["2026-06-30", "2026-10-31"]
    want = dataset(_shipped(rule), stores / "single", as_of=dates)
    for n in SHARDS:
        got = dataset(_shipped(rule), stores / f"sh{n}", as_of=dates, engine=engine)
        assert got.replace_schema_metadata(None).equals(want.replace_schema_metadata(None)), (rule, n)


def test_the_cli_writes_a_sharded_dataset_with_exit_code_0(stores, tmp_path):
    ok = cli("dataset", _shipped("high_utilisers"), "--store", stores / "sh2", "--output", tmp_path / "d.parquet")
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "d.parquet").exists()


def test_codelists_check_counts_every_shards_codes(stores):
    """A code one shard holds, the store holds: the same report as one store's."""
    want = json.loads(cli("codelists", "check", "frail", "--store", stores / "single", "--json").stdout)
    for n in SHARDS:
        r = cli("codelists", "check", "frail", "--store", stores / f"sh{n}", "--json")
        assert r.exit_code == 0, r.output
        got = json.loads(r.stdout)
        assert got["codelists"] == want["codelists"] and got["codelists"], n


def test_a_script_that_opens_a_sharded_store_as_one_store_is_told_how(stores):
    with pytest.raises(CasefindError, match=r"sharded store .* opened as a single store") as e:
        Store.open(stores / "sh2")
    assert "open_any" in e.value.hint


def test_the_reference_engine_on_shards_gives_the_native_engines_single_store_table(stores):
    want = dataset(_shipped("frail"), stores / "single")
    got = dataset(_shipped("frail"), stores / "sh5", engine="duckdb")
    assert got.replace_schema_metadata(None).equals(want.replace_schema_metadata(None))


def test_a_missing_shard_is_a_clear_error_with_a_hint(stores, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(stores / "sh2", broken)
    shutil.rmtree(ShardedStore(broken).shard_path(1))
    with pytest.raises(CasefindError, match="shard 001") as e:
        dataset(_shipped("frail"), broken)
    assert "--shards N" in e.value.hint


# --- casefind run: the per-practice top-k merge -------------------------------------------------
LIST_SHARDS = (1, 3, 4)


@pytest.fixture(scope="module")
def practices(tmp_path_factory):
    """Enough patients for 3 practices in 2 localities, so that every cap has work to do."""
    root = single_and_sharded(tmp_path_factory.mktemp("lists"), 24000, 3, LIST_SHARDS)
    text = (RULES / "frail.yml").read_text()
    assert "limit: {per_practice: 25}" in text
    shutil.copytree(RULES / "codelists", root / "codelists")  # the rule's codelists, by its relative paths
    capped = root / "frail_caps.yml"
    capped.write_text(text.replace("limit: {per_practice: 25}",
                                   "limit: {per_practice: 60, per_locality: 100, total: 150}"))
    return root, capped


def _run(rule: Path, store: Path, out: Path) -> tuple:
    import pyarrow.parquet as pq

    r = cli("run", rule, "--store", store, "--out", out)
    assert r.exit_code == 0, r.output
    folder = next(out.iterdir())
    table = pq.read_table(folder / "list.parquet").replace_schema_metadata(None)
    manifest = json.loads((folder / "manifest.json").read_text())
    return table.drop_columns(["run_id"]) if "run_id" in table.column_names else table, manifest


@pytest.mark.parametrize("n", LIST_SHARDS)
@pytest.mark.parametrize("rule", ["caps", "frail", "segments", "hfrs", "high_utilisers", "rising_risk"])
def test_a_sharded_run_lists_exactly_the_single_stores_patients(practices, rule, n, tmp_path):
    root, capped = practices
    path = capped if rule == "caps" else _shipped(rule)
    want, wm = _run(path, root / "single", tmp_path / "single")
    got, gm = _run(path, root / f"sh{n}", tmp_path / "sharded")
    assert want.num_rows > 0
    assert got.equals(want)
    for key in ("counts", "excluded", "segments"):
        assert gm[key] == wm[key], key
    assert gm["store_shards"] == n and gm["store_snapshot"] == ShardedStore(root / f"sh{n}").snapshot_id


class _Elsewhere:
    """A mapper whose tasks run as a cluster's executors do: in another working folder, on a
    machine that cannot see the rule's folder (hidden here while the tasks run)."""

    def __init__(self, workdir: Path, rules: Path):
        self.workdir, self.rules, self.name = workdir, rules, "elsewhere"
        self.calls: list[str] = []  # what it ran, so a test knows the tasks went through it

    def map(self, store, task, what: str, say) -> list:
        from casefind.store.sharded import OneShardAtATime

        self.calls.append(what)
        here, hidden = Path.cwd(), self.rules.with_name("hidden")
        self.rules.rename(hidden)
        os.chdir(self.workdir)
        try:
            return OneShardAtATime().map(store, task, what, say)
        finally:
            os.chdir(here)
            hidden.rename(self.rules)


def test_shard_tasks_elsewhere_give_the_evidence_with_the_codelists_terms(practices, tmp_path, monkeypatch):
    """Evidence names a code by its codelist's term ("Pressure ulcer (disorder) (snomed
    399912005)"). Found on a standalone Spark cluster: executors read the codelist files by
    the rule's relative path from their own working folder, found none and gave bare codes."""
    from casefind.lists.run import run
    from casefind.store.sharded import mapped_by

    root, _ = practices
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules, ignore=shutil.ignore_patterns("kpis", "budgets", "tests"))
    (tmp_path / "executor").mkdir()
    monkeypatch.chdir(tmp_path)
    want, _ = _run(Path("rules/frail.yml"), root / "single", tmp_path / "single")
    with mapped_by(_Elsewhere(tmp_path / "executor", rules)):
        result = run("rules/frail.yml", root / "sh3", tmp_path / "sharded")
    got = pq.read_table(result.out_dir / "list.parquet").replace_schema_metadata(None).drop_columns(["run_id"])
    evidence = [c for c in want.column_names if c.startswith("evidence:")]
    assert evidence and any(") (snomed " in (t or "") for c in evidence for t in want.column(c).to_pylist())
    assert got.equals(want)


def test_a_dataset_and_kpis_from_shard_tasks_elsewhere_are_the_single_stores(practices, tmp_path, monkeypatch):
    """The other commands Spark runs most, by relative paths, with each shard's task in
    another folder and the rules hidden: nothing a task does may read the rule's files
    (checked by hand on a standalone cluster for every command; docs/scale-out.md)."""
    from casefind.store.sharded import mapped_by

    root, _ = practices
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules, ignore=shutil.ignore_patterns("budgets", "tests"))
    (tmp_path / "executor").mkdir()
    monkeypatch.chdir(tmp_path)
    want = dataset(Path("rules/frail.yml"), root / "single")
    want_kpis = _kpis(root / "single", tmp_path / "a.duckdb", tmp_path / "a.parquet", Path("rules/kpis"))
    with mapped_by(_Elsewhere(tmp_path / "executor", rules)) as elsewhere:
        got = dataset(Path("rules/frail.yml"), root / "sh3")
        datasets = len(elsewhere.calls)
        got_kpis = _kpis(root / "sh3", tmp_path / "b.duckdb", tmp_path / "b.parquet", Path("rules/kpis"))
    assert 0 < datasets < len(elsewhere.calls)  # both ran their shards' tasks through it
    assert want.num_rows > 0 and got.replace_schema_metadata(None).equals(want.replace_schema_metadata(None))
    assert want_kpis.num_rows > 0 and got_kpis.equals(want_kpis)


def test_the_caps_rule_exercises_every_cap(practices, tmp_path):
    root, capped = practices
    table, manifest = _run(capped, root / "single", tmp_path / "o")
    per_practice = {p: table.column("practice").to_pylist().count(p) for p in set(table.column("practice").to_pylist())}
    assert len(per_practice) >= 2 and table.num_rows == 150 and manifest["counts"]["capped"] > 0
    assert max(per_practice.values()) <= 60


# --- casefind kpi: additive pieces per practice, a shard at a time ---------------------------
def _kpis(store: Path, history: Path, export: Path, kpis: Path = RULES / "kpis"):
    r = cli("kpi", kpis / "triple_aim.yml", "--store", store, "--period", "2026-09",
            "--period", "2026-10", "--history", history)
    assert r.exit_code == 0, r.output
    r = cli("kpi", "--kpis", "triple_aim", "--store", store, "--history", history, "--export", export)
    assert r.exit_code == 0, r.output
    return pq.read_table(export).drop_columns(["run_id"])


@pytest.mark.parametrize("n", (1, 3))
def test_sharded_kpis_are_the_single_stores_at_every_level(practices, n, tmp_path):
    root, _ = practices
    want = _kpis(root / "single", tmp_path / "a.duckdb", tmp_path / "a.parquet")
    got = _kpis(root / f"sh{n}", tmp_path / "b.duckdb", tmp_path / "b.parquet")
    assert want.num_rows > 0 and set(want.column("level").to_pylist()) >= {"practice", "locality", "system",
                                                                                "provider", "service"}
    assert set(want.column("kind").to_pylist()) >= {"median"}, "a median (not additive) is among them"
    for name in want.column_names:  # sums are compensated, so shards added up give the same bits
        assert want.column(name).equals(got.column(name)), name


# --- review decisions: one log at the sharded root, each shard reads its own patients' ----------
def _decide(store: Path, decisions: list[tuple[str, str]]) -> None:
    for pid, decision in decisions:
        r = cli("review", "record", "--store", store, "--rule", "frail", "--patient", pid, "--decision", decision,
                "--on", "2026-11-02", "--reviewer", "dr_a")
        assert r.exit_code == 0, r.output


def _run_later(store: Path, out: Path) -> tuple:
    """frail a week after the decisions (which a rule sees only from their date on)."""
    import pyarrow.parquet as pq

    r = cli("run", RULES / "frail.yml", "--store", store, "--out", out, "--as-of", "2026-11-09", "--allow-partial")
    assert r.exit_code == 0, r.output
    folder = next(out.iterdir())
    table = pq.read_table(folder / "list.parquet").replace_schema_metadata(None).drop_columns(["run_id"])
    return table, json.loads((folder / "manifest.json").read_text())


def test_decisions_on_a_sharded_store_act_as_on_one_store_and_survive_a_reshard(practices, tmp_path):
    """Decisions recorded on a sharded store (casefind review record / show) exclude the same
    patients from the next list as on one store; re-ingesting as another number of shards
    keeps them (they are keyed by patient_id and read by whichever shard holds the patient)."""
    root, _ = practices
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    shutil.copytree(root / "single", single)
    shutil.copytree(root / "sh3", sharded)
    before, _ = _run(RULES / "frail.yml", single, tmp_path / "o1")
    assert _run(RULES / "frail.yml", sharded, tmp_path / "o2")[0].equals(before)
    ids = before.column("patient_id").to_pylist()
    decided = [(ids[0], "already_known"), (ids[1], "declined"), (ids[2], "accepted")]
    for store in (single, sharded):
        _decide(store, decided)
    shown = [cli("review", "show", "--store", s, "--json") for s in (single, sharded)]
    assert all(r.exit_code == 0 for r in shown) and json.loads(shown[0].output) == json.loads(shown[1].output)
    want, manifest = _run_later(single, tmp_path / "o3")
    assert {ids[0], ids[1]}.isdisjoint(want.column("patient_id").to_pylist()), "the decisions took effect"
    got, sharded_manifest = _run_later(sharded, tmp_path / "o4")
    assert got.equals(want) and sharded_manifest["excluded"] == manifest["excluded"]
    run_sharded_ingest(root / "src", sharded, 4)  # re-shard: a new generation of 4 shards
    assert ShardedStore(sharded).n_shards == 4
    again, again_manifest = _run_later(sharded, tmp_path / "o5")
    assert again.equals(want) and again_manifest["excluded"] == manifest["excluded"]


# --- casefind pyramid: members in one store's order, bands ranked once over all of them ------------
@pytest.mark.parametrize("rule, score, outcome", [("rising_risk", "risk", "next"),
                                                  ("rising_risk", "risk", "concurrent"),
                                                  ("high_utilisers", "cost_percentile", "concurrent")])
def test_a_sharded_pyramid_is_the_single_stores(stores, rule, score, outcome):
    """cost_percentile ranks within the population: its bands come from the two-pass pools."""
    from casefind.pyramid import compute, source
    from casefind.pyramid.bands import parse_bands
    from casefind.rules.compile import compile_rule
    from casefind.store.sharded import open_any

    scored = source.from_rule(compile_rule(_shipped(rule)), score)
    opts = compute.Options(parse_bands("0-0.5,0.5-5,5-20,20-100"), outcome=outcome)
    want = compute.run(Store.open(stores / "single"), scored, opts)
    assert want.meta["ranked"] > 0
    for n in SHARDS:
        got = compute.run(open_any(stores / f"sh{n}"), scored, opts)
        assert got.table.equals(want.table), (n, rule, outcome)
        differ = {k for k in want.meta if want.meta[k] != got.meta[k]}
        assert differ <= {"store_snapshot", "run_id"}, differ


def test_the_cli_draws_a_sharded_pyramid(stores, tmp_path):
    r = cli("pyramid", _shipped("rising_risk"), "--store", stores / "sh2", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    assert (next(tmp_path.iterdir()) / "pyramid.parquet").exists()


def test_a_sharded_pyramid_refuses_a_ranked_score_a_year_back(stores):
    """``next`` scores a year before as_of, under at(): pass 1 would pool the wrong date."""
    from casefind.pyramid import compute, source
    from casefind.pyramid.bands import parse_bands
    from casefind.rules.compile import compile_rule
    from casefind.store.sharded import open_any

    scored = source.from_rule(compile_rule(_shipped("high_utilisers")), "cost_percentile")
    opts = compute.Options(parse_bands("0-0.5,0.5-5,5-20,20-100"), outcome="next")
    with pytest.raises(CasefindError, match="inside at"):
        compute.run(open_any(stores / "sh2"), scored, opts)


# --- casefind model fit: the same rows in the same order, so the same fit -------------------------
def test_a_model_fitted_on_a_sharded_store_is_the_single_stores(practices):
    from casefind.models import pipeline
    from casefind.store.sharded import open_any

    root, _ = practices
    spec = RULES / "models" / "emergency_12m.yml"
    one = pipeline.run(spec, Store.open(root / "single"), say=lambda s: None)
    many = pipeline.run(spec, open_any(root / "sh3"), say=lambda s: None)
    want, got = pipeline.artefact_body(one), pipeline.artefact_body(many)
    assert want["training"]["patients"] > 1000
    for body in (want, got):
        body["training"].pop("snapshot_id")
    assert got == want  # coefficients, intercept, validation (c-statistics, calibration)
    assert "latent" in many["metrics"], "the truth folder was found through the shards"
    assert json.dumps(many["metrics"], default=str) == json.dumps(one["metrics"], default=str)


def test_a_kpi_that_ranks_is_refused_on_a_sharded_store(practices, tmp_path):
    """It would rank within each shard; refused with a clear error (exit 2), not wrong."""
    root, _ = practices
    text = (RULES / "kpis" / "triple_aim.yml").read_text()
    assert "  cost_12m: sum(activity.cost, within=months(12))\n" in text
    text = text.replace("  cost_12m: sum(activity.cost, within=months(12))\n",
                        "  cost_12m: sum(activity.cost, within=months(12))\n  cost_rank: percentile(cost_12m)\n")
    text = text.replace("    value: emergency_12m\n", "    value: cost_rank\n", 1)
    shutil.copytree(RULES, tmp_path / "rules")  # the KPI file's codelists and segments, by relative path
    kpi = tmp_path / "rules" / "kpis" / "ranked.yml"
    kpi.write_text(text)
    ok = cli("kpi", kpi, "--store", root / "single", "--period", "2026-10", "--history", tmp_path / "a.duckdb")
    assert ok.exit_code == 0, ok.output
    r = cli("kpi", kpi, "--store", root / "sh3", "--period", "2026-10", "--history", tmp_path / "b.duckdb")
    assert r.exit_code == 2 and "ranks within the population" in r.output and "Traceback" not in r.output
