"""`casefind explain RULE --sql` prints the reference engine's one query: the text runs over
the store's views and gives the reference engine's answer."""
from pathlib import Path

import duckdb
from click.testing import CliRunner

from casefind.cli import main
from casefind.engines import duckdb_sql
from casefind.ingest import run_ingest
from casefind.lists.run import rule_expressions
from casefind.rules.compile import compile_rule
from casefind.store import Store
from casefind_testdata import GOOD, write_source

ROOT = Path(__file__).parents[2]


def test_the_printed_sql_is_what_the_reference_engine_runs(tmp_path):
    run_ingest(write_source(tmp_path / "src", GOOD), tmp_path / "store")
    store = Store.open(tmp_path / "store")
    rule = compile_rule(ROOT / "rules" / "hfrs.yml")  # a filter that reads other aggregations
    exprs = rule_expressions(rule)
    con = duckdb.connect()
    duckdb_sql.register_store(con, store)
    printed = con.sql(duckdb_sql.query_text(exprs, rule.as_of, rule.population)).fetchall()
    evaluated = duckdb_sql.evaluate(store, exprs, rule.as_of, rule.population).to_pylist()
    assert printed == [tuple(r.values()) for r in evaluated]


def test_explain_sql_needs_no_store(tmp_path):
    result = CliRunner().invoke(main, ["explain", str(ROOT / "rules" / "frail.yml"), "--sql"])
    assert result.exit_code == 0, result.output
    assert "SELECT p.patient" in result.output and "FROM patients p" in result.output
    assert "def scan_" not in result.output  # only the SQL
