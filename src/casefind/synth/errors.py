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


def inject(tables: dict, rate: float, seed: int, new_pid, life, dead_rows):
    """tables: name -> Arrow table (strings for dates and numbers). Returns (tables, counts).
    new_pid(i) gives pseudonyms outside the population; life(pid column) gives (birth, death)
    day arrays; dead_rows(name, k) gives k patient ids of dead people with a death day each."""
    inj = Injector(rate, seed, new_pid, life)
    out = {}
    unknown_base = 10_000_000

    def fresh_pid(rows, base=0):
        return _set(rows, "patient_id", inj._fresh(rows.num_rows, unknown_base + base))

    # patients: rows with new ids, each with one fault
    def pat_new(fn):
        def make(rows):
            rows = _set(rows, "patient_id", inj._fresh(rows.num_rows, 0))
            rows = _set(rows, "registration_end", [None] * rows.num_rows)
            rows = _set(rows, "death_date", [None] * rows.num_rows)
            return fn(rows)
        return make

    p = tables["patients"]
    out["patients"] = inj.table("patients", p, {
        "missing_value": pat_new(lambda r: _set(r, "registration_start", [None] * r.num_rows)),
        "unparseable_date": pat_new(lambda r: _set(r, "birth_date", ["1950-02-30"] * r.num_rows)),
        "unparseable_number": pat_new(lambda r: _set(r, "imd_decile", ["five"] * r.num_rows)),
        "duplicate_patient": lambda r: r,
        "unknown_practice": pat_new(lambda r: _set(r, "practice_code", ["Z99999"] * r.num_rows)),
        "unknown_sex": pat_new(lambda r: _set(r, "sex", ["X"] * r.num_rows)),
        "unknown_ethnicity": pat_new(lambda r: _set(r, "ethnicity", ["Q"] * r.num_rows)),
        "out_of_range": pat_new(lambda r: _set(r, "imd_decile", ["11"] * r.num_rows)),
        "death_before_birth": pat_new(lambda r: _set(r, "death_date", _iso(
            np.array([dt.date.fromisoformat(b).toordinal() for b in r.column("birth_date").to_pylist()]) - 719163 - 30))),
        "end_before_start": pat_new(lambda r: _set(r, "registration_end", _iso(
            np.array([dt.date.fromisoformat(b).toordinal() for b in r.column("registration_start").to_pylist()]) - 719163 - 10))),
    })
    pr = tables["practices"]
    out["practices"] = inj.table("practices", pr, {
        "duplicate_practice": lambda r: r.slice(0, 1),
        "missing_value": lambda r: _set(_set(r.slice(0, 1), "practice_name", [None]), "practice_code", ["Z99998"]),
        "invalid_code": lambda r: _set(r.slice(0, 1), "practice_code", ["../Z99997"]),
    })

    bad_vals = {
        "diagnoses": {"unknown_code_system": ("code_system", "loinc"), "unknown_source": ("source", "hospice")},
        "activity": {"unknown_setting": ("setting", "dentist"), "unknown_discharge_destination": ("discharge_destination", "hotel"),
                     "unparseable_number": ("cost", "abc")},
        "procedures": {"unknown_code_system": ("code_system", "loinc")},
        "medications": {"unknown_code_system": ("code_system", "loinc"), "unparseable_number": ("quantity", "two"),
                        "out_of_range": ("quantity", "-5")},
        "observations": {"unknown_code_system": ("code_system", "loinc"), "unparseable_number": ("value", "n/a")},
        "experience": {"unparseable_number": ("value", "high")},
        "opt_outs": {"unknown_kind": ("kind", "type3")},
        "registers": {},
    }
    for name, dcol in _EVENT_DATE.items():
        t = tables[name]
        tdef = TABLES[name]
        reasons = {
            "missing_value": lambda r, c=dcol: _set(r, c, [None] * r.num_rows),
            "unparseable_date": lambda r, c=dcol: _set(r, c, ["2025-13-01"] * r.num_rows),
            "unknown_patient": lambda r: fresh_pid(r),
        }
        for reason, (col, val) in bad_vals[name].items():
            reasons[reason] = lambda r, c=col, v=val: _set(r, c, [v] * r.num_rows)
        ends = [e for s, e in tdef.ends]
        if tdef.event_dates:
            def before_birth(r, c=dcol, ends=ends):
                birth, _ = life(r.column("patient_id"))
                r = _set(r, c, _iso(birth - 100))
                for e in ends:
                    r = _set(r, e, [None] * r.num_rows)
                return r

            def after_death(r, c=dcol, ends=ends, name=name):
                pids, death = dead_rows(r.num_rows)
                if len(pids) == 0:
                    return None
                r = r.slice(0, len(pids))
                r = _set(_set(r, "patient_id", list(pids)), c, _iso(death + 20))
                for e in ends:
                    r = _set(r, e, [None] * r.num_rows)
                return r
            reasons["event_before_birth"] = before_birth
            reasons["event_after_death"] = after_death
        if name == "activity":
            reasons["negative_cost"] = lambda r: _set(r, "cost", ["-250.0"] * r.num_rows)
        if ends:
            s0, e0 = tdef.ends[0]

            def end_before(r, s0=s0, e0=e0):
                birth, _ = life(r.column("patient_id"))
                start = np.array([dt.date.fromisoformat(x).toordinal() - 719163 for x in r.column(s0).to_pylist()])
                ok = start - 3 >= birth
                r = r.filter(pa.array(ok))
                return _set(r, e0, _iso(start[ok] - 3))
            reasons["end_before_start"] = end_before
        if "spell_id" in t.column_names:
            reasons = {k: _drop_spell(m) for k, m in reasons.items()}
            if name == "activity":  # an exact copy of a spell: its second row
                reasons["duplicate_spell"] = lambda r, t=t: inj.with_spell(t, r.num_rows)
            else:
                def unknown_spell(r, t=t):
                    rows = inj.with_spell(t, r.num_rows)  # "SP0...": no spell id the generator writes
                    return _set(rows, "spell_id", [f"SP0{i:09d}" for i in range(rows.num_rows)])

                def position_without(r, t=t):
                    rows = inj.with_spell(t, r.num_rows, "position")
                    return _set(rows, "spell_id", [None] * rows.num_rows)
                reasons["unknown_spell"] = unknown_spell
                reasons["position_without_spell"] = position_without
        out[name] = inj.table(name, t, reasons)
    ids = tables["identities"]
    # identities: faults that need a known, unique id are made in place on distinct rows
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
    out["identities"] = inj.table("identities", ids, {
        "unknown_patient": lambda r: fresh_pid(r, 5_000_000),
        "duplicate_patient": lambda r: r.slice(3 * 0, r.num_rows),
    })
    return out, inj.counts
