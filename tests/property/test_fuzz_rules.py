"""Fuzzed rule files: whatever an analyst (or an attacker) types, casefind answers with a
located error (or a valid rule), never a traceback, and quickly."""
from __future__ import annotations

import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casefind.errors import UsageError
from casefind.rules.compile import compile_rule
from casefind.rules.errors import RuleError

SEED_RULE = (Path(__file__).parents[2] / "docs" / "rules-language.md").read_text().split("```yaml\n")[1].split("```")[0]
TOKENS = ["(", ")", ",", ":", " and ", " or ", "not ", "==", ">=", "months(", "within=", "between=(", '"',
          "'", "\n", "  ", "- ", "{", "}", "[", "]", "count(", "activity", "setting", "age", "%", ".", "at ",
          "codelist=", "x", "0", "-1", "99999999999999999999", "date(\"2026-02-30\")", "é", "\t", "#", "*"]


@st.composite
def mutated(draw):
    text = SEED_RULE
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        if kind == "insert":
            text = text[:pos] + draw(st.sampled_from(TOKENS)) + text[pos:]
        elif kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 12)):]
        else:
            n = draw(st.integers(1, 8))
            text = text[:pos] + draw(st.text(min_size=1, max_size=n)) + text[pos + n:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_only_located_errors(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "rule.yml"
    path.write_text(text, encoding="utf-8")
    try:
        compile_rule(path)
    except RuleError as e:
        assert e.message
        if e.span is not None:
            assert e.span.line >= 1 and e.span.col >= 1
            assert e.span.file == str(path)


# --- hostile constructs: deep nesting, huge numbers, long lists, bad templates, aliases --------

HEAD = 'rule: hostile\nas_of: "2026-10-31"\nparameters: {min_age: 65, region: ae}\n'
FORMATS = ["", ":d", ":>50000000", "!r", "[0]", ".real", ":,.2f", "!s:^9"]


def size(draw, *boundaries: int) -> int:
    """A size near a limit (hypothesis alone prefers small ones)."""
    return draw(st.sampled_from(boundaries)) + draw(st.integers(-1, 1))


def nested(draw, inner: str) -> str:
    k = max(1, size(draw, 1, 30, 99, 100, 450))
    kind = draw(st.sampled_from(["not", "paren", "abs", "neg", "case"]))
    if kind == "not":
        return "not " * k + f"({inner} > 0)"
    if kind == "paren":
        return "(" * k + inner + ")" * k
    if kind == "abs":
        return "abs(" * k + inner + ")" * k
    if kind == "neg":
        return "-" * k + inner
    return "case(true, " * k + inner + ", 0)" * k


@st.composite
def hostile_expressions(draw) -> str:
    n = "count(activity)"
    kind = draw(st.sampled_from(["nested", "number", "sum", "in", "window", "date", "chain", "at"]))
    if kind == "nested":
        return nested(draw, n)
    if kind == "number":
        digits = "9" * max(1, size(draw, 1, 19, 20, 309, 500))
        return draw(st.sampled_from([digits, f"{digits}.5", f"{n} * {digits}", f"{digits}%", f"-{digits}"]))
    if kind == "sum":
        op = draw(st.sampled_from([" + ", " - ", " * ", " / ", " and ", " or "]))
        term = draw(st.sampled_from([n, "min_age", "1.5", "age", "registered"]))
        return op.join([term] * max(2, size(draw, 2, 16, 17, 400, 5000)))
    if kind == "in":
        values = draw(st.sampled_from(['"x{}"', "{}", "{}.5", 'date("2026-01-{:02}")', "region"]))
        items = ", ".join(values.format(i % 28 + 1) for i in range(max(1, size(draw, 1, 32, 33, 10_000, 20_000))))
        return draw(st.sampled_from([f"count(activity, setting in ({items}))", f"age in ({items})",
                                     f"exists(diagnoses, code in ({items}))"]))
    if kind == "window":
        unit = draw(st.sampled_from(["days", "months", "years"]))
        return f"count(activity, within={unit}({max(0, size(draw, 0, 200, 2400, 73050, 10 ** 12))}))"
    if kind == "date":
        return f'count(activity) at date("{draw(st.integers(1, 9999)):04}-01-01")'
    if kind == "chain":
        return " at as_of - years(200)".join([f"({n}"] * max(1, size(draw, 1, 5, 12))) + ")"
    return f"{n} at birth_date"


def billion_laughs(depth: int, breadth: int) -> str:
    lines = ['  a0: &a0 "lol"']
    lines += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * breadth) + "]" for i in range(1, depth + 1)]
    return "parameters:\n" + "\n".join(lines) + f"\ntitle: *a{depth}\n"


@st.composite
def hostile_rules(draw) -> tuple[str, dict]:
    kind = draw(st.sampled_from(["expression", "template", "aliases", "feature_chain", "params"]))
    if kind == "expression":
        return HEAD + f"features:\n  x: {draw(hostile_expressions())}\n", {}
    if kind == "template":
        field = draw(st.sampled_from(["n", "imd_decile", "min_age", "nope", "", "0"])) + draw(st.sampled_from(FORMATS))
        return (HEAD + "features:\n  n: count(activity)\ncriteria:\n  include:\n"
                f'    c: {{when: n >= 0, reason: "{{{field}}} then {{{{braces}}}}"}}\n'), {}
    if kind == "aliases":
        text = billion_laughs(max(1, size(draw, 1, 5, 9, 12)), max(1, size(draw, 1, 9, 12)))
        return HEAD.replace("parameters: {min_age: 65, region: ae}\n", "") + text, {}
    if kind == "feature_chain":
        k = max(1, size(draw, 1, 13, 99, 101, 200))
        op = draw(st.sampled_from(["{0} + 1", "{0} + {0}", "{0} at as_of - months(100)", "case({0} > 1, {0}, 0)"]))
        chain = "".join(f"  f{i}: {op.format(f'f{i - 1}')}\n" for i in range(1, k + 1))
        return HEAD + "features:\n  f0: count(activity)\n" + chain, {}
    value = draw(st.sampled_from(["inf", "nan", "-inf", "1e400", "seventy", "99999999999999999999", "70.5", "",
                                  "2026-13-01", "true"]))
    name = draw(st.sampled_from(["min_age", "region", "min_ag", "as_of"]))
    return HEAD + "features:\n  old: age >= min_age\n", {name: value}


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(hostile_rules())
def test_hostile_rules_are_refused_or_compile_quickly(tmp_path_factory, case):
    text, params = case
    path = tmp_path_factory.mktemp("hostile") / "rule.yml"
    path.write_text(text, encoding="utf-8")
    t = time.perf_counter()
    try:
        compile_rule(path, params=params)
    except RuleError as e:
        assert e.message and e.span is not None and e.span.file == str(path), e
    except UsageError as e:
        assert e.option == "--param", e
    assert time.perf_counter() - t < 10
