"""Evaluate a rule over its test patients on each engine, and compare with what the file expects.

"Listed" is what ``casefind run`` would list before its caps: the same expressions
(``rule_expressions``), the same selection (``lists.select.select``: population, include and
require, the rule's exclusions, then the list policy's: dead, deregistered, type 1 opt-out)
with the rule's per-practice, per-locality and total caps lifted, and the same reason
sentences (``lists.table.reasons``). Every failure names the test file's line of the patient
and of the expectation, the engine, the expected and actual values, and the rule file's
line where that feature or criterion is defined.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from casefind.engines.base import ENGINES, get_engine
from casefind.lists.run import DEFAULT_POLICY, policy_masks, rule_expressions
from casefind.lists.select import select
from casefind.lists.table import reasons
from casefind.rules import ir
from casefind.rules.compile import rounded
from casefind.rules.errors import Span
from casefind.ruletests.build import build_store
from casefind.ruletests.load import (
    EXCLUDED_BY,
    LISTED,
    POLICY_EXCLUSIONS,
    REASON,
    DeclaredPatient,
    Expectation,
    RuleTestFile,
    load_test_file,
)
from casefind.store import Store


@dataclass
class Failure:
    """One expectation that one engine did not meet, for one patient."""

    test_file: str
    patient: str
    description: str
    patient_span: Span
    expectation_span: Span
    engine: str
    name: str
    expected: object
    actual: object
    rule_span: Span | None
    rule_what: str = ""
    why: str = ""

    def header(self) -> str:
        """Which patient, on which engine: the line a group of failures starts with."""
        return f"{_short(self.patient_span)} {self.patient} [{self.engine}]: {self.description}"

    def details(self) -> list[str]:
        """What was expected and found, why, and where the rule decides it."""
        out = [f"{_short(self.expectation_span)} {self.name}: expected {shown(self.expected)}, "
               f"got {shown(self.actual)}"]
        if self.why:
            out.append(f"why: {self.why}")
        if self.rule_span is not None:
            out.append(f"rule: {_short(self.rule_span)} ({self.rule_what})")
        return out

    def lines(self) -> list[str]:
        return [self.header(), *(f"    {line}" for line in self.details())]

    def as_dict(self) -> dict:
        return {"test_file": self.test_file, "line": self.patient_span.line, "patient": self.patient,
                "description": self.description, "engine": self.engine, "expectation": self.name,
                "expectation_line": self.expectation_span.line, "expected": _plain(self.expected),
                "actual": _plain(self.actual), "why": self.why or None,
                "rule_file": self.rule_span.file if self.rule_span else None,
                "rule_line": self.rule_span.line if self.rule_span else None, "rule_defines": self.rule_what or None}


@dataclass
class RuleTestResult:
    rule: str
    rule_file: Path
    test_file: Path
    patients: int
    engines: tuple[str, ...]
    checks: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failed_patients(self) -> int:
        return len({(f.patient, f.engine) for f in self.failures})

    def as_dict(self) -> dict:
        return {"rule": self.rule, "rule_file": str(self.rule_file), "test_file": str(self.test_file),
                "patients": self.patients, "engines": list(self.engines), "checks": self.checks,
                "passed": self.passed, "failures": [f.as_dict() for f in self.failures]}


def run_tests(test_files: list[Path], engines: tuple[str, ...] = tuple(ENGINES)) -> list[RuleTestResult]:
    """Every test file checked on every engine; each file is loaded (and so validated)
    before any is run, so a bad file fails fast."""
    for e in engines:
        get_engine(e)
    loaded = [load_test_file(p) for p in test_files]
    return [check_file(t, engines) for t in loaded]


def check_file(tests: RuleTestFile, engines: tuple[str, ...] = tuple(ENGINES)) -> RuleTestResult:
    """One test file's patients in one temporary store, the rule evaluated on each engine."""
    result = RuleTestResult(tests.rule.name, tests.rule_path, tests.path, len(tests.patients), tuple(engines))
    with tempfile.TemporaryDirectory(prefix="casefind-test-") as tmp:
        store = Store.open(build_store(tests, Path(tmp)))
        for engine in engines:
            found = _Findings.of(store, tests, engine)
            for p in tests.patients:
                for e in p.expect:
                    result.checks += 1
                    failure = found.check(p, e)
                    if failure is not None:
                        result.failures.append(failure)
    return result


def _expressions(tests: RuleTestFile) -> dict[str, ir.Node]:
    """What a run evaluates, and any attribute a test expects besides."""
    exprs = rule_expressions(tests.rule)
    for p in tests.patients:
        for e in p.expect:
            if e.name in ir.PATIENT_ATTRIBUTES and e.name not in exprs:
                exprs[e.name] = ir.Attr(e.name)
    return exprs


Where = tuple[Span, str] | None  # a rule line and what it defines there


@dataclass
class _Findings:
    """What one engine found for the store's patients: values, who is listed and why."""

    tests: RuleTestFile
    engine: str
    row: dict[str, int]                  # patient id -> row of ``values``
    values: dict[str, list]              # column -> value per row
    listed: dict[int, str]               # row -> reason text
    policy: dict[str, np.ndarray]        # policy name -> per row

    @classmethod
    def of(cls, store: Store, tests: RuleTestFile, engine: str) -> _Findings:
        rule = tests.rule
        table = get_engine(engine).evaluate(store, _expressions(tests), rule.as_of, rule.population)
        patient = table.column("patient").to_numpy().astype(np.int64)
        ids = store.table("patients").arrow.column("patient_id").cast(pa.string())
        practice = store.table("patients")["practice"]
        locality = store.table("practices")["locality"][practice]
        policy = policy_masks(store, rule.as_of, DEFAULT_POLICY)
        uncapped = dataclasses.replace(rule, limit={})  # listed before any cap: every eligible patient
        sel = select(uncapped, table, practice, locality, policy, ids)
        listed_values = table.take(pa.array(sel.rows, pa.int64()))
        met = {name: _flag(listed_values, f"include:{name}") for name, _ in rule.include}
        texts = reasons(rule, listed_values, met)
        id_list = ids.to_pylist()
        return cls(tests, engine, {id_list[p]: i for i, p in enumerate(patient)},
                   {c: table.column(c).to_pylist() for c in table.column_names},
                   {int(r): t for r, t in zip(sel.rows, texts)},
                   {name: mask[patient] for name, mask in policy.items()})

    def check(self, p: DeclaredPatient, e: Expectation) -> Failure | None:
        i = self.row[p.id]
        why, where = "", None
        if e.name == LISTED:
            actual = i in self.listed
            ok = actual is e.value
            if not ok:
                why, where = self._why(i)
        elif e.name == REASON:
            text = self.listed.get(i)
            ok = text is not None and all(part in text for part in e.value)
            why, where = self._why(i) if text is None else ("", self._criterion_met(i))
            actual = text if text is not None else "(not listed)"
        elif e.name == EXCLUDED_BY:
            meets, hits = self._meets(i), self._exclusions(i)
            ok = meets and all(x in hits for x in e.value)
            actual = tuple(hits) if meets else "(does not meet the criteria)"
            why, where = ("", self._exclusion(e.value[0])) if meets else self._why(i)
        else:
            actual = self.values[e.name][i]
            ok, where = matches(actual, e), self._defined_at(e.name, actual)
        if ok:
            return None
        expected = e.value[0] if isinstance(e.value, tuple) and len(e.value) == 1 else e.value
        span, what = where if where else (None, "")
        return Failure(str(self.tests.path), p.id, p.description, p.span, e.span, self.engine, e.name,
                       expected, actual, span, what, why)

    # --- why a patient is or is not listed, and the rule line that decides it --------------
    def _flag(self, name: str, i: int) -> bool:
        return bool(self.values[name][i])

    def _meets(self, i: int) -> bool:
        """In the population and meeting the criteria (before any exclusion)."""
        return self._flag("population", i) and (not self.tests.rule.include or self._flag("require", i))

    def _exclusions(self, i: int) -> list[str]:
        rule_hits = [n for n, _ in self.tests.rule.exclude if self._flag(f"exclude:{n}", i)]
        return rule_hits + [n for n in POLICY_EXCLUSIONS if n in self.policy and self.policy[n][i]]

    def _why(self, i: int) -> tuple[str, Where]:
        src, rule = self.tests.source, self.tests.rule
        if i in self.listed:
            return f"listed: {self.listed[i]}", self._criterion_met(i)
        if not self._flag("population", i):
            return "not in the rule's population", (src.population.span, "population") if src.population else None
        if not self._meets(i):
            states = ", ".join(f"{n} {'met' if self._flag(f'include:{n}', i) else 'not met'}" for n, _ in rule.include)
            failing = [n for n, _ in rule.include if not self._flag(f"include:{n}", i)]
            return f"does not meet the criteria: {states}", (
                (src.include[failing[0]].span, f"include {failing[0]}") if failing else None)
        hits = self._exclusions(i)
        return f"excluded by {', '.join(hits)}", self._exclusion(hits[0]) if hits else None

    def _criterion_met(self, i: int) -> Where:
        met = [n for n, _ in self.tests.rule.include if self._flag(f"include:{n}", i)]
        return (self.tests.source.include[met[0]].span, f"include {met[0]}") if met else None

    def _exclusion(self, name: str) -> Where:
        loc = self.tests.source.exclude.get(name)
        return (loc.span, f"exclude {name}") if loc else None

    def _defined_at(self, name: str, actual: object) -> Where:
        src = self.tests.source
        kind, _, criterion = name.partition(":")
        if criterion:
            return ((src.include if kind == "include" else src.exclude)[criterion].span, f"{kind} {criterion}")
        if name in src.features:
            return src.features[name].span, f"feature {name}"
        if name == "population" and src.population:
            return src.population.span, "population"
        if name == "segment" and src.segments:
            spans = dict(src.segments)
            return (spans.get(actual) or src.segments[0][1]).span, "segments"
        return None


def matches(actual: object, e: Expectation) -> bool:
    """``actual`` is what ``e`` expects: missing, true/false (not 0/1), a whole number, a
    decimal to the places it is written with (0.28 matches 0.2777...) or else within 1e-9,
    text, or a date."""
    want = e.value
    if want is None or actual is None:
        return want is None and actual is None
    if isinstance(want, bool) or isinstance(actual, bool):
        return actual is want
    if isinstance(want, (int, float)) and isinstance(actual, (int, float)):
        if isinstance(want, float) and e.places is not None and isinstance(actual, float):
            return math.isclose(rounded(actual, e.places), float(want), rel_tol=0, abs_tol=10.0 ** -(e.places + 3))
        return math.isclose(actual, want, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(want, dt.date) and isinstance(actual, dt.date):
        return want == actual
    return str(actual) == str(want) if isinstance(actual, str) else False


def shown(v: object) -> str:
    if v is None:
        return "missing"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(shown(x) for x in v) + "]" if v else "[] (no exclusion)"
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, str):
        return repr(v)
    return repr(v) if isinstance(v, float) else str(v)


def _short(span: Span) -> str:
    """file:line, the file relative to the working folder when it lies inside it."""
    return f"{display_path(span.file)}:{span.line}"


def display_path(file: str | Path) -> str:
    """A path relative to the working folder when it lies inside it, else as given."""
    path = Path(file)
    with contextlib.suppress(ValueError, OSError):
        path = path.resolve().relative_to(Path.cwd().resolve())
    return str(path)


def _plain(v: object) -> object:
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return int(v)
    return v


def _flag(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
