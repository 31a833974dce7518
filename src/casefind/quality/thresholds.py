"""``--fail-on`` thresholds for scheduled runs: a small grammar, checked before any work.

    RULE   := METRIC [":" TABLE ["." COLUMN]] OP NUMBER ["%"]
    OP     := "<" | "<=" | ">" | ">="

Metrics: ``completeness`` (the share of rows filling a column, per table and column),
``unknown_codes`` and ``malformed_codes`` (the share of coded rows, per table),
``quarantined`` (the share of read rows quarantined on ingest, per table), ``rows_change``
(the change in rows against ``--against``, per table, e.g. -0.1 for a tenth fewer), and the
counts ``gaps`` and ``implausible`` (findings in the scope). Shares are 0-1, or percentages
with ``%``. A rule is crossed when any value in its scope satisfies it: ``completeness<0.95``
is crossed by any column under 95%, ``gaps>0`` by one gap.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from casefind.errors import UsageError
from casefind.quality.tables import CODED, MEASURED

OPTION = "--fail-on"
SHARES = ("completeness", "unknown_codes", "malformed_codes", "quarantined", "rows_change")
COUNTS = ("gaps", "implausible")
METRICS = SHARES + COUNTS
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_RULE = re.compile(r"^\s*([a-z_]+)\s*(?::\s*([a-z_]+)(?:\.([a-z_]+))?)?\s*(<=|>=|<|>)\s*"
                   r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(%?)\s*$")
EXAMPLES = "e.g. 'completeness<0.95', 'gaps>0', 'unknown_codes:diagnoses>1%', 'implausible>0'"


@dataclass(frozen=True)
class Threshold:
    text: str
    metric: str
    table: str | None
    column: str | None
    op: str
    value: float

    def crosses(self, x: float) -> bool:
        return _OPS[self.op](x, self.value)


def parse(text: str) -> Threshold:
    """One rule; anything else is a usage error naming --fail-on and the grammar."""
    m = _RULE.match(text or "")
    if not m:
        raise UsageError(f"{text[:80]!r} is not a threshold",
                         f"write METRIC[:TABLE[.COLUMN]] OP NUMBER, {EXAMPLES} (quote it in the shell)", OPTION)
    metric, table, column, op, number, percent = m.groups()
    if metric not in METRICS:
        raise UsageError(f"{text[:80]!r}: unknown metric {metric!r}", f"metrics: {', '.join(METRICS)}", OPTION)
    value = float(number) / (100 if percent else 1)
    if metric in COUNTS and (percent or value < 0):
        raise UsageError(f"{text[:80]!r}: {metric} is a count of findings, 0 or more", EXAMPLES, OPTION)
    if metric in SHARES and metric != "rows_change" and not 0 <= value <= 1:
        raise UsageError(f"{text[:80]!r}: {metric} is a share from 0 to 1 (or 0% to 100%)", EXAMPLES, OPTION)
    _check_scope(text, metric, table, column)
    return Threshold(text.strip(), metric, table, column, op, value)


def _check_scope(text: str, metric: str, table: str | None, column: str | None) -> None:
    if table is None:
        return
    tables = sorted(CODED) if metric in ("unknown_codes", "malformed_codes") else sorted(MEASURED)
    if table not in tables:
        raise UsageError(f"{text[:80]!r}: {metric} has no table {table!r}", f"tables: {', '.join(tables)}", OPTION)
    if column is not None:
        if metric != "completeness":
            raise UsageError(f"{text[:80]!r}: only completeness takes a column", EXAMPLES, OPTION)
        columns = MEASURED[table].measured_columns()
        if column not in columns:
            raise UsageError(f"{text[:80]!r}: completeness is not measured for {table}.{column}",
                             f"columns of {table}: {', '.join(columns)}", OPTION)


def parse_all(texts) -> list[Threshold]:
    return [parse(t) for t in texts]


def _values(rule: Threshold, report: dict) -> list[tuple[str, float]]:
    """The (where, value) pairs of the report a rule is checked against."""
    tables = {n: t for n, t in report["tables"].items() if rule.table in (None, n)}
    if rule.metric == "completeness":
        return [(f"{n}.{c}", v["share"]) for n, t in tables.items() for c, v in t["completeness"].items()
                if rule.column in (None, c) and v["share"] is not None]
    if rule.metric in ("unknown_codes", "malformed_codes"):
        key = rule.metric.replace("_codes", "_share")
        return [(n, t["codes"][key]) for n, t in tables.items() if t.get("codes") and t["codes"][key] is not None]
    if rule.metric == "quarantined":
        return [(n, t["quarantined"]["share"]) for n, t in tables.items() if t["quarantined"]["share"] is not None]
    if rule.metric == "rows_change":
        return [(r["table"], r["change_share"]) for r in (report.get("trend") or {}).get("tables", [])
                if rule.table in (None, r["table"]) and r["change_share"] is not None]
    findings = report["gaps"] if rule.metric == "gaps" else report["implausible"]
    count = sum(1 if rule.metric == "gaps" else f["rows"] for f in findings if rule.table in (None, f["table"]))
    return [(rule.table or "all tables", count)]


def evaluate(rules: list[Threshold], report: dict) -> list[dict]:
    """Each rule with whether it was crossed, and where."""
    out = []
    for rule in rules:
        crossed = [{"where": w, "value": v} for w, v in _values(rule, report) if rule.crosses(v)]
        out.append({"rule": rule.text, "crossed": bool(crossed), "where": crossed})
    return out


def describe(results: list[dict]) -> str:
    """One line listing what crossed which threshold."""
    parts = []
    for r in results:
        if r["crossed"]:
            shown = ", ".join(f"{w['where']} {_fmt(w['value'])}" for w in r["where"][:5])
            more = f" and {len(r['where']) - 5} more" if len(r["where"]) > 5 else ""
            parts.append(f"{r['rule']} ({shown}{more})")
    return "; ".join(parts)


def _fmt(v: float) -> str:
    return f"{v:,}" if float(v).is_integer() and abs(v) >= 1 else f"{v:.4g}"
