"""Reasons a GP can read: why each patient is on the list.

A criterion's ``reason:`` template is filled with the patient's values
("3 emergency admissions in the last 12 months (threshold 2)"); without one, the sentence
is built from the condition itself, naming each feature with its value and threshold.
"""
from __future__ import annotations

import datetime as dt
import string
from functools import lru_cache

from casefind.rules import ir
from casefind.rules.compile import parse_field

_OPS = {">=": "at least", ">": "more than", "<=": "at most", "<": "less than", "==": "equal to", "!=": "not"}


def fmt(v) -> str:
    if v is None:
        return "none recorded"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, dt.date):
        return v.strftime("%d %b %Y").lstrip("0")
    return str(v)


def fill(template: str, row: dict) -> str:
    """A reason template with each {name} replaced by the patient's value, formatted by its
    type (fmt), and each plural field {name|s} or {name|singular|plural} by the form its
    value needs (the singular for exactly 1). Only these fields are filled (the compiler
    allows nothing else): no format spec or attribute access runs, whatever the template
    says; {{ and }} are braces."""
    return _fill_parsed(_parsed(template), row)


@lru_cache(maxsize=256)
def _parsed(template: str) -> tuple[tuple[str | None, tuple[str, str] | None, str], ...]:
    """A template's (name, plural forms, literal before it) pieces, parsed once however many
    patients it describes. A format spec or conversion is dropped, never run (the compiler
    refuses them; this is the second line of defence)."""
    pieces = []
    for literal, name, _, _ in string.Formatter().parse(template):
        if name is None:
            pieces.append((None, None, literal))
            continue
        try:
            pieces.append(parse_field(name) + (literal,))
        except ValueError:
            pieces.append((name, None, literal))
    return tuple(pieces)


def _fill_parsed(pieces: tuple[tuple[str | None, tuple[str, str] | None, str], ...], row: dict) -> str:
    out = []
    for name, forms, literal in pieces:
        out.append(literal)
        if name is None:
            continue
        value = row.get(name)
        out.append(fmt(value) if forms is None else forms[0] if _is_one(value) else forms[1])
    return "".join(out)


def _is_one(value) -> bool:
    """Whether a count reads as singular: exactly 1 (1.0 too); 0, 2, 1.5 and none are plural."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 1


class _Reading(dict):
    """A row that records which names are read from it (and holds no values)."""

    def __init__(self):
        super().__init__()
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return default


def _label(name: str) -> str:
    return name.replace("_", " ")


class Describer:
    def __init__(self, features: dict[str, ir.Node]):
        self.names = {}
        for name, node in features.items():
            self.names.setdefault(node, name)

    def reads(self, node: ir.Node, template: str | None) -> set[str]:
        """The names (features, attributes, parameters) a sentence reads from the patient's
        row: what the list must evaluate to describe this criterion."""
        row = _Reading()
        self.sentence("", node, row, template)
        return row.read

    def sentence(self, name: str, node: ir.Node, row: dict, template: str | None) -> str:
        if template:
            return fill(template, row)
        return self.describe(node, row) or _label(name)

    def describe(self, n: ir.Node, row: dict) -> str | None:
        if n in self.names:
            feature = self.names[n]
            return f"{_label(feature)}: {fmt(row.get(feature))}"
        if isinstance(n, ir.Binary) and n.op in ("and", "or"):
            parts = [self.describe(n.left, row), self.describe(n.right, row)]
            parts = [p for p in parts if p]
            return f" {n.op} ".join(parts) if parts else None
        if isinstance(n, ir.Binary) and n.op in _OPS:
            left = self.names.get(n.left)
            if left is not None and isinstance(n.right, (ir.Const, ir.Param)):
                return f"{_label(left)}: {fmt(row.get(left))} (threshold {_OPS[n.op]} {fmt(n.right.value)})"
            if isinstance(n.left, ir.Attr) and isinstance(n.right, (ir.Const, ir.Param)):
                return f"{n.left.name} {fmt(row.get(n.left.name))} ({_OPS[n.op]} {fmt(n.right.value)})"
        return None


def aggregates_in(n: ir.Node) -> list[ir.Aggregate]:
    """The aggregations a criterion rests on: where its evidence comes from."""
    out, stack = [], [n]
    while stack:
        x = stack.pop()
        if isinstance(x, ir.Aggregate) and x not in out:
            out.append(x)
        elif isinstance(x, ir.At):
            stack.append(x.operand)
        else:
            stack.extend(ir.children(x))
    return out
