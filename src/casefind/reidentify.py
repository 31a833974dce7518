"""Re-identification: the one place that reads the restricted identities store.

A practice's clinicians and administrators may see their own patients by NHS number, name
and date of birth, for direct care; nobody else may, and nothing else in casefind reads the
identities. Every call is checked and audited before anything is returned:

- the role must be one that provides care at the practice (``REVEALING_ROLES``);
- every pseudonymised id asked for must be registered at that practice now (the analysis
  store's ``patients.practice``); one that is not refuses the whole call, revealing nothing;
- the identities must belong to the store's current snapshot (``open_identities``);
- one audit entry names the pseudonymised ids revealed (never a name or NHS number) and is
  on disk before the identities are returned. A refusal is audited too.

Used by the review app (``casefind serve``) and by ``casefind reidentify``.
"""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind import audit
from casefind.contract.dates import from_day
from casefind.errors import CasefindError

REVEALING_ROLES = ("clinician", "practice_admin")
REVEAL_ACTIONS = ("reidentify", "view_list", "view_patient", "export_list", "print_list")
MAX_PURPOSE = 120


class ReidentificationRefused(CasefindError):
    """The request may not see these patients by name: nothing was revealed (exit 1)."""


@dataclass(frozen=True)
class Identity:
    """One patient as their practice knows them. Identifying fields stay out of ``repr``, so
    a log line or traceback that prints an Identity shows only the pseudonymised id."""

    patient_id: str
    practice: str
    nhs_number: str = field(repr=False)
    given_name: str = field(repr=False)
    family_name: str = field(repr=False)
    birth_date: dt.date | None = field(repr=False)

    @property
    def display_name(self) -> str:
        """As NHS clinical systems show a name: FAMILY, Given."""
        return f"{(self.family_name or '').upper()}, {self.given_name or ''}".strip(", ")

    @property
    def nhs_number_formatted(self) -> str:
        n = self.nhs_number or ""
        return f"{n[:3]} {n[3:6]} {n[6:]}" if len(n) == 10 else n

    @property
    def date_of_birth(self) -> dt.date | None:
        return self.birth_date

    def age_on(self, day: dt.date) -> int | None:
        b = self.birth_date
        return None if b is None else day.year - b.year - ((day.month, day.day) < (b.month, b.day))

    @property
    def age(self) -> int | None:
        return self.age_on(dt.date.today())


# --- the analysis store: who is registered where -------------------------------------------

def _practice_index(store, practice: str) -> int | None:
    codes = store.table("practices").arrow.column("practice_code").cast(pa.string()).to_pylist()
    return codes.index(practice) if practice in codes else None


def registered_at(store, practice: str, patient_ids: list[str]) -> dict[str, int]:
    """Of ``patient_ids``, those registered at ``practice`` now → their store patient index.
    Reads only that practice's rows (patients are stored in practice order)."""
    if not patient_ids:
        return {}
    rows, ids = _registered(store, practice)
    if not len(rows):
        return {}
    where = pc.index_in(pa.array(patient_ids, pa.string()), value_set=ids).to_pylist()
    return {pid: int(rows[i]) for pid, i in zip(patient_ids, where) if i is not None}


def stores_of(store_root: str | Path) -> tuple[object, list]:
    """The store at ``store_root`` (sharded or not) and the stores that hold its patients:
    itself, or a sharded store's shards (a practice's patients are spread over every shard)."""
    from casefind.store.sharded import ShardedStore, open_any

    store = open_any(store_root)
    return store, [shard for _, shard in store.shards()] if isinstance(store, ShardedStore) else [store]


def registered_ids(store_root: str | Path, practice: str, patient_ids: list[str]) -> set[str]:
    """Of ``patient_ids``, those registered at ``practice`` now, in a store or a sharded one."""
    return {pid for s in stores_of(store_root)[1] for pid in registered_at(s, practice, patient_ids)}


# A practice's registered patients, per snapshot (immutable): the app asks on every page.
# Keyed by store, snapshot and practice, so one practice's answer is never another's.
_REGISTERED: dict[tuple, tuple[np.ndarray, pa.Array]] = {}
_REGISTERED_MAX = 256
_REGISTERED_LOCK = threading.Lock()


def _registered(store, practice: str) -> tuple[np.ndarray, pa.Array]:
    key = (str(store.root), store.snapshot_id, practice)
    with _REGISTERED_LOCK:
        found = _REGISTERED.get(key)
    if found is not None:
        return found
    p = _practice_index(store, practice)
    rows, ids = np.zeros(0, np.int64), pa.array([], pa.string())
    if p is not None:
        patients = store.table("patients")
        rows = np.flatnonzero(patients["practice"] == p)
        ids = patients.arrow.column("patient_id").take(pa.array(rows, pa.int64())).cast(pa.string())
    with _REGISTERED_LOCK:
        if len(_REGISTERED) >= _REGISTERED_MAX:
            _REGISTERED.clear()
        _REGISTERED[key] = (rows, ids)
    return rows, ids


# --- the identities store, read once per snapshot per process -------------------------------

class _Cache:
    """The identities of a store's snapshot (of each shard's, for a sharded store), sorted by
    store index: re-read only when the file changes (a new ingest), so a page of the app does
    not read a million names."""

    MAX = 256  # identities files held (a sharded store has one per shard)

    def __init__(self):
        self._lock = threading.Lock()
        self._held: dict[str, tuple] = {}  # identities file -> (its key, table, index)

    def get(self, store) -> tuple[pa.Table, np.ndarray]:
        from casefind.store.identities import FILE, IdentitiesMismatch, identities_state

        state = identities_state(store)
        if not state.matches:
            raise IdentitiesMismatch(f"{state.problem}: {state.hint}", state.hint)
        path = state.snapshot_dir / FILE
        st = path.stat()
        key = (str(path), st.st_ino, st.st_mtime_ns, st.st_size, store.snapshot_id)
        with self._lock:
            held = self._held.get(str(path))
            if held is None or held[0] != key:
                from casefind.store.identities import open_identities

                table = open_identities(store.root)
                table = table.take(pc.sort_indices(table, [("patient", "ascending")]))
                self._let_go_of_gone()
                held = self._held[str(path)] = (key, table, table.column("patient").to_numpy())
            return held[1], held[2]

    def _let_go_of_gone(self) -> None:
        """Forget the identities of snapshots a new ingest has removed (names are not kept in
        memory longer than on disk), and all of them past MAX files."""
        for name in [n for n in self._held if not Path(n).exists()]:
            del self._held[name]
        if len(self._held) >= self.MAX:
            self._held.clear()


_CACHE = _Cache()


def _identities(store, practice: str, found: dict[str, int]) -> dict[str, Identity]:
    table, index = _CACHE.get(store)
    wanted = np.fromiter(found.values(), np.int64, len(found))
    at = np.searchsorted(index, wanted)
    hit = (at < len(index)) & (index[np.minimum(at, len(index) - 1)] == wanted)
    rows = table.take(pa.array(at[hit], pa.int64())).to_pylist()
    births = store.table("patients")["birth_date"][wanted[hit]]
    out = {}
    for r, born in zip(rows, births):
        if r["practice_code"] != practice or found.get(r["patient_id"]) != r["patient"]:
            continue  # not this patient of this practice: never shown (the stores disagree)
        out[r["patient_id"]] = Identity(r["patient_id"], practice, r["nhs_number"], r["given_name"],
                                        r["family_name"], from_day(int(born)))
    return out


# --- the one entry point --------------------------------------------------------------------

def _refuse(store_root, why: str, hint: str, *, user, role, action, practice, ids, run_id, rule) -> None:
    """Audit the refusal (who asked for whom), then raise."""
    audit.record(store_root, user=user, role=role if role in audit.ROLES else "unknown",
                 action="reidentify_refused", practice=practice if isinstance(practice, str) else None,
                 patient_ids=ids[:500], run_id=run_id, rule=rule,
                 detail={"asked_as": action, "requested": len(ids), "why": why[:200]})
    raise ReidentificationRefused(why + "; nothing was revealed", hint)


def _check_request(role: str, action: str, purpose: str) -> str | None:
    if action not in REVEAL_ACTIONS:
        return f"action {action!r} is not one of {', '.join(REVEAL_ACTIONS)}"
    if role not in REVEALING_ROLES:
        return (f"role {role!r} may not see patients by name; only a practice's "
                f"{' or '.join(REVEALING_ROLES)} may")
    if not isinstance(purpose, str) or not purpose.strip() or len(purpose) > MAX_PURPOSE:
        return f"give the purpose of the re-identification (a few words, at most {MAX_PURPOSE} characters)"
    return None


def identities_for(store_root: str | Path, *, practice: str, patient_ids: list[str], user: str, role: str,
                   purpose: str, run_id: str | None = None, rule: str | None = None,
                   action: str = "reidentify", detail: dict | None = None) -> dict[str, Identity]:
    """The identities of ``patient_ids``, all of them patients of ``practice``, keyed by
    pseudonymised id (an id with no identity held is left out). Audited before returning;
    refused (ReidentificationRefused, audited) for another practice's patient or a role
    that may not see names; IdentitiesMismatch when the identities are of another snapshot.
    ``detail``: more for the audit entry (an export's format and rows; no names). On a
    sharded store each shard's identities are read for its own patients."""

    ids = list(dict.fromkeys(str(p) for p in patient_ids))
    asked = {"user": user, "role": role, "action": action, "practice": practice, "ids": ids,
             "run_id": run_id, "rule": rule}
    problem = _check_request(role, action, purpose)
    if problem:
        _refuse(store_root, problem, "sign in with a clinician's or practice administrator's account", **asked)
    if not ids:
        return {}
    store, stores = stores_of(store_root)
    found_in = [registered_at(s, practice, ids) for s in stores]
    found = {pid: i for f in found_in for pid, i in f.items()}
    others = [p for p in ids if p not in found]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        _refuse(store_root, f"{len(others)} of the {len(ids)} patients asked for are not registered at practice "
                f"{practice} ({shown})", "a practice sees only its own patients by name", **asked)
    revealed = {pid: x for s, f in zip(stores, found_in) if f for pid, x in _identities(s, practice, f).items()}
    one = len(ids) == 1
    audit.record(store_root, user=user, role=role, action=action, practice=practice,
                 patient_id=ids[0] if one else None, patient_ids=None if one else sorted(revealed),
                 run_id=run_id, rule=rule,
                 detail={**(detail or {}), "purpose": purpose, "requested": len(ids), "revealed": len(revealed),
                         "snapshot": store.snapshot_id})
    return revealed
