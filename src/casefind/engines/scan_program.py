"""A table's scan as data: what the native engine's kernel for one table computes.

Lowering (native_codegen.lower) turns the plan's slots for a table into a ``ScanProgram``:
its kernel arguments as typed values (a column, the row offsets, an output, a codelist's
membership, per-period day numbers ...), the window bounds each patient's rows are cut at,
the blocks of slots that share one loop over a range of rows, and each slot's code pieces,
which its reducer (engines/reducers.py) wrote. It is pure data: ``describe`` prints it for
``casefind explain`` and tests read it without Numba. ``render`` only lays it out as loops.

Every kernel runs over a range of positions in an array of patients (all of them, or the
ones asked for), and for each patient over every period evaluated at once: window bounds,
dates and per-patient values come from per-period arrays, outputs are (periods x patients),
so the source does not grow with the number of periods, and a patient's rows are read from
memory once for all of them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from casefind.plan import Slot
from casefind.rules import ir

# --- kernel arguments --------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnArg:
    """A column of the table, one value per row."""
    column: str


@dataclass(frozen=True)
class OffsetsArg:
    """Where each patient's rows start (one more entry than patients)."""


@dataclass(frozen=True)
class PatientsArg:
    """The store indices of the patients scanned, in output order."""


@dataclass(frozen=True)
class PeriodsArg:
    """How many periods are evaluated at once (the outputs' first dimension)."""


@dataclass(frozen=True)
class OutArg:
    """Slot ``slot``'s values, (periods x patients) of ``dtype``; ``empty`` is what a
    table without rows gives."""
    slot: int
    dtype: str


@dataclass(frozen=True)
class ValidArg:
    """Whether slot ``slot`` has a value, (periods x patients); ``empty`` as for OutArg."""
    slot: int
    empty: bool = False


@dataclass(frozen=True)
class GroupOutArg:
    """A group's values (reducers.CodelistGroup, ValueGroup), (members x periods x patients) of int64: member ``m`` is
    slot ``slots[m]`` (the engine casts each to its reducer's type)."""
    slots: tuple[int, ...]


@dataclass(frozen=True)
class GroupValidArg:
    """Whether each member of a group has a value, (members x periods x patients)."""
    slots: tuple[int, ...]


@dataclass(frozen=True)
class SparseGroupOut:
    """A value group of counts kept sparse (reducers.ValueGroup): not an argument but what
    each work item's kernel call returns, its records (member x periods + period, patient
    position, count) of the counts that are not 0. Member ``m`` is slot ``slots[m]``."""
    slots: tuple[int, ...]
    records: str  # the kernel's names of the records and of how many there are
    length: str


@dataclass(frozen=True, eq=False)
class ConstArg:
    """A value worked out while lowering (a lookup table, a size); ``what`` says what it is."""
    value: object
    what: str = ""


@dataclass(frozen=True, eq=False)
class CodelistArg:
    """A codelist's membership over the code dictionary of its system."""
    codelist: ir.Codelist
    value: np.ndarray


@dataclass(frozen=True)
class DaysArg:
    """One day number per period (a window bound, a slot's date)."""
    days: tuple[int, ...]
    what: str = ""


@dataclass(frozen=True)
class PatientValueArg:
    """A per-patient value a row filter reads, at each period's date (``dates``):
    (periods x patients) values, or with ``valid``, whether each is present."""
    node: ir.Node
    dates: tuple[dt.date, ...]
    valid: bool = False


@dataclass(frozen=True)
class SpellArg:
    """For ``spell_has``: per spell number, the earliest day of a row that passes its filter."""
    node: ir.SpellHas


Arg = (ColumnArg | OffsetsArg | PatientsArg | PeriodsArg | OutArg | ValidArg | GroupOutArg | GroupValidArg | ConstArg
       | CodelistArg | DaysArg | PatientValueArg | SpellArg)


# --- the program -----------------------------------------------------------------------------

@dataclass
class Piece:
    """A reducer's code for one slot: scratch before the patients, init before its rows,
    the step per row that passes the slot's test, finish after them (outputs at [t, q])."""

    scratch: list[str] = field(default_factory=list)
    patient: list[str] = field(default_factory=list)  # once per patient, before the periods
    init: list[str] = field(default_factory=list)
    step: list[str] = field(default_factory=list)
    finish: list[str] = field(default_factory=list)


@dataclass
class SlotProgram:
    index: int
    slot: Slot
    reducer: str            # the aggregation's name
    out: str
    ok: str | None
    rows: str               # what rows it reads, for describe
    labels: np.ndarray | None = None  # text values: the labels its codes index
    piece: Piece = field(default_factory=Piece)
    member: int | None = None  # in a group: its index in the group's outputs


@dataclass
class Bound:
    """The index just past a patient's last row dated on or before a per-period day."""

    var: str
    days: str     # the DaysArg it reads
    what: str


@dataclass
class RowBlock:
    """Slots that share one loop over rows ``first`` to ``end`` (``backwards``: latest first;
    ``stops``: the loop ends at the first row that passes, for its one slot)."""

    what: str
    first: str
    end: str
    backwards: bool = False
    slots: list[SlotProgram] = field(default_factory=list)
    groups: list[Piece] = field(default_factory=list)  # codelist and value groups (reducers)
    walk: tuple[str, str] | None = None  # (end days, periods in their order): one walk for every period

    @property
    def pieces(self) -> list[Piece]:
        return [s.piece for s in self.slots] + self.groups

    @property
    def reads_rows(self) -> bool:
        return any(p.step for p in self.pieces)


@dataclass
class ScanProgram:
    table: str
    name: str
    date: str                      # the date column's argument
    args: dict[str, Arg] = field(default_factory=dict)
    bounds: list[Bound] = field(default_factory=list)
    blocks: list[RowBlock] = field(default_factory=list)
    slots: list[SlotProgram] = field(default_factory=list)
    returns: dict[str, SparseGroupOut] = field(default_factory=dict)  # by the members' ``out`` name

    def describe(self, names: dict | None = None, codelists: bool = True) -> str:
        """What the scan computes, for ``casefind explain``: each slot (named by the
        feature it serves where ``names`` knows it), the row ranges, and (``codelists``)
        each codelist it reads once, by name and size."""
        names = names or {}
        lines = [f"scan of {self.table}: {len(self.slots)} slot(s) in {len(self.blocks)} loop(s) over a patient's rows"]
        for b in self.bounds:
            lines.append(f"  bound {b.var}: {b.what}")
        for blk in self.blocks:
            lines.append(f"  rows {blk.what}" + (", latest first" if blk.backwards else "")
                         + (", walked once for every period" if blk.walk else ""))
            for s in blk.slots:
                name = names.get(s.slot.node)
                label = f"{name} ({s.reducer})" if name else s.reducer
                group = "" if s.member is None else ", in a group (one lookup per row)"
                group += ", kept where not 0" if s.out in self.returns else ""
                lines.append(f"    slot {s.index}: {label}{group}")
        read = {a.codelist.name: a.codelist for a in self.args.values() if isinstance(a, CodelistArg)}
        for name, cl in sorted(read.items() if codelists else ()):
            lines.append(f"  codelist {name}: {len(cl.codes)} codes, {len(cl.prefixes)} prefixes ({cl.system})")
        return "\n".join(lines)


# --- rendering ---------------------------------------------------------------------------------

def _indent(pieces: list[str], spaces: int) -> list[str]:
    pad = " " * spaces
    return [pad + line for piece in pieces for line in piece.split("\n")]


def render(prog: ScanProgram, header: list[str]) -> str:
    """The kernel's source: patients, then the blocks walked once for every period, then
    periods, then each other block's loop over rows."""
    src = [*header,
           "    # positions q0 <= q < q1 of the patients scanned: one work item (the engine",
           "    # runs work items on threads); scratch space is per work item",
           *_indent([line for blk in prog.blocks for p in blk.pieces for line in p.scratch], 4),
           "    for q in range(q0, q1):",
           "        p = patients[q]",
           f"        lo, hi = {_arg(prog, OffsetsArg)}[p], {_arg(prog, OffsetsArg)}[p + 1]"
           "  # the patient's rows, in date order"]
    for blk in prog.blocks:
        if blk.walk:
            src += _walk(prog, blk)
    per_period = [blk for blk in prog.blocks if not blk.walk]
    if per_period:
        src += ["        for t in range(nper):  # every period, over the same rows",
                "            mark = q * nper + t  # stamps a distinct value counted for this patient and period"]
        used = {x for blk in per_period for x in (blk.first, blk.end)}
        start = "hi"
        for b in prog.bounds:
            if b.var in used:
                src.append(f"            {b.var} = rt.rows_upto({prog.date}, lo, hi, {start}, {b.days}[t])  # {b.what}")
                start = b.var
    for blk in per_period:
        src.append(f"            # {_slots(blk)}: rows {blk.what}")
        src += _indent([line for p in blk.pieces for line in p.init], 12)
        if blk.reads_rows:
            rows = f"range({blk.end} - 1, {blk.first} - 1, -1)" if blk.backwards else f"range({blk.first}, {blk.end})"
            src.append(f"            for r in {rows}:")
            src += _indent([line for p in blk.pieces for line in p.step], 16)
        src += _indent([line for p in blk.pieces for line in p.finish], 12)
    if prog.returns:  # each sparse group's records, and how many
        src.append(f"    return ({', '.join(f'{r.records}, {r.length}' for r in prog.returns.values())},)")
    return "\n".join(src + [""])


def _slots(blk: RowBlock) -> str:
    """The block's slots for a comment; a group's members by their number of groups only, so
    that the source does not grow with them."""
    own = [f"{s.index} ({s.reducer})" for s in blk.slots if s.member is None]
    text = f"slot{'s' if len(own) > 1 else ''} {', '.join(own)}" if own else ""
    if blk.groups:
        text += f"{' and ' if own else ''}the slots of {len(blk.groups)} group{'s' if len(blk.groups) > 1 else ''}"
    return text


def _walk(prog: ScanProgram, blk: RowBlock) -> list[str]:
    """A block walked once for every period: periods in the order of their last day, each
    one's outputs written when the walk reaches it."""
    days, order = blk.walk
    return [f"        # {_slots(blk)}: rows {blk.what}, walked once for every period (in date order)",
            "        mark = q * nper  # stamps a distinct value counted for this patient",
            *_indent([line for p in blk.pieces for line in p.init], 8),
            "        stop = lo",
            "        for i in range(nper):",
            f"            t = {order}[i]",
            "            start = stop",
            f"            stop = rt.rows_upto({prog.date}, lo, hi, start, {days}[t])",
            "            for r in range(start, stop):",
            *_indent([line for p in blk.pieces for line in p.step], 16),
            *_indent([line for p in blk.pieces for line in p.finish], 12)]


def _arg(prog: ScanProgram, kind: type) -> str:
    return next(name for name, a in prog.args.items() if isinstance(a, kind))
