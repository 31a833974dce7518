"""The audit log: who saw or changed what, one JSON line per entry, each chained to the one
before it by a SHA-256 hash, kept beside the store in ``STORE/audit/``.

Layout::

    STORE/audit/
      audit.jsonl     the entries, oldest first (append-only)
      head.json       the anchor: the last entry's seq and hash, rewritten after each append
      .lock           taken (flock) for every append, by threads and processes alike

Like ``decisions/``, the folder is outside every snapshot, so it survives new ingests.
An entry is never changed: ``record`` only appends, under the lock, and fsyncs the line
before it returns, so a caller that shows identifiable data after ``record`` returned has
the display on disk first. Names and NHS numbers are refused: the log holds pseudonymised
ids only (``patient_id``, ``patient_ids``).
"""
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

from casefind.contract.nhs_number import is_valid as is_nhs_number
from casefind.contract.schema import IDENTIFIER_NAMES, IDENTIFIER_PREFIXES
from casefind.errors import BusyError, CasefindError, UsageError
from casefind.filelock import flock_waiting

AUDIT_DIR = "audit"
LOG = "audit.jsonl"
HEAD = "head.json"
LOCK = ".lock"
GENESIS = "0" * 64  # the prev_hash of the first entry
LOCK_WAIT_S = 30.0
_REPAIR = "run `casefind audit verify`; keep a copy of the folder as it is and restore the log from backup"

ACTIONS = (
    "sign_in", "sign_in_failed", "sign_out", "session_expired", "account_locked", "account_unlocked",
    "user_added", "user_removed", "password_reset",
    "view_list", "view_patient", "decide", "withdraw", "export_list", "print_list",
    "reidentify", "reidentify_refused", "audit_view", "audit_export",
)
ROLES = ("clinician", "practice_admin", "analyst", "auditor", "admin", "system", "unknown")
# Every entry has exactly these keys, in this order (``hash`` covers all the others).
FIELDS = ("seq", "time", "user", "role", "action", "practice", "patient_id", "patient_ids",
          "run_id", "rule", "detail", "prev_hash", "hash")
MAX_DETAIL_CHARS = 4000
MAX_TEXT = 200
# Ten digits (perhaps as 3-3-4 with spaces or dashes) standing alone, not inside a longer
# run of letters and digits (a hash, a hex id).
_NHS_LIKE = re.compile(r"(?<![0-9A-Za-z])(\d{3})[ -]?(\d{3})[ -]?(\d{4})(?![0-9A-Za-z])")


class AuditError(CasefindError):
    """An entry that cannot be recorded (nothing was written), or a log that cannot be read."""


class AuditBusy(AuditError, BusyError):
    """The audit log stayed locked by another writer for too long; nothing was written."""


def audit_dir(store_root: str | Path) -> Path:
    return Path(store_root) / AUDIT_DIR


def log_path(store_root: str | Path) -> Path:
    return audit_dir(store_root) / LOG


def canonical(entry: dict) -> bytes:
    """The bytes an entry's hash covers: every field but ``hash``, sorted keys, no spaces."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


# --- what may be written -------------------------------------------------------------------

def _identifying_key(key: str) -> bool:
    k = re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")
    return k in IDENTIFIER_NAMES or k.startswith(IDENTIFIER_PREFIXES)


def _holds_nhs_number(text: str) -> bool:
    return any(is_nhs_number("".join(m.groups())) for m in _NHS_LIKE.finditer(text))


def _check_text(what: str, value, *, required: bool = False, free_text: bool = False) -> None:
    """A short line of text. ``free_text`` (the user's name) is also searched for NHS numbers;
    ids are not, since a pseudonym may be any ten digits."""
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT or "\n" in value:
        raise AuditError(f"audit entry: {what} must be a non-empty line of at most {MAX_TEXT} characters "
                         f"(got {type(value).__name__}); nothing was recorded")
    if free_text and _holds_nhs_number(value):
        raise AuditError(f"audit entry: {what} holds an NHS number; the audit log takes pseudonymised ids "
                         "only; nothing was recorded")


def _check_detail(detail: dict) -> None:
    if not isinstance(detail, dict):
        raise AuditError("audit entry: detail must be a dict; nothing was recorded")
    for key, value in detail.items():
        if not isinstance(key, str) or _identifying_key(key):
            raise AuditError(f"audit entry: detail key {key!r} names identifying data; the audit log takes "
                             "pseudonymised ids only; nothing was recorded")
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if not (v is None or isinstance(v, (str, int, float, bool))):
                raise AuditError(f"audit entry: detail {key!r} must be text, numbers or lists of them")
            if isinstance(v, str) and _holds_nhs_number(v):
                raise AuditError(f"audit entry: detail {key!r} holds an NHS number; nothing was recorded")
    if len(json.dumps(detail, default=str)) > MAX_DETAIL_CHARS:
        raise AuditError(f"audit entry: detail is over {MAX_DETAIL_CHARS} characters; keep it small")


def _checked(user, role, action, practice, patient_id, patient_ids, run_id, rule, detail) -> dict:
    if action not in ACTIONS:
        raise UsageError(f"audit action {action!r} is not one of {', '.join(ACTIONS)}")
    if role not in ROLES:
        raise UsageError(f"audit role {role!r} is not one of {', '.join(ROLES)}")
    _check_text("user", user, required=True, free_text=True)
    for what, value in (("practice", practice), ("patient_id", patient_id), ("run_id", run_id), ("rule", rule)):
        _check_text(what, value)
    if patient_ids is not None:
        if isinstance(patient_ids, str) or not all(isinstance(p, str) for p in patient_ids):
            raise AuditError("audit entry: patient_ids must be a list of pseudonymised ids (text)")
        for p in patient_ids:
            _check_text("patient_ids", p)
        patient_ids = list(patient_ids)
    detail = dict(detail or {})
    _check_detail(detail)
    return {"user": user, "role": role, "action": action, "practice": practice, "patient_id": patient_id,
            "patient_ids": patient_ids, "run_id": run_id, "rule": rule, "detail": detail}


# --- appending -----------------------------------------------------------------------------

@contextmanager
def locked(store_root: str | Path, wait_s: float = LOCK_WAIT_S):
    """The audit log's writer lock: waits (other clinicians' entries take milliseconds), then
    gives up with AuditBusy rather than hang a request."""
    folder = audit_dir(store_root)
    if not Path(store_root).is_dir():
        raise AuditError(f"no store at {store_root}; the audit log is kept beside a store")
    folder.mkdir(exist_ok=True)
    with open(folder / LOCK, "a") as fh:
        flock_waiting(fh, wait_s, lambda: AuditBusy(
            f"the audit log in {folder} stayed locked for {wait_s:.0f} s; nothing was recorded",
            "try again; if it persists, find the stuck process"), poll_s=0.002)
        try:
            yield folder
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _last_line(path: Path) -> bytes | None:
    """The log's last line (without its newline), read from the end; None for an empty log.
    A last line with no newline is a torn write: returned with its missing newline marked."""
    if not path.exists():
        return None
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return None
        block, data = 4096, b""
        while True:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start)
            body = data[:-1] if data.endswith(b"\n") else data
            if b"\n" in body or start == 0:
                break
            block *= 4
    if not data.endswith(b"\n"):
        return b"\0torn"
    return data[:-1].rsplit(b"\n", 1)[-1]


def _previous(path: Path) -> tuple[int, str]:
    """(seq, hash) of the last entry, checked against the head anchor; refuses to chain onto
    a broken last line, or onto a log shorter than its anchor (entries removed from the end,
    or the file replaced), since appending would move the anchor and hide that."""
    line = _last_line(path)
    last = None
    if line is not None:
        try:
            last = json.loads(line)
        except ValueError:
            last = None
        if not (isinstance(last, dict) and last.get("hash") == entry_hash(last) and isinstance(last.get("seq"), int)):
            raise AuditError(f"the last line of the audit log {path} is broken (a torn write or an edit); "
                             "nothing more is recorded until it is looked at", _REPAIR)
    seq, digest = (last["seq"], last["hash"]) if last else (0, GENESIS)
    head = read_head(path.parent.parent)
    if head is None and seq:
        head = {"seq": None}  # removed: the log cannot be checked against it
    if head is not None and (head.get("broken") or not isinstance(head.get("seq"), int) or head["seq"] > seq
                             or (head["seq"] == seq and head.get("hash") != digest)):
        raise AuditError(f"the audit log {path} does not end where its anchor {HEAD} says (seq "
                         f"{head.get('seq')}, the log ends at seq {seq}); nothing more is recorded until it is "
                         "looked at", _REPAIR)
    return seq, digest


def _write_head(folder: Path, entry: dict) -> None:
    head = {"seq": entry["seq"], "hash": entry["hash"], "time": entry["time"]}
    tmp = folder / f".{HEAD}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(json.dumps(head) + "\n")
    os.replace(tmp, folder / HEAD)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def record(store_root: str | Path, *, user: str, role: str, action: str, practice: str | None = None,
           patient_id: str | None = None, patient_ids: list[str] | None = None, run_id: str | None = None,
           rule: str | None = None, detail: dict | None = None) -> dict:
    """Append one entry and return it; on disk (fsynced) when this returns. Raises AuditError
    (nothing written) for a value that is not allowed, e.g. an NHS number or a name's key.
    Threads recording at once share one write and one fsync (``_GroupCommit``)."""
    fields = _checked(user, role, action, practice, patient_id, patient_ids, run_id, rule, detail)
    return _committer(store_root).commit(fields)


class _Pending:
    """One entry waiting for its group's write: its fields, then the entry or the error."""

    def __init__(self, fields: dict):
        self.fields = fields
        self.entry: dict | None = None
        self.error: BaseException | None = None
        self.done = False
        self.written = threading.Event()


class _GroupCommit:
    """Group commit for one store's log in this process. Each caller queues its entry; the
    first to get the writer's turn takes every entry queued by then, chains them in queue
    order under the file lock, writes them in one append and one fsync, then marks them
    done. A caller returns only once its own entry is on disk, so durability and the chain
    are as for one entry at a time, with one fsync for many clinicians."""

    def __init__(self, store_root: Path):
        self.store_root = store_root
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()

    def commit(self, fields: dict) -> dict:
        mine = _Pending(fields)
        with self._queue_lock:
            self._queue.append(mine)
        if not self._turn.acquire(timeout=LOCK_WAIT_S):
            with self._queue_lock:
                queued = mine in self._queue
                if queued:
                    self._queue.remove(mine)
            if queued:
                raise AuditBusy(f"the audit log of {self.store_root} stayed busy for {LOCK_WAIT_S:.0f} s; "
                                "nothing was recorded", "try again; if it persists, find the stuck process")
            mine.written.wait()  # a writer took it: wait for its outcome (locked() bounds that wait)
        else:
            try:
                if not mine.done:
                    with self._queue_lock:
                        group, self._queue = self._queue, []
                    self._write(group)
            finally:
                self._turn.release()
        if mine.error is not None:
            raise mine.error
        return mine.entry

    def _write(self, group: list[_Pending]) -> None:
        try:
            with locked(self.store_root) as folder:
                path = folder / LOG
                seq, prev_hash = _previous(path)
                lines = []
                for p in group:
                    seq += 1
                    entry = {"seq": seq, "time": now_iso(), **p.fields, "prev_hash": prev_hash}
                    entry["hash"] = prev_hash = entry_hash(entry)
                    p.entry = entry
                    lines.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
                _append_synced(path, b"".join(lines))
                _write_head(folder, group[-1].entry)
        except BaseException as e:  # nobody in the group is recorded: each caller raises it
            for p in group:
                p.entry, p.error = None, e
        for p in group:
            p.done = True
            p.written.set()


def _append_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


_COMMITTERS: dict[str, _GroupCommit] = {}
_COMMITTERS_LOCK = threading.Lock()


def _committer(store_root: str | Path) -> _GroupCommit:
    key = str(Path(store_root).resolve())
    with _COMMITTERS_LOCK:
        found = _COMMITTERS.get(key)
        if found is None:
            found = _COMMITTERS[key] = _GroupCommit(Path(store_root))
        return found


# --- reading -------------------------------------------------------------------------------

def read_lines(store_root: str | Path) -> list[bytes]:
    """The log's raw lines (a torn last line included, as it is)."""
    path = log_path(store_root)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    return lines[:-1] if data.endswith(b"\n") or not data else lines


def read_head(store_root: str | Path) -> dict | None:
    try:
        head = json.loads((audit_dir(store_root) / HEAD).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"broken": True}
    return head if isinstance(head, dict) else {"broken": True}


def _day(value: str) -> dt.date:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).date()


def _matches(e: dict, user, practice, action, patient_id, since, until) -> bool:
    if (user and e.get("user") != user) or (practice and e.get("practice") != practice):
        return False
    if action and e.get("action") != action:
        return False
    if patient_id and e.get("patient_id") != patient_id and patient_id not in (e.get("patient_ids") or []):
        return False
    if since or until:
        day = _day(e["time"])
        if (since and day < since) or (until and day > until):
            return False
    return True


def entries(store_root: str | Path, *, user: str | None = None, practice: str | None = None,
            action: str | None = None, patient_id: str | None = None, since: dt.date | None = None,
            until: dt.date | None = None) -> list[dict]:
    """The entries that match every filter given (dates are UTC days, inclusive), oldest
    first. Lines that cannot be read are skipped here; ``verify`` reports them."""
    if action is not None and action not in ACTIONS:
        raise UsageError(f"audit action {action!r} is not one of {', '.join(ACTIONS)}", option="--action")
    out = []
    for raw in read_lines(store_root):
        try:
            e = json.loads(raw)
        except ValueError:
            continue
        try:
            if isinstance(e, dict) and _matches(e, user, practice, action, patient_id, since, until):
                out.append(e)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # an entry without a readable time: verify reports it
    return out
