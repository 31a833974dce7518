"""The tables and columns a rule or KPI file reads, worked out from its typed IR.

What an analyst (or an information governance review) needs to know is which data a rule
touches. The IR names it: each aggregation, trend and ``spell_has`` names its table, each
column reference its column, and a codelist match reads the table's code column and code
system. Beyond what the expressions name, an aggregation reads its table's date (every
aggregation looks only at rows up to the evaluation date), ``active`` reads a register's
start and end, and ``spell_has`` reads ``spell_id``. Patient attributes (age, registered,
...) are listed by name: they come from the patients table and its registrations.
"""
from __future__ import annotations

from collections.abc import Iterable

from casefind.contract import TABLES
from casefind.rules import ir

# the patients (and practices) columns each attribute is worked out from
ATTRIBUTE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "age": (("patients", "birth_date"),),
    "sex": (("patients", "sex"),),
    "practice": (("patients", "practice_code"),),
    "locality": (("patients", "practice_code"), ("practices", "locality_code")),
    "system": (("patients", "practice_code"), ("practices", "system_code")),
    "imd_decile": (("patients", "imd_decile"),),
    "birth_date": (("patients", "birth_date"),),
    "death_date": (("patients", "death_date"),),
    "registered": (("patients", "registration_start"), ("patients", "registration_end")),
    "alive": (("patients", "death_date"),),
    "registration_start": (("patients", "registration_start"),),
    "registration_end": (("patients", "registration_end"),),
}
_EVERYWHERE = (ir.ROWS, ir.DATE)


def _add(found: dict[str, set[str]], table: str, *columns: str | None) -> None:
    cols = found.setdefault(table, set())
    cols.update(c for c in columns if c and c in TABLES[table].names)


def _table_node(n: ir.Node, found: dict[str, set[str]]) -> None:
    """What an aggregation, trend or spell_has reads beyond the columns it names."""
    if isinstance(n, (ir.Aggregate, ir.Trend)):
        t = TABLES[n.table]
        _add(found, n.table, t.sort_date)
        if isinstance(getattr(n, "window", None), ir.Active):
            _add(found, n.table, *(c for pair in t.ends for c in pair))
    elif isinstance(n, ir.SpellHas):
        _add(found, n.outer, "spell_id")
        _add(found, n.table, "spell_id", TABLES[n.table].sort_date)


def reads(nodes: Iterable[ir.Node]) -> tuple[dict[str, list[str]], list[str]]:
    """(table -> the columns read, sorted; the patient attributes used, sorted) of ``nodes``
    and everything under them, rows and ``at`` included."""
    found: dict[str, set[str]] = {}
    attributes: set[str] = set()
    seen: set[int] = set()
    for root in nodes:
        done = frozenset(seen)  # what an earlier root already walked: not opened again
        for n in ir.walk(root, _EVERYWHERE, stop=lambda x, done=done: id(x) in done):
            if id(n) in seen:
                continue
            seen.add(id(n))
            if isinstance(n, ir.Column):
                _add(found, n.table, n.column)
            elif isinstance(n, (ir.InCodelist, ir.CategoryOf, ir.WeightOf)):
                column = n.column if isinstance(n, ir.InCodelist) else n.code
                if isinstance(column, ir.Column):
                    _add(found, column.table, column.column, "code_system")
            elif isinstance(n, ir.Attr):
                attributes.add(n.name)
                for table, column in ATTRIBUTE_COLUMNS.get(n.name, ()):
                    _add(found, table, column)
            _table_node(n, found)
    return {t: sorted(found[t]) for t in sorted(found)}, sorted(attributes)
