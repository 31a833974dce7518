"""Every rule example in docs/rules-language.md compiles and runs, identically on every engine;
its semantics section is the one generated from the spec tests (tests/spec/docs.py)."""
import importlib.util
import re
import shutil
from pathlib import Path

import pytest

from ascii_tables import markdown, parse_table, typed
from casefind.engines.base import ENGINES, REFERENCE
from casefind.ingest import run_ingest
from casefind.lists.run import run
from casefind.rules.compile import compile_rule
from casefind.store import Store, decisions
from casefind_testdata import write_source
from spec_helpers import PRACTICES, patient, review_rows, same

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "docs" / "rules-language.md").read_text()
EXAMPLES = [m.group(1) for m in re.finditer(r"```yaml\n(.*?)```", DOC, re.S)]


def act(pid, d, setting, cost=None, diag=None):
    return (pid, d, None, setting, cost, diag, None, None)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs")
    tables = {
        "practices": PRACTICES,
        "patients": [patient("a", birth="1940-02-29"), patient("b", birth="1960-05-01", sex="M"),
                     patient("c", birth="2001-01-01", death="2026-09-01")],
        "activity": [act("a", "2026-01-10", "emergency_admission", "3200", "I509"),
                     act("a", "2026-07-01", "emergency_admission", "2800", "I500"),
                     act("a", "2026-08-01", "ae", "250"), act("a", "2026-09-01", "ae", "250"),
                     act("b", "2025-12-01", "ae", "240"), act("b", "2026-10-01", "gp", "42"),
                     act("b", "2026-10-30", "gp", "42"), act("b", "2023-01-02", "gp", "42"),  # data from 2023
                     act("c", "2026-03-01", "outpatient", "150")],
        "diagnoses": [("a", "2025-02-01", "icd10", "F00", "acute"), ("a", "2026-01-10", "icd10", "I509", "acute"),
                      ("b", "2020-01-01", "snomed", "38341003", "primary_care")],
        "registers": [("b", "palliative_care", "2026-06-01", None)],
    }
    run_ingest(write_source(tmp / "src", tables), tmp / "store")
    decisions.append(tmp / "store", review_rows([("a", "2026-08-01", "declined_demo", "listed"),
                                                  ("a", "2026-08-15", "declined_demo", "declined")]))
    return tmp / "store"


def test_doc_has_examples_of_every_construct():
    text = "\n".join(EXAMPLES)
    for construct in ("exists(", "count(", "count_distinct(", "sum(", "mean(", "max(", "first(", "last(",
                      "days_since(", "score(", "trend(", " at as_of", "percentile(", "top(", "case(", "logistic(",
                      "within=", "between=", "active", "prefixes", ".csv", "segments:", "require:", "exclude:",
                      "rank_by:", "limit:", "parameters:", "evidence:", "reviewed(", "reviews,"):
        assert construct in text, construct


@pytest.mark.parametrize("i", range(len(EXAMPLES)))
def test_example_runs_on_both_engines(tmp_path, store, i):
    (tmp_path / "codelists").mkdir()
    shutil.copy(ROOT / "rules" / "codelists" / "hfrs_icd10.csv", tmp_path / "codelists")
    path = tmp_path / "example.yml"
    path.write_text(EXAMPLES[i])
    rule = compile_rule(path)
    st = Store.open(store)
    exprs = dict(rule.features)
    a = ENGINES[REFERENCE].evaluate(st, exprs, rule.as_of, rule.population).to_pylist()
    for name, engine in ENGINES.items():
        b = engine.evaluate(st, exprs, rule.as_of, rule.population).to_pylist()
        assert len(a) == len(b), name
        for x, y in zip(a, b):
            for k in exprs:
                assert (x[k] is None and y[k] is None) or same(y[k], x[k]), (name, k, x[k], y[k])
    result = run(path, store, tmp_path / "out")
    assert (result.out_dir / "list.csv").exists()


# --- the semantics section, generated from tests/spec ---------------------------------------

def _spec_docs():
    """tests/spec/docs.py, loaded from its file (``docs`` alone would also name docs/)."""
    spec = importlib.util.spec_from_file_location("spec_docs", ROOT / "tests" / "spec" / "docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_semantics_section_is_generated_from_the_spec_tests():
    spec_docs = _spec_docs()
    assert DOC.count(spec_docs.BEGIN) == 1 and DOC.count(spec_docs.END) == 1
    assert spec_docs.updated(DOC) == DOC, "out of date; regenerate: PYTHONPATH=tests python tests/spec/docs.py"


def test_every_spec_module_has_a_title_a_sentence_and_described_cases():
    modules = _spec_docs().spec_modules()
    folders = {p.parent.name for p in (ROOT / "tests" / "spec").glob("*/test_*.py")}
    assert {f for f, _ in modules} == folders and len(modules) >= 40
    for _, module in modules:
        assert isinstance(module.title, str) and module.title, module.__name__
        assert module.__doc__ and len(module.__doc__.split()) >= 8, module.__name__
    cases = [case for _, module in modules for case in _spec_docs().cases(module)]
    assert len(cases) >= 60 and all(description and case["expected"] for description, case in cases)


def test_a_text_table_has_named_columns_and_empty_cells_are_missing():
    text = """
        patient | date       | code
        --------+------------+-----
        1       | 2026-01-03 |
    """
    assert parse_table(text) == [{"patient": "1", "date": "2026-01-03", "code": None}]
    values = [typed(c) for c in (None, "true", "false", "5", "5.0", "-0.25", "2026-01-03", "high")]
    assert values == [None, True, False, 5, 5.0, -0.25, "2026-01-03", "high"]
    assert [type(v).__name__ for v in values[3:5]] == ["int", "float"]
    assert markdown(text).splitlines()[-1] == "| 1 | 2026-01-03 | — |"
    for bad in ("patient | code\n1 | 2", "patient | code\n--+--\n1", "patient | patient\n--+--\n1 | 2"):
        with pytest.raises(ValueError):
            parse_table(bad)
