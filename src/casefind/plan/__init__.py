"""Plan: which aggregations each table's single scan must compute.

Every Aggregate and Trend in the rule, at every evaluation date it is needed (``at`` moves
the date), becomes one *slot* of its table's scan. A table is read once per run however many
features, windows and dates use it; two features asking the same thing share a slot.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass, field

from casefind.contract.dates import shift_date
from casefind.rules import ir


def bind_days(x: int, period_days: int | None) -> int:
    """A day count with a KPI's period (``ir.PeriodDays``) bound to that many days."""
    if isinstance(x, ir.PeriodDays):
        if period_days is None:
            raise NotImplementedError("'period' is bound to a reporting period before evaluation")
        return x.bound(period_days)
    return x


def bind(node, period_days: int):
    """``node`` with every ``period`` placeholder bound to ``period_days`` days: what an
    engine that evaluates one period at a time (the reference engine) is given. Shared
    sub-trees stay shared; a tree without placeholders is returned as it is."""
    return substitute(node, lambda n: n.bound(period_days) if isinstance(n, ir.PeriodDays) else None)


def substitute(node, swap, _memo: dict | None = None):
    """``node`` rebuilt with each part for which ``swap`` gives a replacement (not None)
    replaced by it; shared sub-trees stay shared, and a tree with nothing to replace is
    returned as it is. The one tree rewrite (``bind``, the sharded ranks' pools)."""
    memo = {} if _memo is None else _memo
    key = id(node)
    if key in memo:
        return memo[key][1]
    out = swap(node)
    if out is None:
        out = _rebuilt(node, swap, memo)
    memo[key] = (node, out)  # the node is kept so that its id is not reused meanwhile
    return out


def _rebuilt(node, swap, memo: dict):
    """``node`` with its parts substituted (itself when none changes)."""
    if isinstance(node, tuple):
        items = tuple(substitute(x, swap, memo) for x in node)
        return node if all(a is b for a, b in zip(items, node)) else items
    if dataclasses.is_dataclass(node) and not isinstance(node, type) and not isinstance(node, ir.Codelist):
        changes = {}
        for f in dataclasses.fields(node):
            if f.init:
                old = getattr(node, f.name)
                new = substitute(old, swap, memo)
                if new is not old:
                    changes[f.name] = new
        return dataclasses.replace(node, **changes) if changes else node
    return node


def constant_date(n: ir.Node, d: dt.date, params: dict | None = None, period_days: int | None = None) -> dt.date:
    """The date an ``at`` moves to: as_of, a fixed date, or either moved by months/days."""
    if isinstance(n, ir.AsOf):
        return d
    if isinstance(n, (ir.Const, ir.Param)) and n.type is ir.T.DATE:
        return n.value
    if isinstance(n, ir.Shift):
        return shift_date(constant_date(n.date, d, params, period_days),
                          bind_days(n.months, period_days), bind_days(n.days, period_days))
    raise NotImplementedError("'at' needs a date that is the same for every patient")


@dataclass(frozen=True)
class Slot:
    """One aggregation at one evaluation date: an output column of a table's scan.
    ``dates``: its date in each period a plan evaluates at once (``as_of`` the first)."""

    node: ir.Aggregate | ir.Trend
    as_of: dt.date
    dates: tuple[dt.date, ...] = ()

    @property
    def table(self) -> str:
        return self.node.table


@dataclass
class Plan:
    """``scans``: each table's slots. ``stages``: the slots whose filter or value reads
    another aggregation ("diagnoses of the latest admission") come in a later stage than
    that aggregation; stage 0 reads no aggregation. Most rules have one stage.
    ``periods``: (evaluation date, the KPI period's days or None) for each of the periods
    evaluated together; one, at ``as_of``, for a rule."""

    as_of: dt.date
    outputs: dict[str, ir.Node]
    population: ir.Node | None
    scans: dict[str, list[Slot]] = field(default_factory=dict)
    stage: dict[Slot, int] = field(default_factory=dict)
    periods: tuple[tuple[dt.date, int | None], ...] = ()

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


def make_plan(outputs: dict[str, ir.Node], as_of: dt.date, population: ir.Node | None = None,
              periods: list[tuple[dt.date, int | None]] | None = None) -> Plan:
    """The slots ``outputs`` need at ``as_of`` or, with ``periods``, at each period's date
    with its ``period`` days (a slot then holds its date in every period: ``Slot.dates``)."""
    periods = tuple(periods) if periods else ((as_of, None),)
    plan = Plan(periods[0][0], outputs, population, periods=periods)
    days = [p for _, p in periods]
    done: dict[tuple[int, tuple], int] = {}

    def visit(n, ds: tuple) -> int:
        """Adds the slots ``n`` needs at dates ``ds``; returns the stage after the last of them."""
        if n is None:
            return 0
        key = (id(n), ds)
        if key in done:
            return done[key]
        done[key] = 0
        after = 0
        if isinstance(n, (ir.Aggregate, ir.Trend)):
            stage = max((visit(x, ds) for part in ir.parts(n) for x in ir.patient_parts(part)), default=0)
            slot = Slot(n, ds[0], ds)
            slots = plan.scans.setdefault(n.table, [])
            if slot not in plan.stage:
                slots.append(slot)
            plan.stage[slot] = max(plan.stage.get(slot, 0), stage)
            after = plan.stage[slot] + 1
        elif isinstance(n, ir.At):
            after = visit(n.operand, tuple(constant_date(n.when, d, None, p) for d, p in zip(ds, days)))
        else:
            after = max((visit(child, ds) for child in ir.children(n)), default=0)
        done[key] = after
        return after

    for node in outputs.values():
        visit(node, tuple(d for d, _ in periods))
    if population is not None:
        visit(population, tuple(d for d, _ in periods))
    return plan
