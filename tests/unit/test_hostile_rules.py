"""Hostile rules (issue 8): whatever a rule file says, `casefind check` answers with a
located RuleError (or the option's UsageError), or the rule runs, identically on every
engine, in bounded time and memory. Each test reproduces a finding."""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import duckdb
import pytest

from casefind.engines import duckdb_sql
from casefind.engines.base import ENGINES, REFERENCE
from casefind.errors import UsageError
from casefind.ingest import run_ingest
from casefind.kpis.define import load_kpis
from casefind.lists.reasons import Describer, fill
from casefind.lists.run import run
from casefind.rules import ir
from casefind.rules.compile import attributes_used, compile_rule
from casefind.rules.errors import RuleError
from casefind.store import Store
from casefind_testdata import write_source
from spec_helpers import PRACTICES, patient, same

HEAD = 'rule: t\nas_of: "2026-10-01"\n'
QUOTED = "O'Brien\\x"  # a provider code with a quote and a backslash


def act(pid, d, setting, cost=None, diag=None, provider=None, end=None):
    return (pid, d, end, setting, cost, diag, provider, None)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    tables = {
        "practices": PRACTICES,
        "patients": [patient("a", birth="1940-02-29"), patient("b", birth="1960-05-01", sex="M", imd="2"),
                     patient("c", birth="2001-01-01", imd=None)],
        "activity": [act("a", "2026-01-10", "emergency_admission", "3200", "I509", end="2026-01-15"),
                     act("a", "2026-05-10", "ae"), act("a", "2026-08-01", "ae", "250", provider=QUOTED),
                     act("b", "2025-12-01", "ae", "240"), act("b", "2026-10-01", "gp", "42")],
        "diagnoses": [("a", "2026-01-10", "icd10", "I509", "acute"), ("b", "2020-01-01", "snomed", "38341003", None)],
    }
    run_ingest(write_source(tmp / "src", tables), tmp / "store")
    return tmp / "store"


def write(folder: Path, text: str | bytes, name: str = "r.yml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def refused(folder: Path, text: str | bytes, words: str, line: int | None = None, col: int | None = None,
            **kw) -> RuleError:
    """The rule is a RuleError that names ``words``, at line:col when given."""
    path = write(folder, text)
    with pytest.raises(RuleError) as e:
        compile_rule(path, **kw)
    assert words in e.value.message, e.value
    assert e.value.span is not None
    if line is not None:
        assert (e.value.span.line, e.value.span.col if col else None) == (line, col), e.value
    return e.value


def on_both(store: Path, folder: Path, text: str, **kw) -> list[dict]:
    """Compile and evaluate every feature on every engine; they must agree. The reference's rows."""
    rule = compile_rule(write(folder, text), **kw)
    st = Store.open(store)
    ref = ENGINES[REFERENCE].evaluate(st, rule.features, rule.as_of, rule.population).to_pylist()
    for name, engine in ENGINES.items():
        if name == REFERENCE:
            continue
        nat = engine.evaluate(st, rule.features, rule.as_of, rule.population).to_pylist()
        assert len(ref) == len(nat), name
        for a, b in zip(ref, nat):
            for k in rule.features:
                assert (a[k] is None and b[k] is None) or same(b[k], a[k]), (name, k, a[k], b[k])
    return ref


# --- 1. names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../clobber", '""', ".", "..", "Frail", "1frail", "a-b", "x" * 65, "[a, b]"])
def test_a_rule_name_is_an_identifier_because_it_names_the_output_folder(tmp_path, name):
    refused(tmp_path, f"rule: {name}\nas_of: \"2026-10-01\"\n", "rule name", 1, 7)


def test_a_valid_rule_name_compiles(tmp_path):
    assert compile_rule(write(tmp_path, HEAD.replace("rule: t", "rule: frail_crisis_2"))).name == "frail_crisis_2"


def test_a_kpi_set_name_is_an_identifier_too(tmp_path):
    path = write(tmp_path, "kpis: ../x\nmeasures:\n"
                 "  m: {title: t, domain: cost, kind: total, population: true, value: 1}\n")
    with pytest.raises(RuleError) as e:
        load_kpis(path)
    assert "KPI set name" in e.value.message and (e.value.span.line, e.value.span.col) == (1, 7)


@pytest.mark.parametrize("body,words", [
    ("features:\n  a-b: 1\n", "feature name 'a-b'"),
    ("features:\n  population: 1\n", "used by casefind itself"),
    ("parameters:\n  not: 1\n", "parameter name 'not'"),
])
def test_names_inside_a_rule_are_identifiers(tmp_path, body, words):
    refused(tmp_path, HEAD + body, words, 4, 3)


# --- 2. files a rule reads ------------------------------------------------------------------------

@pytest.mark.parametrize("given", ["/etc/passwd", "../../../x.csv", "../outside.csv"])
def test_codelist_paths_cannot_leave_the_rules_folder(tmp_path, given):
    (tmp_path / "outside.csv").write_text("code\n1\n")
    folder = tmp_path / "rules"
    refused(folder, HEAD + f"codelists:\n  x: {{file: {given}, system: snomed}}\n", "outside the rules folder", 4, 6)


def test_a_link_out_of_the_rules_folder_is_refused_too(tmp_path):
    (tmp_path / "secret.csv").write_text("code\n1\n")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "innocent.csv").symlink_to(tmp_path / "secret.csv")
    refused(tmp_path / "rules", HEAD + "codelists:\n  x: {file: innocent.csv, system: snomed}\n",
            "outside the rules folder", 4, 6)


def test_a_kpi_file_in_kpis_reads_the_codelists_beside_its_rules_folder(tmp_path):
    (tmp_path / "rules" / "codelists").mkdir(parents=True)
    (tmp_path / "rules" / "codelists" / "x.csv").write_text("code,system\nI50,icd10\n")
    body = ("kpis: k\ncodelists:\n  x: {file: CL}\nmeasures:\n  m: {title: t, domain: cost, kind: total, "
            "population: true, value: \"count(activity, codelist=x)\"}\n")
    assert load_kpis(write(tmp_path / "rules" / "kpis", body.replace("CL", "../codelists/x.csv"))).measures
    (tmp_path / "x.csv").write_text("code,system\nI50,icd10\n")
    with pytest.raises(RuleError, match="outside the rules folder"):
        load_kpis(write(tmp_path / "rules" / "kpis", body.replace("CL", "../../x.csv")))


def test_an_unknown_code_system_is_an_error_with_a_did_you_mean(tmp_path):
    e = refused(tmp_path, HEAD + "codelists:\n  x: {system: snowmed, codes: [\"1\"]}\n", "unknown code system", 4, 6)
    assert "did you mean 'snomed'" in e.hint


def test_a_codelist_weight_that_is_not_a_number_is_located_in_the_csv(tmp_path):
    (tmp_path / "w.csv").write_text("code,system,category,weight\n1,snomed,a,2\n2,snomed,b,abc\n")
    e = refused(tmp_path, HEAD + "codelists:\n  w: w.csv\n", "weight 'abc' is not a number")
    assert (e.span.file, e.span.line) == (str(tmp_path / "w.csv"), 3)


@pytest.mark.parametrize("content,words", [
    (b"code,system\n1,snomed\n\xff\xfe,snomed\n", "not UTF-8"),
    (b"code,system\n1,snomed\n" + b"x" * 200_000 + b",snomed\n", "not valid CSV"),
])
def test_a_codelist_that_is_not_utf8_text_or_csv_is_located(tmp_path, content, words):
    (tmp_path / "bad.csv").write_bytes(content)
    e = refused(tmp_path, HEAD + "codelists:\n  x: bad.csv\n", words)
    assert e.span.file == str(tmp_path / "bad.csv") and e.span.line >= 2


def test_a_rule_file_that_is_not_utf8_is_located_at_the_byte(tmp_path):
    e = refused(tmp_path, (HEAD + "title: caf\xe9\n").encode("latin-1"), "not UTF-8", 3, 11)
    assert "0xe9" in e.message


# --- 3. rules cannot exhaust the machine ---------------------------------------------------------

def billion_laughs() -> str:
    lines = [HEAD.strip(), 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines + ["title: *a9"]) + "\n"


@pytest.mark.parametrize("text,words", [
    (billion_laughs(), "aliases expand"),
    (HEAD + "title: " + '[ "]", ' * 3000 + "]" * 3000 + "\n", "nests more than 50"),
    (HEAD + "#" + "x" * 600_000 + "\n", "may be at most 524,288"),
])
def test_yaml_cannot_explode_or_nest_without_bound(tmp_path, text, words):
    t = time.perf_counter()
    refused(tmp_path, text, words)
    assert time.perf_counter() - t < 5


def test_pathological_nesting_is_refused_with_the_limit(tmp_path):
    refused(tmp_path, HEAD + "features:\n  s: " + "not " * 400 + "true\n", "more than 100 levels", 4, 6)


def test_features_nesting_each_other_count_towards_the_limit(tmp_path):
    chain = "".join(f"  f{i}: f{i - 1} + 1\n" for i in range(1, 130))
    refused(tmp_path, HEAD + "features:\n  f0: count(activity)\n" + chain, "more than 100 levels")


def test_features_that_double_each_other_are_refused_before_they_expand(tmp_path):
    doubling = "".join(f"  f{i}: f{i - 1} + f{i - 1}\n" for i in range(1, 60))
    t = time.perf_counter()
    refused(tmp_path, HEAD + "features:\n  f0: count(activity)\n" + doubling, "expands to")
    assert time.perf_counter() - t < 5


def test_a_400_term_sum_runs_on_both_engines(store, tmp_path):
    rows = on_both(store, tmp_path, HEAD + "features:\n  n: count(activity)\n  s: " + " + ".join(["n"] * 400)
                   + " - n - n\n")
    assert [r["s"] for r in rows] == [398 * 3, 398 * 2, 0]


def test_many_include_criteria_are_joined_shallowly(store, tmp_path):
    include = "".join(f"    c{i}: n >= {i % 3}\n" for i in range(300))
    rule = compile_rule(write(tmp_path, HEAD + "features:\n  n: count(activity)\ncriteria:\n  include:\n"
                              + include + "  require: any\n"))
    assert rule.require.depth < 20


@pytest.mark.parametrize("expression,words", [
    ("99999999999999999999", "out of range: whole numbers"),  # a YAML number
    ("1" + "0" * 400 + ".5", "out of range: decimals"),
    ("count(activity) + 99999999999999999999", "too large: whole numbers"),  # a number in an expression
    ("count(activity) * 1" + "0" * 400, "too large: whole numbers"),
    ("count(activity) * 1" + "0" * 400 + ".5", "too large: decimals"),
    ("count(activity, within=months(100000000))", "more than 200 years"),
    ("count(activity, within=days(80000))", "more than 200 years"),
    ('count(activity) at date("0001-01-01")', "dates must lie between"),
])
def test_huge_literals_and_windows_are_located_errors(tmp_path, expression, words):
    refused(tmp_path, HEAD + f"features:\n  x: {expression}\n", words, 4)


@pytest.mark.parametrize("value,words", [("1e400", "finite"), (".nan", "finite"),
                                         ("99999999999999999999", "whole numbers"),
                                         ('"1800-01-01"', None), ('"1799-12-31"', "dates must lie")])
def test_huge_parameters_are_located_errors(tmp_path, value, words):
    text = HEAD + f"parameters:\n  p: {value}\nfeatures:\n  x: p\n"
    if words is None:
        assert compile_rule(write(tmp_path, text)).parameters["p"].value == dt.date(1800, 1, 1)
    else:
        refused(tmp_path, text, words, 4, 6)


def test_shifts_stacked_through_at_are_bounded(tmp_path):
    chain = "".join(f"  f{i}: f{i - 1} at as_of - years(200)\n" for i in range(1, 8))
    refused(tmp_path, HEAD + "features:\n  f0: count(activity, within=years(200))\n" + chain, "years away from as_of")


def test_too_many_distinct_aggregations_are_refused(tmp_path):
    many = "".join(f"  f{i}: count(activity, within=days({i + 1}))\n" for i in range(150))
    refused(tmp_path, HEAD + "features:\n" + many, "more than 100 different aggregations")


# --- 4. reason templates -------------------------------------------------------------------------

@pytest.mark.parametrize("template", ["{n:>50000000}", "{n:d}", "{n!r}", "{n[0]}", "{n.real}", "{}", "{0}"])
def test_reason_templates_take_plain_names_only(tmp_path, template):
    refused(tmp_path, HEAD + f'features:\n  n: count(activity)\ncriteria:\n  include:\n    c:\n'
            f'      when: n >= 0\n      reason: "{template}"\n', "not a plain {name}", 8, 7)


def test_reasons_fill_features_parameters_and_attributes_by_their_type():
    sentence = Describer({}).sentence("c", ir.Const(True, ir.T.BOOL), {"n": 1234, "imd_decile": 2, "min_age": 70.5,
                                                                        "seen": dt.date(2026, 3, 1)},
                                      "{n} visits, IMD {imd_decile}, over {min_age}, {{seen}} {seen}, {gone}")
    assert sentence == "1,234 visits, IMD 2, over 70.5, {seen} 1 Mar 2026, none recorded"
    assert fill("{x:>50000000}", {"x": 1}) == "1"  # a format spec never runs, whatever reaches here


def test_a_run_fills_attributes_and_parameters_in_reasons(store, tmp_path):
    path = write(tmp_path, HEAD + 'parameters: {min_n: 1}\nfeatures:\n  n: count(activity)\ncriteria:\n  include:\n'
                 '    busy: {when: n >= min_n, reason: "{n} events (at least {min_n}); IMD decile {imd_decile}"}\n'
                 'output: {columns: [n, imd_decile, practice, birth_date, registered]}\n')
    listed = (run(path, store, tmp_path / "out").out_dir / "list.csv").read_text()
    assert "3 events (at least 1); IMD decile 5" in listed and "2 events (at least 1); IMD decile 2" in listed


@pytest.mark.parametrize("name", list(ir.PATIENT_ATTRIBUTES))
def test_every_patient_attribute_evaluates_on_both_engines(store, tmp_path, name):
    rows = on_both(store, tmp_path, HEAD + f"features:\n  x: {name}\n")
    assert len(rows) == 3


def test_attributes_used_names_those_a_list_shows_without_a_feature(tmp_path):
    rule = compile_rule(write(tmp_path, HEAD + "features:\n  n: count(activity)\n  age: 5\ncriteria:\n  include:\n"
                              '    c: {when: n >= 0, reason: "{locality} {n} {age}"}\n'
                              "rank_by: [imd_decile desc, birth_date]\noutput: {columns: [practice, n, age]}\n"))
    assert attributes_used(rule) == {"locality", "imd_decile", "birth_date", "practice"}


# --- 5. in lists ---------------------------------------------------------------------------------

def test_a_10000_value_in_list_is_a_set_look_up_on_both_engines(store, tmp_path):
    texts = ", ".join(f'"x{i}"' for i in range(10_000))
    ages = ", ".join(str(i) for i in range(10_000, 20_000))
    t = time.perf_counter()
    rows = on_both(store, tmp_path, HEAD + "features:\n"
                   f'  rows: count(activity, setting == "ae" and not (provider_code in ({texts})))\n'
                   f"  ages: age in ({ages}, 66)\n")
    assert time.perf_counter() - t < 5  # including compiling the rule (and, once, the kernels)
    assert [(r["rows"], r["ages"]) for r in rows] == [(2, False), (1, True), (0, False)]


def test_long_in_lists_of_codes_text_and_numbers_agree(store, tmp_path):
    texts = ", ".join(f'"x{i}"' for i in range(2_000))
    costs = ", ".join(str(i) for i in range(100_000, 102_000))
    days = ", ".join(f'date("2026-05-{d:02}")' for d in range(10, 50) if d <= 31) + ', date("2025-05-10")' * 30
    rows = on_both(store, tmp_path, HEAD + f'features:\n  codes: exists(diagnoses, code in ({texts}, "I509"))\n'
                   f'  sexes: sex == "M" and practice in ({texts}, "Z00001")\n'
                   f"  costs: count(activity, cost in ({costs}, 250))\n"
                   f"  days: count(activity, start_date in ({days}))\n")
    assert [(r["codes"], r["sexes"], r["costs"], r["days"]) for r in rows] == [
        (True, False, 1, 1), (False, True, 0, 0), (False, False, 0, 0)]


# --- 6. SQL gets literals ------------------------------------------------------------------------

def test_non_finite_floats_are_sql_literals():
    con = duckdb.connect()
    values = [duckdb_sql.sql_literal(v) for v in (float("inf"), float("-inf"), 1.5)]
    assert con.sql(f"SELECT {', '.join(values)}").fetchall() == [(float("inf"), float("-inf"), 1.5)]


def test_text_with_a_quote_and_a_backslash_is_quoted_safely(store, tmp_path):
    rows = on_both(store, tmp_path, HEAD + f"parameters:\n  who: '{QUOTED.replace(chr(39), chr(39) * 2)}'\nfeatures:\n"
                   f'  literal: count(activity, provider_code == "{QUOTED}")\n'
                   f'  param: count(activity, provider_code == who)\n'
                   "  injected: count(activity, provider_code in (\"a'); DROP TABLE activity; --\", \"\\\\\"))\n")
    assert [(r["literal"], r["param"], r["injected"]) for r in rows] == [(1, 1, 0), (0, 0, 0), (0, 0, 0)]


# --- 7. option values point at the option --------------------------------------------------------

PARAMS = HEAD + ('parameters:\n  min_age: 70\n  share: 0.5\n  since: "2026-01-01"\n  region: ae\n  strict: true\n'
                 "features:\n  old: age >= min_age\n")


@pytest.mark.parametrize("kw,option,words", [
    ({"as_of": "31/10/2026"}, "--as-of", "YYYY-MM-DD"),
    ({"as_of": "1700-01-01"}, "--as-of", "dates must lie"),
    ({"params": {"min_age": "seventy"}}, "--param", "min_age is a number (70 in the rule); 'seventy' is not"),
    ({"params": {"min_age": "inf"}}, "--param", "'inf' is not"),
    ({"params": {"share": "nan"}}, "--param", "'nan' is not"),
    ({"params": {"since": "soon"}}, "--param", "since is a date"),
    ({"params": {"strict": "maybe"}}, "--param", "strict is true/false"),
    ({"params": {"min_ag": "75"}}, "--param", "no such parameter"),
])
def test_bad_option_values_are_usage_errors_naming_the_option(tmp_path, kw, option, words):
    with pytest.raises(UsageError) as e:
        compile_rule(write(tmp_path, PARAMS), **kw)
    assert e.value.option == option and words in e.value.message, e.value.message
    if "min_ag" in kw.get("params", {}):
        assert "did you mean 'min_age'" in e.value.hint


def test_overrides_keep_the_type_of_the_rules_value(tmp_path):
    path = write(tmp_path, PARAMS)
    r = compile_rule(path, params={"min_age": "75", "share": "1", "since": "2026-02-01", "region": "123",
                                   "strict": "FALSE"})
    values = {k: (p.value, p.type) for k, p in r.parameters.items()}
    assert values == {"min_age": (75, ir.T.INT), "share": (1.0, ir.T.FLOAT), "since": (dt.date(2026, 2, 1), ir.T.DATE),
                      "region": ("123", ir.T.TEXT), "strict": (False, ir.T.BOOL)}
    assert compile_rule(path, params={"min_age": "70.5"}).parameters["min_age"].value == 70.5


def test_a_bad_as_of_in_the_file_is_located_there(tmp_path):
    refused(tmp_path, 'rule: t\nas_of: "31/10/2026"\n', "YYYY-MM-DD", 2, 8)


# --- 8. rules that pass check run ----------------------------------------------------------------

def test_a_text_parameter_in_a_row_filter_runs_on_both_engines(store, tmp_path):
    rows = on_both(store, tmp_path, HEAD + "parameters: {region: ae}\nfeatures:\n"
                   "  n: count(activity, setting == region)\n"
                   "  m: count(activity, setting != region)\n")
    assert [(r["n"], r["m"]) for r in rows] == [(2, 1), (1, 1), (0, 0)]


def test_rank_by_text_is_refused_at_the_rank_by_entry(tmp_path):
    refused(tmp_path, HEAD + "features:\n  n: count(activity)\n  s: sex\ncriteria:\n  include:\n    c: n >= 0\n"
            "rank_by: [n desc, s]\n", "is text", 9, 19)


@pytest.mark.parametrize("entry,words", [("n sideways", "then desc or asc"), ("min_age", "not a feature"),
                                         ("n * 2", "then desc or asc")])
def test_rank_by_names_a_feature_or_attribute(tmp_path, entry, words):
    refused(tmp_path, HEAD + f"parameters: {{min_age: 1}}\nfeatures:\n  n: count(activity)\nrank_by: [{entry}]\n",
            words, 6, 11)


def test_rows_compared_with_per_patient_values_run_on_both_engines(store, tmp_path):
    rows = on_both(store, tmp_path, HEAD + "features:\n  a: count(activity, cost > age)\n"
                   '  b: count(activity, sex in ("F", "U") and start_date > birth_date + years(80))\n'
                   '  c: exists(diagnoses, code == "I509")\n  d: count(diagnoses, code != "I509")\n'
                   '  e: count(activity, primary_diagnosis in ("I509", "J440"))\n'
                   "  f: count(activity, start_date - months(1) > date(\"2026-04-15\"))\n")
    assert [(r["a"], r["b"], r["c"], r["d"], r["e"], r["f"]) for r in rows] == [
        (2, 3, True, 0, 1, 1), (1, 0, False, 1, 0, 1), (0, 0, False, 0, 0, 0)]


def test_first_and_last_of_text_run_on_both_engines(store, tmp_path):
    rows = on_both(store, tmp_path, HEAD + "features:\n  a: last(activity.setting)\n  b: first(diagnoses.code)\n"
                   '  c: last(activity.primary_diagnosis)\n  d: last(activity.setting) == "ae"\n')
    assert [(r["a"], r["b"], r["c"], r["d"]) for r in rows] == [
        ("ae", "I509", "I509", True), ("gp", "38341003", None, False), (None, None, None, False)]


def test_results_too_large_for_their_type_are_missing_on_both_engines(store, tmp_path):
    big = "1" + "0" * 300 + ".0"
    rows = on_both(store, tmp_path, HEAD + "features:\n  n: count(activity)\n"
                   "  over: n * 9223372036854775807\n  lowest: -9223372036854775807 - 1 + 0 * n\n"
                   "  negated: -lowest\n  absolute: abs(lowest)\n"
                   f"  huge: n * {big} * {big}\n  rounded: round(n * {big})\n  logged: log(n - 2)\n"
                   "  grown: exp(n * 1000)\n  exact: case(n > 0, 9223372036854775807, 0)\n"
                   "  least: min(9223372036854775807, n)\n"
                   "  per_row: sum(activity, value=days_between(start_date, end_date) * 9223372036854775807)\n"
                   f"  per_row_float: max(activity, value=cost * {big} * {big})\n")
    a, c = rows[0], rows[2]
    assert (a["over"], a["lowest"], a["negated"], a["absolute"]) == (None, -2 ** 63, None, None)
    assert (a["huge"], a["rounded"], a["grown"], a["per_row"], a["per_row_float"]) == (None, None, None, 0.0, None)
    assert (a["logged"], a["exact"], a["least"]) == (0.0, 2 ** 63 - 1, 3)
    assert (c["over"], c["logged"], c["grown"]) == (0, None, 1.0)


def test_a_trend_of_a_column_with_missing_values_agrees(store, tmp_path):
    rows = on_both(store, tmp_path, HEAD + "features:\n  t: trend(activity.cost, over=months(12))\n")
    assert rows[0]["t"] is not None


@pytest.mark.parametrize("feature,words", [
    ("count(activity, case(cost > 1, true, false))", "cannot use case()"),
    ("sum(activity, value=abs(cost))", "cannot use abs()"),
    ("count(activity, setting == discharge_destination)", "not a fixed value"),
    ("count(activity, provider_code == practice)", "not a fixed value"),
    ("count(activity, cost > percentile(age))", "cannot use percentile"),
    ("count(activity, cost > t)", "cannot use percentile, top or trend"),
    ('count(diagnoses, category == "x", codelist=c)', "only what an aggregation counts"),
    ("mean(diagnoses.weight, codelist=c)", "weights are added up"),
    ("max(activity.setting)", "numbers or dates"),
    ("n at birth_date", "the same for everyone"),
])
def test_what_an_engine_cannot_evaluate_is_refused_at_check(tmp_path, feature, words):
    refused(tmp_path, HEAD + "codelists:\n  c: {system: icd10, codes: [I509]}\nfeatures:\n  n: count(activity)\n"
            "  t: trend(activity, over=months(6))\n"
            f"  x: {feature}\n", words, 8)


def test_the_population_cannot_rank_within_itself(tmp_path):
    refused(tmp_path, HEAD + "population: p > 50\nfeatures:\n  p: percentile(age)\n", "cannot use percentile", 3, 13)


@pytest.mark.parametrize("body,words,line", [
    ("features:\n  rank: count(activity)\noutput: {columns: [rank]}\n", "every list already has", 5),
    ("output: {evidence: true}\n", "evidence is how many", 3),
    ("output: {evidence: 1000000}\n", "evidence is how many", 3),
    ('features:\n  n: count(activity)\ncriteria:\n  include:\n    c: {when: n > 0, reason: "' + "x" * 1001 + '"}\n',
     "at most 1,000", 7),
])
def test_list_columns_and_outputs_stay_sane(tmp_path, body, words, line):
    refused(tmp_path, HEAD + body, words, line)


def test_a_hostile_but_valid_rule_runs_and_is_rechecked(store, tmp_path):
    texts = ", ".join(f'"x{i}"' for i in range(5_000))
    path = write(tmp_path, HEAD + 'parameters: {region: ae, min_n: 1}\nfeatures:\n'
                 f'  visits: count(activity, setting == region or provider_code in ({texts}))\n'
                 "  last_setting: last(activity.setting)\n  total: " + " + ".join(["visits"] * 300) + "\n"
                 "criteria:\n  include:\n    busy:\n      when: visits >= min_n\n"
                 '      reason: "{visits} visits at {region} ({{min {min_n}}}), '
                 'last {last_setting}, IMD {imd_decile}"\n'
                 "rank_by: [total desc]\noutput: {columns: [visits, last_setting, total, imd_decile]}\n")
    listed = (run(path, store, tmp_path / "out").out_dir / "list.csv").read_text()
    assert "2 visits at ae ({min 1}), last ae, IMD 5" in listed
