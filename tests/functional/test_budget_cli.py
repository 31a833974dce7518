"""`casefind budget FILE --year 2026-27` end to end on a synthetic store: the folder's files
and columns (the interface other commands read), conservation, both engines, errors."""
from __future__ import annotations

import json

import click
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from casefind.cli import main
from casefind.cli_budget import DefaultGroup, budget
from casefind_testdata import cli, synthetic_store


def test_the_budget_group_is_registered_with_its_subcommands():
    assert main.commands["budget"] is budget
    assert set(budget.commands) == {"run", "simulate", "statement"}

SCHEMAS = {
    "tariffs": {"category": pa.string(), "label": pa.string(), "people": pa.int64(), "trimmed": pa.int64(),
                "merged_into": pa.string(), "baseline_mean": pa.float64(), "trimmed_mean": pa.float64(),
                "uplift": pa.float64(), "tariff": pa.float64(), "incentive": pa.float64(), "source": pa.string()},
    "register": {"patient_id": pa.string(), "practice_code": pa.string(), "locality_code": pa.string(),
                 "system_code": pa.string(), "category": pa.string(), "joined": pa.date32(), "left": pa.date32(),
                 "join_reason": pa.string(), "leave_reason": pa.string(), "days_in_year": pa.int64(),
                 "budget": pa.float64()},
    "monthly": {"level": pa.string(), "unit_code": pa.string(), "unit_name": pa.string(), "parent_code": pa.string(),
                "month": pa.string(), "month_start": pa.date32(), "category": pa.string(), "people": pa.int64(),
                "cohort_days": pa.int64(), "budget": pa.float64(), "actual": pa.float64(), "variance": pa.float64(),
                "forecast": pa.float64(), "complete": pa.bool_()},
    "movement": {"month": pa.string(), "joined": pa.int64(), "left_died": pa.int64(), "left_deregistered": pa.int64(),
                 "left_no_longer_qualifies": pa.int64(), "cost_joiners": pa.float64(), "cost_leavers": pa.float64(),
                 "budget_joiners": pa.float64(), "budget_leavers": pa.float64()},
    "tagged_activity": {"patient_id": pa.string(), "practice_code": pa.string(), "category": pa.string(),
                        "record": pa.int64(), "spell_id": pa.string(), "start_date": pa.date32(),
                        "setting": pa.string(), "provider_code": pa.string(), "funding": pa.string(),
                        "cost": pa.float64(), "month": pa.string()},
    "shadow": {"scope": pa.string(), "level": pa.string(), "unit_code": pa.string(), "unit_name": pa.string(),
               "people": pa.int64(), "budget": pa.float64(), "actual": pa.float64(), "variance": pa.float64()},
}
STATEMENT_KEYS = {"budget", "title", "year", "year_start", "year_end", "file", "file_sha256", "store_snapshot",
                  "as_of", "run_id", "profile", "profile_weights", "baseline_year", "trim", "totals", "risk_share",
                  "outcomes", "adjusted_total", "notes"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("budget_synth"), 12_000, 5)


@pytest.fixture(scope="module")
def ran(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("budget_out")
    r = cli("budget", "ltc_year_of_care", "--year", "2026-27", "--store", store, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout), out / "budget-ltc_year_of_care-2026-27"


def test_the_folder_holds_the_interface(ran):
    said, folder = ran
    for name, columns in SCHEMAS.items():
        schema = pq.read_schema(folder / f"{name}.parquet")
        for col, typ in columns.items():
            assert schema.field(col).type == typ, (name, col)
    statement = json.loads((folder / "statement.json").read_text())
    assert set(statement) >= STATEMENT_KEYS and len(statement["profile_weights"]) == 12
    assert set(statement["totals"]) >= {"people_start", "people_end", "budget", "actual", "variance"}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {f"{n}.parquet" for n in SCHEMAS} | {"statement.json"}
    assert said["folder"] == str(folder) and said["run_id"] == statement["run_id"] == manifest["run_id"]
    assert said["totals"]["budget"] == pytest.approx(statement["totals"]["budget"])


def test_levels_add_up_and_tagged_records_are_the_actual(ran):
    _, folder = ran
    monthly = pq.read_table(folder / "monthly.parquet")
    assert len(set(monthly["unit_code"].filter(pc.equal(monthly["level"], "practice")).to_pylist())) > 1
    for col in ("budget", "actual", "people"):
        sums = {lv: pc.sum(monthly.filter(pc.and_(pc.equal(monthly["level"], lv),
                                                  pc.equal(monthly["category"], "all")))[col]).as_py()
                for lv in ("practice", "locality", "system")}
        assert sums["practice"] == pytest.approx(sums["locality"]) == pytest.approx(sums["system"]), col
    tagged = pq.read_table(folder / "tagged_activity.parquet")
    system = monthly.filter(pc.and_(pc.equal(monthly["level"], "system"), pc.equal(monthly["category"], "all")))
    assert pc.sum(tagged["cost"]).as_py() == pytest.approx(pc.sum(system["actual"]).as_py())
    assert len(set(tagged["record"].to_pylist())) == tagged.num_rows  # a record is tagged once
    register = pq.read_table(folder / "register.parquet")
    assert pc.sum(register["budget"]).as_py() == pytest.approx(pc.sum(system["budget"]).as_py())
    assert set(tagged["funding"].to_pylist()) <= {"activity"}


def test_both_engines_give_the_same_register_and_budget(store, tmp_path, ran):
    _, folder = ran
    r = cli("budget", "ltc_year_of_care", "--year", "2026-27", "--store", store, "--out", tmp_path,
            "--engine", "duckdb", "--register", tmp_path / "budgets.duckdb")
    assert r.exit_code == 0, r.output
    other = tmp_path / folder.name
    for name in ("register", "tariffs", "monthly", "tagged_activity"):
        a, b = pq.read_table(folder / f"{name}.parquet"), pq.read_table(other / f"{name}.parquet")
        assert a.equals(b), name


def test_the_lead_provider_file_runs_by_name(store, tmp_path):
    r = cli("budget", "lead_provider", "--year", "2026-27", "--store", store, "--out", tmp_path)
    assert r.exit_code == 0, r.output
    register = pq.read_table(tmp_path / "budget-lead_provider-2026-27" / "register.parquet")
    tariffs = set(np.round(np.array(register["budget"].to_pylist())[np.array(register["days_in_year"].to_pylist())
                                                                    == 365], 6).tolist())
    assert tariffs <= {70.0, 150.0, 260.0, 94.0, 174.0, 284.0}
    assert "Tariffs" in r.output


@pytest.mark.parametrize("args, code, said", [
    (["--year", "2026-28"], 2, "runs into the next year"),
    (["--year", "2030-31"], 2, "outside the store's data"),
])
def test_usage_errors(store, tmp_path, args, code, said):
    r = cli("budget", "ltc_year_of_care", *args, "--store", store, "--out", tmp_path)
    assert r.exit_code == code and said in r.output


def test_a_budget_file_with_an_error_is_located(store, tmp_path):
    bad = tmp_path / "budgets" / "bad.yml"
    bad.parent.mkdir()
    bad.write_text('budget: bad\ncohort: {when: "age >= 18"}\ncategories:\n  all: {when: "ltc_count > 1"}\n')
    r = cli("budget", bad, "--year", "2026-27", "--store", store, "--out", tmp_path)
    assert r.exit_code == 4 and f"{bad}:4:15" in r.output and "hint:" in r.output
    r = cli("budget", "no_such_budget", "--year", "2026-27", "--store", store)
    assert r.exit_code == 2 and "lead_provider" in r.output


def test_subcommands_can_be_added_beside_the_default():
    group = DefaultGroup("g")

    @group.command("run")
    @click.argument("file")
    def _run(file):
        click.echo(f"run {file}")

    @group.command("simulate")
    def _simulate():
        click.echo("simulate")

    assert CliRunner().invoke(group, ["x.yml"]).output == "run x.yml\n"
    assert CliRunner().invoke(group, ["simulate"]).output == "simulate\n"
    assert "Commands" in cli("budget").output
