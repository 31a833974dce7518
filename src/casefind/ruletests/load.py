"""Read a rule's test file (``<rule>.test.yml``) and check it against the rule, every value located.

The file is read as rule files are (casefind.rules.load: size, depth and alias limits, each
value's line and column), then checked against the data contract (tables, columns, dates,
allowed values) and against the compiled rule (the names it expects), so that a mistake in
the file is a RuleError at file:line:col with a hint (exit code 4), never a failed test.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from casefind.contract import TABLES
from casefind.contract.schema import EARLIEST_DATE, LATEST_DATE
from casefind.errors import UsageError
from casefind.rules import ir
from casefind.rules.compile import CompiledRule, check_as_of, compile_rule
from casefind.rules.errors import RuleError, Span, did_you_mean
from casefind.rules.load import RuleSource, check_keys, key_span, load_rule, read_yaml, span_at

TEST_SUFFIX = ".test.yml"
TOP_LEVEL = ("rule", "description", "as_of", "params", "patients")
PATIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_PATIENTS = 1_000
# what a patient's attributes default to (as the spec tests' patient(); docs/rule-tests.md)
PATIENT_DEFAULTS = {"birth_date": "1950-01-01", "sex": "F", "practice_code": "Z00001",
                    "registration_start": "2000-01-01", "imd_decile": "5"}
ATTRIBUTES = tuple(c.name for c in TABLES["patients"].source_columns if c.name != "patient_id")
EVENT_TABLES = tuple(n for n, t in TABLES.items() if t.per_patient_events and not t.restricted)
PATIENT_KEYS = ("id", "description", "age", *ATTRIBUTES, *EVENT_TABLES, "expect")
LISTED, REASON, EXCLUDED_BY = "listed", "reason", "excluded_by"
POLICY_EXCLUSIONS = ("died", "deregistered", "opted_out")  # the list policy's names (lists/run.py)


@dataclass(frozen=True)
class Cell:
    """One value of a source row as ingest will read it (text, or None for empty)."""

    text: str | None
    span: Span


@dataclass
class EventRow:
    table: str
    cells: dict[str, Cell]
    span: Span


@dataclass(frozen=True)
class Expectation:
    """``name`` (a feature, attribute, criterion, ``listed``, ``reason`` or ``excluded_by``)
    should be ``value``; ``places``: the decimal places a decimal was written with."""

    name: str
    value: object
    span: Span
    places: int | None = None


@dataclass
class DeclaredPatient:
    id: str
    description: str
    span: Span
    attributes: dict[str, Cell]
    events: list[EventRow] = field(default_factory=list)
    expect: list[Expectation] = field(default_factory=list)


@dataclass
class RuleTestFile:
    path: Path
    rule_path: Path
    rule: CompiledRule
    source: RuleSource          # the rule as loaded: where each feature and criterion is defined
    params: dict[str, str]
    patients: list[DeclaredPatient]
    description: str = ""


def rule_test_file(rule_path: str | Path) -> Path:
    """The test file beside a rule file: rules/frail.yml -> rules/frail.test.yml."""
    path = Path(rule_path)
    return path.with_name(path.name.removesuffix(".yml").removesuffix(".yaml") + TEST_SUFFIX)


def is_test_file(path: str | Path) -> bool:
    return Path(path).name.endswith(TEST_SUFFIX)


def load_test_file(path: str | Path) -> RuleTestFile:
    """A test file, checked against the contract and its compiled rule."""
    path = Path(path)
    file = str(path)
    data = _read(path)
    check_keys(file, data, TOP_LEVEL, "the test file")
    rule_path = _rule_path(path, data)
    as_of = check_as_of(data["as_of"], span_at(file, data, "as_of"), None) if data.get("as_of") is not None else None
    params = _params(file, data)
    rule = _compile(rule_path, as_of, params, span_at(file, data, "params") if "params" in data else Span(file, 1, 1))
    source = load_rule(rule_path)
    seq = data.get("patients")
    if not isinstance(seq, CommentedSeq) or not seq:
        raise RuleError(span_at(file, data, "patients") if "patients" in data else Span(file, 1, 1),
                        "a test file lists its patients under 'patients:'",
                        "patients:\n  - id: frail_listed\n    description: ...\n    expect: {listed: true}")
    if len(seq) > MAX_PATIENTS:
        raise RuleError(span_at(file, data, "patients"), f"at most {MAX_PATIENTS:,} test patients in one file")
    lines = path.read_text(encoding="utf-8").splitlines()
    reader = _PatientReader(file, lines, rule)
    patients = [reader.patient(seq, i) for i in range(len(seq))]
    return RuleTestFile(path, rule_path, rule, source, params, patients, str(data.get("description") or ""))


def _read(path: Path) -> CommentedMap:
    """The file as YAML with positions. YAML itself rejects an impossible date (2026-02-30)
    without saying where; that error is located here, at the first such date."""
    try:
        return read_yaml(path, "a test file is a YAML mapping (patients: ...)")
    except RuleError as e:
        if e.span is None or (e.span.line, e.span.col) != (1, 1) or not e.message.startswith("not valid YAML"):
            raise
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in re.finditer(r"(?<![\w-])(\d{4})-(\d{2})-(\d{2})(?![\w-])", line):
                try:
                    dt.date(*map(int, m.groups()))
                except ValueError:
                    raise RuleError(Span(str(path), n, m.start() + 1), f"{m.group(0)} is not a date",
                                    "a date is YYYY-MM-DD, a day that exists in that month") from None
        raise


def _rule_path(path: Path, data: CommentedMap) -> Path:
    """The rule a test file tests: ``rule:`` (a file relative to the test file), else the
    rule file beside it of the same name."""
    if data.get("rule") is not None:
        given = path.parent / str(data["rule"])
        span = span_at(str(path), data, "rule")
    else:
        given = path.with_name(path.name.removesuffix(TEST_SUFFIX) + ".yml")
        span = Span(str(path), 1, 1)
    if not given.is_file():
        raise RuleError(span, f"no rule file {given} for this test file",
                        f"name it with rule: (relative to the test file), or keep it beside as {given.name}")
    return given


def _params(file: str, data: CommentedMap) -> dict[str, str]:
    node = data.get("params")
    if node is None:
        return {}
    if not isinstance(node, CommentedMap):
        raise RuleError(span_at(file, data, "params"), "'params' is a mapping of rule parameter: value",
                        "params: {min_age: 70}")
    out = {}
    for k, v in node.items():
        if isinstance(v, (CommentedMap, CommentedSeq)) or v is None:
            raise RuleError(span_at(file, node, k), f"parameter {k!r} must be one value")
        out[str(k)] = v.isoformat() if isinstance(v, dt.date) else str(v).lower() if isinstance(v, bool) else str(v)
    return out


def _compile(rule_path: Path, as_of: dt.date | None, params: dict[str, str], span: Span) -> CompiledRule:
    """The rule compiled with the file's as_of and params; a bad parameter is an error in
    the test file (at ``span``), not a usage error."""
    try:
        return compile_rule(rule_path, as_of=as_of, params=params)
    except UsageError as e:
        message = e.message.removeprefix("--param: ")
        raise RuleError(span, f"params: {message}", e.hint) from None


class _PatientReader:
    """Reads each patient of a test file, checking names and values as it goes."""

    def __init__(self, file: str, lines: list[str], rule: CompiledRule):
        self.file, self.lines, self.rule = file, lines, rule
        self.seen: dict[str, Span] = {}
        self.names = expectable(rule)

    def patient(self, seq: CommentedSeq, i: int) -> DeclaredPatient:
        file, node = self.file, seq[i]
        span = span_at(file, seq, index=i)
        if not isinstance(node, CommentedMap):
            raise RuleError(span, "each patient is a mapping (id:, description:, ..., expect:)")
        check_keys(file, node, PATIENT_KEYS, "a test patient")
        pid = self._id(node, span)
        description = node.get("description")
        if not isinstance(description, str) or not description.strip() or "\n" in description.strip():
            raise RuleError(span_at(file, node, "description") if "description" in node else span,
                            f"patient {pid}: give a one-line description of what it tests",
                            "description: severe frailty but no crisis, so not listed")
        attributes = self._attributes(node, pid)
        events = [row for table in EVENT_TABLES if table in node for row in self._events(node, table, pid)]
        if "expect" not in node or not isinstance(node["expect"], CommentedMap) or not node["expect"]:
            raise RuleError(span_at(file, node, "expect") if "expect" in node else span,
                            f"patient {pid}: 'expect' is a mapping of what the rule should find",
                            "expect: {listed: true, efi: 0.25}")
        return DeclaredPatient(pid, description.strip(), span, attributes, events, self._expect(node["expect"], pid))

    def _id(self, node: CommentedMap, span: Span) -> str:
        if "id" not in node:
            raise RuleError(span, "a test patient needs an id", "id: frail_listed")
        pid, where = str(node["id"]), span_at(self.file, node, "id")
        if not PATIENT_ID.fullmatch(pid):
            raise RuleError(where, f"patient id {pid[:40]!r} must be letters, digits, '_', '.' and '-', "
                            "at most 64 characters", "e.g. severe_no_crisis")
        if pid in self.seen:
            raise RuleError(where, f"patient id {pid!r} is given twice (first at {self.seen[pid]})")
        self.seen[pid] = where
        return pid

    def _attributes(self, node: CommentedMap, pid: str) -> dict[str, Cell]:
        file = self.file
        if "age" in node and "birth_date" in node:
            raise RuleError(key_span(file, node, "age"), f"patient {pid}: give age or birth_date, not both")
        out = {}
        for name in ATTRIBUTES:
            if name in node:
                out[name] = self.cell("patients", name, node, name)
            elif name in PATIENT_DEFAULTS:
                out[name] = Cell(PATIENT_DEFAULTS[name], key_span(file, node, "id"))
        if "age" in node:
            out["birth_date"] = Cell(self._born(node, pid), span_at(file, node, "age"))
        return out

    def _born(self, node: CommentedMap, pid: str) -> str:
        """``age: N``: born N years before as_of to the day, so aged exactly N at as_of."""
        age, span = node["age"], span_at(self.file, node, "age")
        if isinstance(age, bool) or not isinstance(age, int) or not 0 <= age <= 120:
            raise RuleError(span, f"patient {pid}: age is whole years, 0 to 120", "age: 65")
        d = self.rule.as_of
        try:
            return d.replace(year=d.year - age).isoformat()
        except ValueError:  # as_of is 29 February: born on the 28th is N on the 29th
            return d.replace(year=d.year - age, day=28).isoformat()

    def _events(self, node: CommentedMap, table: str, pid: str) -> list[EventRow]:
        file, seq = self.file, node[table]
        if seq is None:
            return []
        if not isinstance(seq, CommentedSeq):
            raise RuleError(span_at(file, node, table), f"patient {pid}: {table} is a list of rows",
                            f"{table}:\n  - {{{', '.join(_required(table)[:3])}: ...}}")
        rows = []
        columns = _columns(table)
        for i, row in enumerate(seq):
            span = span_at(file, seq, index=i)
            if not isinstance(row, CommentedMap):
                raise RuleError(span, f"patient {pid}: each {table} row is a mapping of column: value",
                                f"{{{', '.join(_required(table))}: ...}}")
            check_keys(file, row, columns, f"a {table} row (the patient is implied)")
            cells = {name: self.cell(table, name, row, name) for name in columns if name in row}
            for name in _required(table):
                if name not in cells:
                    raise RuleError(span, f"patient {pid}: this {table} row has no {name}",
                                    f"{table} rows need {', '.join(_required(table))}")
            rows.append(EventRow(table, cells, span))
        return rows

    def cell(self, table: str, column: str, node: CommentedMap, key: str) -> Cell:
        """A value checked as the contract column takes it: a RuleError at its position otherwise."""
        span, value = span_at(self.file, node, key), node[key]
        spec = TABLES[table].column(column)
        where = f"{table}.{column}"
        if value is None:
            if not spec.nullable and not (table == "reviews" and column == "rule"):
                raise RuleError(span, f"{where} may not be empty")
            return Cell(None, span)
        if isinstance(value, (CommentedMap, CommentedSeq)):
            raise RuleError(span, f"{where} is one value, not a {'list' if isinstance(value, list) else 'mapping'}")
        if spec.kind == "date":
            return Cell(_date(value, span, where), span)
        if spec.kind == "enum":
            text = str(value)
            if text not in spec.values:
                raise RuleError(span, f"{where} is one of {', '.join(spec.values)}, not {text[:40]!r}",
                                did_you_mean(text, spec.values))
            return Cell(text, span)
        if spec.kind in ("int", "float"):
            return Cell(_number(value, spec, span, where), span)
        return Cell(self._raw(value, span), span)

    def _raw(self, value: object, span: Span) -> str:
        """Text as written: a code YAML read as a number (0123) keeps its digits."""
        if isinstance(value, str):
            return value
        if isinstance(value, dt.date):
            return value.isoformat()
        line = self.lines[span.line - 1] if 0 < span.line <= len(self.lines) else ""
        token = re.match(r"[^\s,}\]#]+", line[span.col - 1:])
        return token.group(0) if token else str(value)

    def _expect(self, node: CommentedMap, pid: str) -> list[Expectation]:
        out = []
        for k, v in node.items():
            name, span = str(k), span_at(self.file, node, k)
            if name not in self.names:
                raise RuleError(key_span(self.file, node, k), f"patient {pid}: rule {self.rule.name} has no {name!r} "
                                "to expect", did_you_mean(name, self.names) or
                                "expect listed, reason, excluded_by, a feature, an attribute or include:/exclude:NAME")
            out.append(Expectation(name, self._expected(name, v, span, pid), span, _places(v)))
        _check_listing(out, pid)
        return out

    def _expected(self, name: str, value: object, span: Span, pid: str) -> object:
        if isinstance(value, CommentedMap):
            raise RuleError(span, f"patient {pid}: expect one value for {name}")
        if name == LISTED and not isinstance(value, bool):
            raise RuleError(span, f"patient {pid}: listed is true or false")
        if name in (REASON, EXCLUDED_BY):
            items = list(value) if isinstance(value, CommentedSeq) else [value]
            if not items or not all(isinstance(x, str) and x for x in items):
                raise RuleError(span, f"patient {pid}: {name} is text (or a list of texts)")
            if name == EXCLUDED_BY:
                allowed = [n for n, _ in self.rule.exclude] + list(POLICY_EXCLUSIONS)
                for x in items:
                    if x not in allowed:
                        raise RuleError(span, f"patient {pid}: {x!r} is not an exclusion of rule {self.rule.name}",
                                        did_you_mean(x, allowed) or f"exclusions: {', '.join(allowed)}")
            return tuple(items)
        if isinstance(value, CommentedSeq):
            raise RuleError(span, f"patient {pid}: expect one value for {name}, not a list")
        return value


def expectable(rule: CompiledRule) -> list[str]:
    """Every name a test can expect a value of, for this rule."""
    names = [LISTED, REASON, EXCLUDED_BY, "population", *rule.features]
    names += [a for a in ir.PATIENT_ATTRIBUTES if a not in rule.features]
    names += ["segment"] if rule.segments else []
    names += [f"include:{n}" for n, _ in rule.include] + [f"exclude:{n}" for n, _ in rule.exclude]
    return names


def _check_listing(expect: list[Expectation], pid: str) -> None:
    """reason needs listed: true, excluded_by listed: false (both implied when not given)."""
    given = {e.name: e for e in expect}
    listed = given.get(LISTED)
    for name, needs in ((REASON, True), (EXCLUDED_BY, False)):
        if name in given and listed is not None and listed.value is not needs:
            raise RuleError(given[name].span, f"patient {pid}: {name} is only for a patient "
                            f"{'listed' if needs else 'not listed'}, but listed is {str(listed.value).lower()}")
    if REASON in given and EXCLUDED_BY in given:
        raise RuleError(given[EXCLUDED_BY].span,
                        f"patient {pid}: a patient with a reason is listed, so excluded by nothing")


def _places(value: object) -> int | None:
    """Decimal places a decimal was written with (0.25 -> 2); None for other values or an exponent."""
    if isinstance(value, float) and not getattr(value, "_exp", None):
        width, prec = getattr(value, "_width", None), getattr(value, "_prec", None)
        if isinstance(width, int) and isinstance(prec, int) and width > prec:
            return width - prec - 1
    return None


def _date(value: object, span: Span, where: str) -> str:
    if isinstance(value, dt.datetime):
        raise RuleError(span, f"{where} is a date, not a date and time", "write YYYY-MM-DD")
    if isinstance(value, dt.date):
        d = value
    else:
        try:
            d = dt.date.fromisoformat(str(value).strip())
        except ValueError:
            raise RuleError(span, f"{where}: {str(value)[:40]!r} is not a date (YYYY-MM-DD)",
                            "e.g. 2026-05-01") from None
    if not EARLIEST_DATE <= d.isoformat() <= LATEST_DATE:
        raise RuleError(span, f"{where}: {d} is outside {EARLIEST_DATE} to {LATEST_DATE}")
    return d.isoformat()


def _number(value: object, spec, span: Span, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError(span, f"{where} is a number, not {str(value)[:40]!r}")
    if spec.kind == "int" and not float(value).is_integer():
        raise RuleError(span, f"{where} is a whole number, not {value}")
    if (spec.minimum is not None and value < spec.minimum) or (spec.maximum is not None and value > spec.maximum):
        bounds = f"{spec.minimum:g}" + (f" to {spec.maximum:g}" if spec.maximum is not None else " or more")
        raise RuleError(span, f"{where} is {bounds}, not {value}")
    return str(int(value)) if spec.kind == "int" else repr(float(value))


def _columns(table: str) -> tuple[str, ...]:
    return tuple(c.name for c in TABLES[table].source_columns if c.name != "patient_id")


def _required(table: str) -> tuple[str, ...]:
    optional = {"rule"} if table == "reviews" else set()
    return tuple(c.name for c in TABLES[table].source_columns
                 if c.name != "patient_id" and not c.nullable and c.name not in optional)
