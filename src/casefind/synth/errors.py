"""Contract-breaking rows for testing ingest. Each injected row copies a clean row and breaks
exactly one rule, so its quarantine reason is unambiguous; rows are appended (a duplicate's
first occurrence is the clean row). Tables arrive with dates and numbers as strings."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from casefind.contract import TABLES
from casefind.contract.quarantine import REASONS

_EVENT_DATE = {"diagnoses": "date", "activity": "start_date", "procedures": "date", "medications": "date",
               "observations": "date", "experience": "date", "registers": "start_date", "opt_outs": "date"}
_SPELL_COLUMNS = ("spell_id", "position")  # an injected copy drops them, unless its fault is one of them


def _iso(days) -> list[str]:
    e = dt.date(1970, 1, 1)
    return [(e + dt.timedelta(days=int(d))).isoformat() for d in days]


def _set(t: pa.Table, col: str, values) -> pa.Table:
    i = t.schema.get_field_index(col)
    return t.set_column(i, col, pa.array(values, t.schema.field(col).type))


class Injector:
    def __init__(self, rate, seed, new_pid, life):
        self.r = np.random.Generator(np.random.PCG64([seed, 99]))
        self.rate, self.new_pid, self.life = rate, new_pid, life  # life: pid -> (birth, death)
        self.counts: dict[str, int] = {}
        self.next_new = 0

    def _fresh(self, k, offset):
        ids = self.new_pid(np.arange(self.next_new, self.next_new + k) + offset)
        self.next_new += k
        return list(ids)

    def table(self, name: str, t: pa.Table, reasons: dict) -> pa.Table:
        if t.num_rows == 0:
            return t
        k = max(1, round(self.rate * t.num_rows / len(reasons)))
        extra = []
        for reason, make in reasons.items():
            assert reason in REASONS, reason
            rows = t.take(pa.array(self.r.integers(0, t.num_rows, k)))
            bad = make(rows)
            if bad is None or bad.num_rows == 0:
                continue
            extra.append(bad)
            self.counts[f"{name}.{reason}"] = bad.num_rows
        return pa.concat_tables([t] + extra)

    # -- helpers used by the reason makers
    def births(self, rows):
        return self.life(rows.column("patient_id"))

    def with_spell(self, t: pa.Table, k: int, column: str = "spell_id") -> pa.Table:
        """k random rows of t that have a value in `column` (none when no row has one)."""
        has = np.flatnonzero(np.asarray(t.column(column).is_valid()))
        if len(has) == 0:
            return t.slice(0, 0)
        return t.take(pa.array(has[self.r.integers(0, len(has), k)]))


def _drop_spell(make):
    """A copied row keeps no spell_id or position: copying them would name a spell twice or
    another patient's spell, a second fault."""
    def wrapped(rows):
        for c in _SPELL_COLUMNS:
            if c in rows.column_names:
                rows = _set(rows, c, [None] * rows.num_rows)
        return make(rows)
    return wrapped


_UNKNOWN_BASE = 10_000_000  # injected unknown patients' pseudonyms start here, past any new patient's

# one value per table and reason that breaks exactly that rule: table -> reason -> (column, value)
_BAD_VALUES = {
    "diagnoses": {"unknown_code_system": ("code_system", "loinc"), "unknown_source": ("source", "hospice")},
    "activity": {"unknown_setting": ("setting", "dentist"),
                 "unknown_discharge_destination": ("discharge_destination", "hotel"),
                 "unparseable_number": ("cost", "abc")},
    "procedures": {"unknown_code_system": ("code_system", "loinc")},
    "medications": {"unknown_code_system": ("code_system", "loinc"), "unparseable_number": ("quantity", "two"),
                    "out_of_range": ("quantity", "-5")},
    "observations": {"unknown_code_system": ("code_system", "loinc"), "unparseable_number": ("value", "n/a")},
    "experience": {"unparseable_number": ("value", "high")},
    "opt_outs": {"unknown_kind": ("kind", "type3")},
    "registers": {},
}


def inject(tables: dict, rate: float, seed: int, new_pid, life, dead_rows):
    """tables: name -> Arrow table (strings for dates and numbers). Returns (tables, counts).
    new_pid(i) gives pseudonyms outside the population; life(pid column) gives (birth, death)
    day arrays; dead_rows(name, k) gives k patient ids of dead people with a death day each.
    Tables are broken in a fixed order: the random stream, and so every injected row,
    depends on it."""
    inj = Injector(rate, seed, new_pid, life)
    out = {"patients": inj.table("patients", tables["patients"], _patient_faults(inj)),
           "practices": inj.table("practices", tables["practices"], _PRACTICE_FAULTS)}
    for name in _EVENT_DATE:
        t = tables[name]
        out[name] = inj.table(name, t, _event_faults(inj, name, t, dead_rows))
    out["identities"] = _broken_identities(inj, tables["identities"], rate)
    out["activity"] = _bad_funding(inj, out["activity"], tables["activity"], seed)
    return out, inj.counts


def _bad_funding(inj: Injector, out: pa.Table, clean: pa.Table, seed: int) -> pa.Table:
    """Copies of clean activity rows (without their spell) whose funding no contract allows.
    Drawn last, from a stream of their own, so that the funding column's arrival moved no
    other injected row."""
    if clean.num_rows == 0 or "funding" not in clean.column_names:
        return out
    r = np.random.Generator(np.random.PCG64([seed, 97]))
    k = max(1, round(inj.rate * clean.num_rows / len(REASONS)))
    rows = clean.take(pa.array(r.integers(0, clean.num_rows, k)))
    rows = _set(_set(rows, "spell_id", [None] * k), "funding", ["grant"] * k)
    inj.counts["activity.unknown_funding"] = k
    return pa.concat_tables([out, rows])


def _unknown_patient(inj: Injector, rows: pa.Table, base: int = 0) -> pa.Table:
    """The rows given patient ids that no patients row has."""
    return _set(rows, "patient_id", inj._fresh(rows.num_rows, _UNKNOWN_BASE + base))


def _shifted(dates: pa.Array, days: int) -> list[str]:
    """ISO dates (strings) moved by a number of days."""
    return _iso(np.array([dt.date.fromisoformat(b).toordinal() for b in dates.to_pylist()]) - 719163 + days)


def _patient_faults(inj: Injector) -> dict:
    """Reason -> maker for patients: each a new patient (new id, alive, still registered)
    with one fault, but a duplicate, which is an exact copy."""
    def new_patient(fault):
        def make(rows):
            rows = _set(rows, "patient_id", inj._fresh(rows.num_rows, 0))
            rows = _set(rows, "registration_end", [None] * rows.num_rows)
            rows = _set(rows, "death_date", [None] * rows.num_rows)
            return fault(rows)
        return make

    return {
        "missing_value": new_patient(lambda r: _set(r, "registration_start", [None] * r.num_rows)),
        "unparseable_date": new_patient(lambda r: _set(r, "birth_date", ["1950-02-30"] * r.num_rows)),
        "unparseable_number": new_patient(lambda r: _set(r, "imd_decile", ["five"] * r.num_rows)),
        "duplicate_patient": lambda r: r,
        "unknown_practice": new_patient(lambda r: _set(r, "practice_code", ["Z99999"] * r.num_rows)),
        "unknown_sex": new_patient(lambda r: _set(r, "sex", ["X"] * r.num_rows)),
        "unknown_ethnicity": new_patient(lambda r: _set(r, "ethnicity", ["Q"] * r.num_rows)),
        "out_of_range": new_patient(lambda r: _set(r, "imd_decile", ["11"] * r.num_rows)),
        "death_before_birth": new_patient(lambda r: _set(r, "death_date", _shifted(r.column("birth_date"), -30))),
        "end_before_start": new_patient(
            lambda r: _set(r, "registration_end", _shifted(r.column("registration_start"), -10))),
    }


_PRACTICE_FAULTS = {
    "duplicate_practice": lambda r: r.slice(0, 1),
    "missing_value": lambda r: _set(_set(r.slice(0, 1), "practice_name", [None]), "practice_code", ["Z99998"]),
    "invalid_code": lambda r: _set(r.slice(0, 1), "practice_code", ["../Z99997"]),
}


def _event_faults(inj: Injector, name: str, t: pa.Table, dead_rows) -> dict:
    """Reason -> maker for one event table: its date, its values, its life-course dates
    and, where it has them, its spells."""
    tdef = TABLES[name]
    dcol = _EVENT_DATE[name]
    reasons = {
        "missing_value": lambda r: _set(r, dcol, [None] * r.num_rows),
        "unparseable_date": lambda r: _set(r, dcol, ["2025-13-01"] * r.num_rows),
        "unknown_patient": lambda r: _unknown_patient(inj, r),
    }
    for reason, (col, val) in _BAD_VALUES[name].items():
        reasons[reason] = lambda r, c=col, v=val: _set(r, c, [v] * r.num_rows)
    if tdef.event_dates:
        reasons.update(_life_faults(inj, dcol, [e for _, e in tdef.ends], dead_rows))
    if name == "activity":
        reasons["negative_cost"] = lambda r: _set(r, "cost", ["-250.0"] * r.num_rows)
    if tdef.ends:
        reasons["end_before_start"] = _end_before_start(inj, *tdef.ends[0])
    if "spell_id" in t.column_names:
        reasons = {k: _drop_spell(m) for k, m in reasons.items()}
        reasons.update(_spell_faults(inj, name, t))
    return reasons


def _life_faults(inj: Injector, dcol: str, ends: list[str], dead_rows) -> dict:
    """Events dated before the patient's birth or after their death (with no end date, so
    that the end cannot be a second fault)."""
    def before_birth(r):
        birth, _ = inj.life(r.column("patient_id"))
        r = _set(r, dcol, _iso(birth - 100))
        for e in ends:
            r = _set(r, e, [None] * r.num_rows)
        return r

    def after_death(r):
        pids, death = dead_rows(r.num_rows)
        if len(pids) == 0:
            return None
        r = r.slice(0, len(pids))
        r = _set(_set(r, "patient_id", list(pids)), dcol, _iso(death + 20))
        for e in ends:
            r = _set(r, e, [None] * r.num_rows)
        return r

    return {"event_before_birth": before_birth, "event_after_death": after_death}


def _end_before_start(inj: Injector, start_col: str, end_col: str):
    """Rows ending three days before they start (only those whose start is three days
    after birth, so the end is not also before birth)."""
    def make(r):
        birth, _ = inj.life(r.column("patient_id"))
        start = np.array([dt.date.fromisoformat(x).toordinal() - 719163 for x in r.column(start_col).to_pylist()])
        ok = start - 3 >= birth
        r = r.filter(pa.array(ok))
        return _set(r, end_col, _iso(start[ok] - 3))
    return make


def _spell_faults(inj: Injector, name: str, t: pa.Table) -> dict:
    """Activity: an exact copy of a spell row. Diagnoses and procedures: a spell id that
    no activity row has, and a position with no spell."""
    if name == "activity":  # an exact copy of a spell: its second row
        return {"duplicate_spell": lambda r: inj.with_spell(t, r.num_rows)}

    def unknown_spell(r):
        rows = inj.with_spell(t, r.num_rows)  # "SP0...": no spell id the generator writes
        return _set(rows, "spell_id", [f"SP0{i:09d}" for i in range(rows.num_rows)])

    def position_without(r):
        rows = inj.with_spell(t, r.num_rows, "position")
        return _set(rows, "spell_id", [None] * rows.num_rows)

    return {"unknown_spell": unknown_spell, "position_without_spell": position_without}


def _broken_identities(inj: Injector, ids: pa.Table, rate: float) -> pa.Table:
    """Identities: faults that need a known, unique id are made in place on distinct rows
    (a wrong NHS number check digit, an unknown practice, a missing name); unknown and
    duplicate patients are appended."""
    k = max(1, round(rate * ids.num_rows / 5))
    k = min(k, max(1, ids.num_rows // 4))
    cols = {c: ids.column(c).to_pylist()[: 3 * k] for c in ids.column_names}
    for i in range(k):
        s = cols["nhs_number"][i]
        cols["nhs_number"][i] = s[:9] + str((int(s[9]) + 1) % 10)
        cols["practice_code"][k + i] = "Z99999"
        cols["given_name"][2 * k + i] = None
    head = pa.table({c: pa.array(v, ids.schema.field(c).type) for c, v in cols.items()})
    inj.counts.update({"identities.invalid_nhs_number": k, "identities.unknown_practice": k,
                       "identities.missing_value": k})
    ids = pa.concat_tables([head, ids.slice(3 * k)])
    return inj.table("identities", ids, {
        "unknown_patient": lambda r: _unknown_patient(inj, r, 5_000_000),
        "duplicate_patient": lambda r: r,
    })
