"""Decide, row by row, whether a table keeps to the contract; give each bad row one reason.

Reasons are tried in the order of ``contract.quarantine.REASONS`` and the first that
applies is recorded with the column it concerns. Duplicates are judged last, among rows
that are otherwise good, so a good second copy survives a bad first one.

Spells: an activity row is a hospital spell when it has a ``spell_id``, which is unique
(``duplicate_spell``, judged like duplicates). Diagnoses and procedures name their spell:
a spell_id that is not one of the same patient's stored activity rows is ``unknown_spell``
(so activity is validated first), and a position without a spell_id is
``position_without_spell``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind.contract import Column, Table
from casefind.contract.dates import NULL_DAY
from casefind.contract.nhs_number import valid_mask
from casefind.contract.quarantine import REASONS, unknown_value_reason
from casefind.ingest import encode
from casefind.ingest.normalise import NormalTable

REASON_LIST = tuple(REASONS)
_REASON_INDEX = {r: i for i, r in enumerate(REASON_LIST)}


@dataclass
class PatientContext:
    """What event tables are checked against: the patients that were stored."""

    ids: pa.Array          # stored patient ids, in store order
    birth: np.ndarray      # int32 day numbers, store order
    death: np.ndarray      # int32 day numbers, NULL_DAY where alive
    quarantined_ids: pa.Array  # ids whose patients row was quarantined (for the detail)


SPELL_TABLE = "activity"  # whose rows are the spells; other tables' spell_id columns name them


@dataclass
class SpellContext:
    """The spells other tables may name: the spell ids of the stored activity rows."""

    ids: pa.Array          # sorted unique source spell ids; a spell's number is its index + 1
    patient: np.ndarray    # int32 store patient index of each spell, in the order of ``ids``

    @classmethod
    def empty(cls) -> SpellContext:
        return cls(pa.array([], pa.string()), np.empty(0, np.int32))

    def numbers(self, spell_ids: pa.Array) -> np.ndarray:
        """int32 spell number of each id (0 where missing or not a stored spell)."""
        return encode.lookup(spell_ids, self.ids) + np.int32(1)


@dataclass
class Verdict:
    reason: np.ndarray   # int8 index into REASON_LIST, -1 where the row is good
    column: np.ndarray   # int16 index into the table's contract columns, -1 for none

    @property
    def good(self) -> np.ndarray:
        return self.reason < 0

    def counts(self) -> dict[str, int]:
        r = self.reason[self.reason >= 0]
        bins = np.bincount(r, minlength=len(REASON_LIST))
        return {REASON_LIST[i]: int(c) for i, c in enumerate(bins) if c}


class _Checks:
    def __init__(self, spec: Table, n: int):
        self.spec = spec
        self.found: dict[str, list[tuple[np.ndarray, int]]] = {}
        self.n = n

    def add(self, reason: str, mask: np.ndarray, column: str | None = None) -> None:
        if mask.any():
            col = self.spec.names.index(column) if column else -1
            self.found.setdefault(reason, []).append((mask, col))

    def verdict(self) -> Verdict:
        reason = np.full(self.n, -1, dtype=np.int8)
        column = np.full(self.n, -1, dtype=np.int16)
        for name in REASON_LIST:
            for mask, col in self.found.get(name, ()):
                m = mask & (reason < 0)
                reason[m] = _REASON_INDEX[name]
                column[m] = col
        return Verdict(reason, column)


def _lives(days: np.ndarray) -> np.ndarray:
    """``days`` indexable at 0 even when there are no patients (then no row is known)."""
    return days if len(days) else np.full(1, NULL_DAY, days.dtype)


def _first_occurrence_duplicates(ids: pa.Array, eligible: np.ndarray) -> np.ndarray:
    """Rows whose id already appeared in an earlier eligible row."""
    dup = np.zeros(len(ids), dtype=bool)
    rows = np.flatnonzero(eligible)
    if rows.size == 0:
        return dup
    sub = ids.take(pa.array(rows))
    codes = pc.dictionary_encode(sub).indices.to_numpy(zero_copy_only=False)
    _, first = np.unique(codes, return_index=True)
    later = np.ones(rows.size, dtype=bool)
    later[first] = False
    dup[rows[later]] = True
    return dup


def _matches(values: pa.Array, pattern: str) -> np.ndarray:
    """Whole-value regular expression match (False where null)."""
    return encode.mask(pc.match_substring_regex(values, f"^(?:{pattern})$"))


def _check_number(chk: _Checks, c: Column, v: np.ndarray, present: np.ndarray) -> None:
    """NaN and ±inf are out of range wherever they come from (a Parquet NaN, CSV 1e400);
    finite values are held to the column's bounds."""
    finite = np.isfinite(v)
    chk.add("out_of_range", present & ~finite, c.name)
    with np.errstate(invalid="ignore"):
        low = finite & (v < c.minimum) if c.minimum is not None else np.zeros(len(v), bool)
        high = finite & (v > c.maximum) if c.maximum is not None else np.zeros(len(v), bool)
        fractional = finite & (v != np.round(v)) if c.kind == "int" else np.zeros(len(v), bool)
    if c.name == "cost":
        chk.add("negative_cost", low, c.name)
        chk.add("out_of_range", high | fractional, c.name)
    else:
        chk.add("out_of_range", low | high | fractional, c.name)


def _spell_columns(spec: Table) -> list[str]:
    return [c.name for c in spec.columns if c.kind == "spell"]


def validate(t: NormalTable, spec: Table, *, practices: pa.Array | None = None,
             patients: PatientContext | None = None, spells: SpellContext | None = None,
             duplicate_spells: np.ndarray | None = None) -> tuple[Verdict, np.ndarray | None]:
    """Return the verdict and, for tables keyed by patient, each row's store patient index
    (-1 where unknown). ``spells`` are the stored spells that a table other than activity
    may name (none when not given). ``duplicate_spells``: activity rows whose spell id an
    earlier row in another shard holds (ingest/shared_spells.py), duplicates if otherwise good."""
    chk = _Checks(spec, t.num_rows)
    cols = t.columns
    for c in spec.columns:
        if c.derived:  # computed on ingest, never read from the source
            continue
        if not c.nullable:
            chk.add("missing_value", ~t.present[c.name], c.name)
        if c.kind == "date":
            chk.add("unparseable_date", t.failed[c.name], c.name)
            chk.add("out_of_range", t.implausible[c.name], c.name)
        elif c.kind in ("float", "int"):
            chk.add("unparseable_number", t.failed[c.name], c.name)
        if c.pattern:
            chk.add("invalid_code", t.present[c.name] & ~_matches(cols[c.name], c.pattern), c.name)
        if c.kind == "enum":
            known = encode.enum(cols[c.name], c.values) >= 0
            chk.add(unknown_value_reason(c.name), t.present[c.name] & ~known, c.name)
        if c.kind in ("float", "int"):
            _check_number(chk, c, encode.numbers(cols[c.name]), t.present[c.name])
    if "position" in cols and "spell_id" in cols:
        chk.add("position_without_spell", t.present["position"] & ~t.present["spell_id"], "position")
    for start, end in spec.ends:
        s, e = encode.days(cols[start]), encode.days(cols[end])
        bad = (s != NULL_DAY) & (e != NULL_DAY) & (e < s)
        chk.add("death_before_birth" if end == "death_date" else "end_before_start", bad, end)

    if "known_practice" in spec.checks and practices is not None:
        known = encode.lookup(cols["practice_code"], practices) >= 0
        chk.add("unknown_practice", t.present["practice_code"] & ~known, "practice_code")
    if "nhs_number" in spec.checks:
        nums = cols["nhs_number"].to_numpy(zero_copy_only=False)
        chk.add("invalid_nhs_number", t.present["nhs_number"] & ~valid_mask(
            np.array(["" if x is None else x for x in nums], dtype="U16")), "nhs_number")

    patient_index = None
    if patients is not None and "patient_id" in cols:
        patient_index = encode.lookup(cols["patient_id"], patients.ids)
        chk.add("unknown_patient", t.present["patient_id"] & (patient_index < 0), "patient_id")
        known = patient_index >= 0
        at = np.maximum(patient_index, 0)
        birth = np.where(known, _lives(patients.birth)[at], NULL_DAY)  # a shard may hold no patient
        death = np.where(known, _lives(patients.death)[at], NULL_DAY)
        for d in spec.event_dates:
            day = encode.days(cols[d])
            has = known & (day != NULL_DAY)
            chk.add("event_before_birth", has & (day < birth), d)
            chk.add("event_after_death", has & (death != NULL_DAY) & (day > death), d)
        if spec.name != SPELL_TABLE:
            known_spells = spells or SpellContext.empty()
            for name in _spell_columns(spec):
                number = known_spells.numbers(cols[name])
                owner = np.append(np.int32(-1), known_spells.patient)[number]
                chk.add("unknown_spell", t.present[name] & known & (owner != patient_index), name)

    verdict = chk.verdict()
    if spec.unique:
        dup = _first_occurrence_duplicates(cols[spec.unique], verdict.good)
        name = "duplicate_practice" if spec.unique == "practice_code" else "duplicate_patient"
        verdict.reason[dup] = _REASON_INDEX[name]
        verdict.column[dup] = spec.names.index(spec.unique)
    if spec.name == SPELL_TABLE:
        for name in _spell_columns(spec):
            dup = _first_occurrence_duplicates(cols[name], verdict.good & t.present[name])
            if duplicate_spells is not None:
                dup[duplicate_spells] |= verdict.good[duplicate_spells]
            verdict.reason[dup] = _REASON_INDEX["duplicate_spell"]
            verdict.column[dup] = spec.names.index(name)
    return verdict, patient_index


def spell_context(t: NormalTable | None, verdict: Verdict | None, patient_index: np.ndarray | None) -> SpellContext:
    """The spells of activity's stored rows (after its verdict): sorted ids and their patients."""
    if t is None or verdict is None or patient_index is None or "spell_id" not in t.columns:
        return SpellContext.empty()
    rows = np.flatnonzero(verdict.good & t.present["spell_id"])
    ids = t.columns["spell_id"].take(pa.array(rows, pa.int64()))
    order = pc.sort_indices(ids).to_numpy(zero_copy_only=False)
    return SpellContext(ids.take(pa.array(order, pa.int64())),
                        patient_index[rows[order]].astype(np.int32))


def _as_text(col: pa.ChunkedArray) -> pa.Array:
    """A column as text, for the quarantine: cast where Arrow can (bytes that are not UTF-8,
    lists, times: written as Python prints them)."""
    try:
        return pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())


def quarantine_rows(t: NormalTable, spec: Table, verdict: Verdict,
                    quarantined_patients: pa.Array | None = None, source_rows=None) -> pa.Table:
    """The bad rows exactly as the source gave them (as text), with row number, reason,
    the column concerned and, for unknown patients, whether their patients row was itself
    quarantined. ``source_rows(rows)``: the rows' places in the delivery, where ``t`` is one
    shard's part of it (the row number is the delivery's, 1-based)."""
    rows = np.flatnonzero(~verdict.good)
    raw = t.raw.take(pa.array(rows, pa.int64()))
    out = {name: _as_text(raw.column(name)) for name in raw.column_names}
    reasons = [REASON_LIST[i] for i in verdict.reason[rows]]
    columns = [spec.names[i] if i >= 0 else None for i in verdict.column[rows]]
    detail = [None] * len(rows)
    if quarantined_patients is not None and len(quarantined_patients) and "patient_id" in t.columns:
        pid = t.columns["patient_id"].take(pa.array(rows, pa.int64()))
        was_quarantined = encode.lookup(pid, quarantined_patients) >= 0
        detail = ["patient row quarantined in patients" if (r == "unknown_patient" and q) else None
                  for r, q in zip(reasons, was_quarantined)]
    out["_source_row"] = pa.array((rows if source_rows is None else source_rows(rows)) + 1, pa.int64())
    out["_reason"] = pa.array(reasons, pa.string())
    out["_column"] = pa.array(columns, pa.string())
    out["_detail"] = pa.array(detail, pa.string())
    return pa.table(out)
