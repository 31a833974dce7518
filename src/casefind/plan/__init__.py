"""Plan: which aggregations each table's single scan must compute.

Every Aggregate and Trend in the rule, at every evaluation date it is needed (``at`` moves
the date), becomes one *slot* of its table's scan. A table is read once per run however many
features, windows and dates use it; two features asking the same thing share a slot.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from casefind.contract.dates import shift_date
from casefind.rules import ir


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
    """``scans``: each table's slots. ``stages``: the slots whose filter or value reads
    another aggregation ("diagnoses of the latest admission") come in a later stage than
    that aggregation; stage 0 reads no aggregation. Most rules have one stage."""

    as_of: dt.date
    outputs: dict[str, ir.Node]
    population: ir.Node | None
    scans: dict[str, list[Slot]] = field(default_factory=dict)
    stage: dict[Slot, int] = field(default_factory=dict)

    @property
    def stages(self) -> list[dict[str, list[Slot]]]:
        """The scans stage by stage: each stage's slots per table, in plan order."""
        out: list[dict[str, list[Slot]]] = [{} for _ in range(1 + max(self.stage.values(), default=0))]
        for table, slots in self.scans.items():
            for s in slots:
                out[self.stage.get(s, 0)].setdefault(table, []).append(s)
        return out

    @property
    def key(self) -> str:
        """A hash of what the kernels compute (not of the data): the kernel cache key."""
        text = repr(sorted((t, [repr(s) for s in slots]) for t, slots in self.scans.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_plan(outputs: dict[str, ir.Node], as_of: dt.date, population: ir.Node | None = None) -> Plan:
    plan = Plan(as_of, outputs, population)
    seen: set[tuple[int, dt.date]] = set()
    done: dict[tuple[int, dt.date], int] = {}

    def visit(n, d: dt.date) -> int:
        """Adds the slots ``n`` needs at ``d``; returns the stage after the last of them."""
        key = (id(n), d)
        if n is None:
            return 0
        if key in seen:
            return done.get(key, 0)
        seen.add(key)
        after = 0
        if isinstance(n, (ir.Aggregate, ir.Trend)):
            stage = max((visit(x, d) for part in ir.parts(n) for x in _patient_parts(part)), default=0)
            slot = Slot(n, d)
            slots = plan.scans.setdefault(n.table, [])
            if slot not in slots:
                slots.append(slot)
            plan.stage[slot] = max(plan.stage.get(slot, 0), stage)
            after = plan.stage[slot] + 1
        elif isinstance(n, ir.At):
            after = visit(n.operand, constant_date(n.when, d))
        else:
            after = max((visit(child, d) for child in ir.children(n)), default=0)
        done[key] = after
        return after

    for node in outputs.values():
        visit(node, as_of)
    if population is not None:
        visit(population, as_of)
    return plan


def _patient_parts(n: ir.Node):
    """The largest per-patient sub-expressions of a row expression: values computed before
    the rows are read (constants need nothing)."""
    if n.domain.per_patient:
        if not isinstance(n, (ir.Const, ir.Param, ir.AsOf)):
            yield n
        return
    for c in ir.children(n):
        yield from _patient_parts(c)
