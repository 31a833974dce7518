"""Plan: which aggregations each table's single scan must compute.

Every Aggregate and Trend in the rule, at every evaluation date it is needed (``at`` moves
the date), becomes one *slot* of its table's scan. A table is read once per run however many
features, windows and dates use it; two features asking the same thing share a slot.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from casefind.rules import ir


def shift_date(d: dt.date, months: int = 0, days: int = 0) -> dt.date:
    """Calendar month arithmetic, the day clamped to the month's end (as DuckDB does)."""
    if months:
        m = d.month - 1 + months
        y, m = d.year + m // 12, m % 12 + 1
        last = (dt.date(y + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1)).day
        d = dt.date(y, m, min(d.day, last))
    return d + dt.timedelta(days=days)


def constant_date(n: ir.Node, d: dt.date, params: dict | None = None) -> dt.date:
    """The date an ``at`` moves to: as_of, a fixed date, or either moved by months/days."""
    if isinstance(n, ir.AsOf):
        return d
    if isinstance(n, (ir.Const, ir.Param)) and n.type is ir.T.DATE:
        return n.value
    if isinstance(n, ir.Shift):
        return shift_date(constant_date(n.date, d), n.months, n.days)
    raise NotImplementedError("'at' needs a date that is the same for every patient")


@dataclass(frozen=True)
class Slot:
    """One aggregation at one evaluation date: an output column of a table's scan."""

    node: ir.Aggregate | ir.Trend
    as_of: dt.date

    @property
    def table(self) -> str:
        return self.node.table


@dataclass
class Plan:
    as_of: dt.date
    outputs: dict[str, ir.Node]
    population: ir.Node | None
    scans: dict[str, list[Slot]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A hash of what the kernels compute (not of the data): the kernel cache key."""
        text = repr(sorted((t, [repr(s) for s in slots]) for t, slots in self.scans.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_plan(outputs: dict[str, ir.Node], as_of: dt.date, population: ir.Node | None = None) -> Plan:
    plan = Plan(as_of, outputs, population)
    seen: set[tuple[int, dt.date]] = set()

    def visit(n, d: dt.date) -> None:
        key = (id(n), d)
        if key in seen or n is None:
            return
        seen.add(key)
        if isinstance(n, (ir.Aggregate, ir.Trend)):
            slots = plan.scans.setdefault(n.table, [])
            if Slot(n, d) not in slots:
                slots.append(Slot(n, d))
            return
        if isinstance(n, ir.At):
            visit(n.operand, constant_date(n.when, d))
            return
        for child in ir.children(n):
            visit(child, d)

    for node in outputs.values():
        visit(node, as_of)
    if population is not None:
        visit(population, as_of)
    return plan
