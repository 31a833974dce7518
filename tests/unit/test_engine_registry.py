"""The engine registry (casefind.engines.base): every registered engine evaluates a rule to
the same table, an unknown engine name is a usage error with a did-you-mean, and the spec
tests, the CLI and the API all take their engines from the one registry."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import spec_helpers
from casefind.engines import base
from casefind.engines.base import ENGINES, REFERENCE, Engine, get_engine
from casefind.errors import EXIT_USAGE, UsageError
from casefind.rules.compile import compile_rule
from casefind.store import Store
from spec_helpers import evaluate_case, patient, same

AS_OF = "2026-10-31"
TABLES = {
    "patients": [patient("a", birth="1940-05-01"), patient("b", sex="M"), patient("c", death="2026-01-01"),
                 patient("d", birth="1990-02-28")],
    "activity": [("a", "2026-03-01", None, "ae", "120.5", None, None, None),
                 ("a", "2026-09-30", None, "emergency_admission", "900", None, None, None),
                 ("b", "2025-01-01", None, "gp", None, None, None, None),
                 ("d", "2026-10-31", None, "ae", "80", None, None, None)],
}
FEATURES = ("  visits: count(activity, within=months(12))\n"
            "  any_ae: exists(activity, setting == \"ae\")\n"
            "  spend: mean(activity.cost)\n"
            "  last_seen: last(activity.start_date)\n"
            "  older: age >= 80\n"
            "  who: sex\n"
            "  rank: percentile(visits)\n"
            "  busiest: top(visits, 50%)\n")
POPULATION = "registered and alive"
EXPECTED = {
    "a": {"visits": 2, "any_ae": True, "spend": 510.25, "last_seen": "2026-09-30", "older": True, "who": "F",
          "rank": 100 * 2 / 3, "busiest": True},
    "b": {"visits": 0, "any_ae": False, "spend": None, "last_seen": "2025-01-01", "older": False, "who": "M",
          "rank": 0.0, "busiest": False},
    "d": {"visits": 1, "any_ae": True, "spend": 80.0, "last_seen": "2026-10-31", "older": False, "who": "F",
          "rank": 100 * 1 / 3, "busiest": True},  # 1 of 3 above: fewer than 50% of 3
}


def _case(folder: Path, engine: str) -> dict[str, dict]:
    return evaluate_case(folder, engine, TABLES, FEATURES, AS_OF, population=POPULATION)


def test_the_registry_holds_engines_by_name_and_one_reference():
    assert {"native", "duckdb"} <= set(ENGINES)
    for name, engine in ENGINES.items():
        assert isinstance(engine, Engine) and engine.name == name
        assert get_engine(name) is engine
    assert [name for name, e in ENGINES.items() if e.reference] == [REFERENCE]


def test_spec_helpers_runs_every_registered_engine():
    assert spec_helpers.ENGINES is ENGINES


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_each_engine_gives_the_expected_values(tmp_path, engine):
    got = _case(tmp_path, engine)
    for pid, want in EXPECTED.items():
        for k, v in want.items():
            assert (v is None and got[pid][k] is None) or same(got[pid][k], v), (engine, pid, k, got[pid][k], v)
    # dead, so outside the population: not counted in anyone's rank, but placed within it
    assert (got["c"]["visits"], got["c"]["rank"], got["c"]["busiest"]) == (0, 0.0, False)


def test_every_engine_evaluates_the_rule_to_the_same_table(tmp_path):
    _case(tmp_path, REFERENCE)  # the store and rule.yml
    rule = compile_rule(tmp_path / "rule.yml")
    store = Store.open(tmp_path / "store")
    tables = {name: e.evaluate(store, rule.features, rule.as_of, rule.population) for name, e in ENGINES.items()}
    ref = tables[REFERENCE]
    assert ref.column_names == ["patient", *rule.features]
    assert ref.column("patient").to_pylist() == list(range(store.n_patients))
    for name, t in tables.items():
        assert t.column_names == ref.column_names, name
        assert [f.type for f in t.schema] == [f.type for f in ref.schema], name
        for a, b in zip(ref.to_pylist(), t.to_pylist()):
            for k in ref.column_names:
                assert (a[k] is None and b[k] is None) or same(b[k], a[k]), (name, k, a[k], b[k])


@pytest.mark.parametrize("ranked", [True, False])
def test_every_engine_evaluates_a_subset_of_patients_as_their_rows_of_the_whole(tmp_path, ranked):
    _case(tmp_path, REFERENCE)
    rule = compile_rule(tmp_path / "rule.yml")
    store = Store.open(tmp_path / "store")
    features = {k: v for k, v in rule.features.items() if ranked or k not in ("rank", "busiest")}
    whole = ENGINES[REFERENCE].evaluate(store, features, rule.as_of, rule.population).to_pylist()
    for name, e in ENGINES.items():  # in store order, each once, ranked within the whole population
        sub = e.evaluate(store, features, rule.as_of, rule.population, patients=[3, 0, 3]).to_pylist()
        assert [r["patient"] for r in sub] == [0, 3], name
        for row in sub:
            for k, v in row.items():
                w = whole[row["patient"]][k]
                assert (v is None and w is None) or same(v, w), (name, k, v, w)


def test_the_reference_engine_takes_only_the_columns_its_sql_reads_and_fails_loudly_on_others(tmp_path):
    """A re-check of a few patients took every column of every table: their rows lie all over
    each mapped column, so that mapped most of the store. Now only what ``columns_read``
    names is taken; SQL reading anything else fails, never reads a silent NULL."""
    import duckdb

    from casefind.engines import duckdb_sql

    _case(tmp_path, REFERENCE)
    rule = compile_rule(tmp_path / "rule.yml")
    store = Store.open(tmp_path / "store")
    visits = {"visits": rule.features["visits"]}
    assert duckdb_sql.columns_read(visits.values()) == {"activity": {"start_date"}}
    assert duckdb_sql.columns_read([rule.features["spend"]]) == {"activity": {"start_date", "cost"}}
    con = duckdb.connect()
    duckdb_sql.register_store(con, store, only=np.array([0, 3]), columns=duckdb_sql.columns_read(visits.values()))
    assert con.sql("SELECT patient, start_date FROM activity ORDER BY row").fetchall() == [
        (0, dt.date(2026, 3, 1)), (0, dt.date(2026, 9, 30)), (3, dt.date(2026, 10, 31))]
    for sql in ("SELECT cost FROM activity", "SELECT * FROM diagnoses"):
        with pytest.raises(duckdb.BinderException if "cost" in sql else duckdb.CatalogException):
            con.sql(sql).fetchall()


def test_an_unknown_engine_is_a_usage_error_with_a_did_you_mean():
    with pytest.raises(UsageError) as e:
        get_engine("natve")
    assert e.value.exit_code == EXIT_USAGE and e.value.option == "--engine"
    assert "natve" in e.value.message and all(name in e.value.message for name in ENGINES)
    assert e.value.hint == "did you mean 'native'?"
    with pytest.raises(UsageError) as e:
        get_engine("spark")
    assert e.value.hint is None


def test_every_entry_point_refuses_an_unknown_engine_before_reading_anything(tmp_path):
    from casefind.kpis.run import run_kpis
    from casefind.lists.dataset import dataset
    from casefind.lists.run import run

    missing = tmp_path / "no-such-file.yml"
    for call in (lambda: run(missing, tmp_path, tmp_path / "out", engine="duckbd"),
                 lambda: dataset(missing, tmp_path, engine="duckbd"),
                 lambda: run_kpis(missing, tmp_path, [], engine="duckbd")):
        with pytest.raises(UsageError) as e:
            call()
        assert e.value.hint == "did you mean 'duckdb'?"


def test_the_cli_engine_choices_are_the_registry():
    from casefind.cli import main

    for command in ("run", "kpi", "dataset"):
        [option] = [p for p in main.commands[command].params if p.name == "engine"]
        assert list(option.type.choices) == list(ENGINES), command
        assert option.default is None  # not given: the engine setting decides (casefind.project)
        assert all(name in option.help for name in ENGINES)
    from casefind.project import SETTINGS

    assert SETTINGS["engine"].default == base.DEFAULT and base.DEFAULT in ENGINES


def test_listing_the_engines_loads_none_of_them():
    """The CLI builds --engine from the registry's names without importing Numba or DuckDB."""
    code = ("import sys, casefind.cli\n"
            "from casefind.engines.base import ENGINES\n"
            "assert list(ENGINES)\n"
            "print(sorted(m for m in sys.modules if m in ('casefind.engines.native', 'casefind.engines.duckdb_sql',"
            " 'numba', 'duckdb')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_cli_starts_without_the_heavy_libraries():
    """Every command's start pays for what ``import casefind.cli`` imports: the options and
    help of every command are built from light modules (pyramid/options.py for the pyramid's
    defaults; before, that import pulled numpy, pyarrow, lark and ruamel in through the
    budgets' simulation, and ``casefind --help`` took 0.6 s instead of 0.2 s)."""
    heavy = ("numpy", "pyarrow", "scipy", "sklearn", "numba", "duckdb", "pandas", "polars", "lark", "ruamel",
             "openpyxl", "xlsxwriter", "starlette", "jinja2", "pyspark")
    code = f"import sys, casefind.cli\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
