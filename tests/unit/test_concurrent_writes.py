"""Many threads writing at once, as the review app's thread pool does: every decision is
recorded once (none lost, none twice), a writer waits for the review log's lock rather than
failing, and the audit log's group commit keeps its hash chain and one entry per caller."""
from __future__ import annotations

import datetime as dt
import fcntl
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from casefind import audit
from casefind.audit import log as audit_log
from casefind.store import StoreBusy, decisions

THREADS = 12
EACH = 8


def _store(tmp_path: Path) -> Path:
    """decisions.append needs only a store's ``current`` beside the log."""
    root = tmp_path / "store"
    (root / "current").mkdir(parents=True)
    return root


def _decision(patient: str, decision: str = "accepted", reviewer: str = "dr") -> pa.Table:
    return pa.Table.from_pylist([{"patient_id": patient, "rule": "frail", "decision": decision,
                                  "date": dt.date(2026, 11, 2), "practice": "Z00001", "run_id": None,
                                  "reviewer": reviewer, "note": None}], schema=decisions.INPUT_SCHEMA)


def _in_threads(work, n: int = THREADS) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(i):
        try:
            work(i)
        except BaseException as e:  # collected for the assertion
            errors.append(e)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_decisions_none_lost_none_twice(tmp_path):
    root = _store(tmp_path)
    results: dict[str, str | None] = {}

    def decide(i):
        for k in range(EACH):
            pid = f"p{i:02d}-{k}"
            results[pid], _, _ = decisions.append(root, _decision(pid, reviewer=f"dr{i}"), one_per_day=True)
            # the same decision again, from another thread's point of view: already recorded
            again, _, dup = decisions.append(root, _decision(pid, reviewer=f"dr{i}"), one_per_day=True)
            assert (again, dup) == (None, 1)

    assert _in_threads(decide) == []
    log = decisions.read_log(root).to_pylist()
    ids = [r["patient_id"] for r in log]
    assert sorted(ids) == sorted(results) and len(ids) == THREADS * EACH  # none lost, none twice
    batches = [r["batch"] for r in log]
    assert len(set(batches)) == THREADS * EACH and batches == sorted(batches)  # the log's order is the order recorded
    assert all(results[r["patient_id"]] == r["batch"] for r in log)


def test_concurrent_different_decisions_same_day_one_wins(tmp_path):
    """Two clinicians deciding one patient differently at once: exactly one is recorded,
    the other is refused with DecisionConflict (nothing half-written)."""
    root = _store(tmp_path)
    outcomes: list[str] = []

    def decide(i):
        try:
            decisions.append(root, _decision("p1", ("accepted", "declined")[i % 2]), one_per_day=True)
            outcomes.append("recorded")
        except decisions.DecisionConflict:
            outcomes.append("conflict")

    assert _in_threads(decide, 6) == []
    kept = decisions.read_log(root).to_pylist()
    assert len(kept) == 1 and outcomes.count("recorded") == 3 and outcomes.count("conflict") == 3


def test_withdraw_and_redecide_from_threads_keeps_the_history(tmp_path):
    root = _store(tmp_path)

    def cycle(i):
        pid = f"p{i}"
        decisions.append(root, _decision(pid, "accepted"), one_per_day=True)
        decisions.append(root, _decision(pid, decisions.WITHDRAWN), one_per_day=True)
        decisions.append(root, _decision(pid, "declined"), one_per_day=True)

    assert _in_threads(cycle, 8) == []
    log = decisions.read_log(root)
    assert log.num_rows == 24
    latest = {r["patient_id"]: r["decision"] for r in decisions.latest(log).to_pylist()}
    assert latest == {f"p{i}": "declined" for i in range(8)}


def test_a_writer_waits_for_the_lock_then_records(tmp_path):
    """Another process holds the review log's lock; the append waits for it rather than
    failing, and records once it is free."""
    root = _store(tmp_path)
    waiting, done, outcome = threading.Event(), threading.Event(), {}

    def append():
        waiting.set()
        outcome["batch"] = decisions.append(root, _decision("p1"), one_per_day=True)[0]
        done.set()

    with open(root / decisions.LOCK, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        t = threading.Thread(target=append)
        t.start()
        waiting.wait()
        assert not done.wait(0.2)  # still waiting for the lock
        assert decisions.batches(root) == []
        fcntl.flock(held, fcntl.LOCK_UN)
    t.join()
    assert outcome["batch"] is not None and [b.stem for b in decisions.batches(root)] == [outcome["batch"]]


def test_a_lock_held_too_long_is_a_clear_busy_error(tmp_path, monkeypatch):
    root = _store(tmp_path)
    monkeypatch.setattr(decisions, "PROCESS_WAIT_S", 0.05)
    with open(root / decisions.LOCK, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(StoreBusy, match=r"another process is recording review decisions .* nothing was recorded"):
            decisions.append(root, _decision("p1"))
    assert decisions.batches(root) == []


def test_threads_queued_too_long_are_told_so(tmp_path, monkeypatch):
    root = _store(tmp_path)
    monkeypatch.setattr(decisions, "LOCK_WAIT_S", 0.05)
    mine = decisions._thread_lock(root)
    with mine, pytest.raises(StoreBusy, match="queued behind others"):
        decisions.append(root, _decision("p1"))


def test_decision_batches_are_fsynced_before_append_returns(tmp_path, monkeypatch):
    root = _store(tmp_path)
    synced: list[int] = []
    real = decisions.os.fsync
    monkeypatch.setattr(decisions.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    decisions.append(root, _decision("p1"))
    assert len(synced) == 2  # the batch file, then its folder (the rename)


def test_read_log_adds_only_new_batches_and_sees_them_at_once(tmp_path):
    root = _store(tmp_path)
    decisions.append(root, _decision("p1"))
    first = decisions.read_log(root)
    assert decisions.read_log(root) is first  # nothing new: the same table
    decisions.append(root, _decision("p2"))
    assert decisions.read_log(root).column("patient_id").to_pylist() == ["p1", "p2"]


# --- the audit log's group commit ------------------------------------------------------------

def _audit_root(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    return root


def test_concurrent_audit_entries_chain_and_verify(tmp_path):
    root = _audit_root(tmp_path)
    returned: list[dict] = []

    def write(i):
        for k in range(EACH):
            returned.append(audit.record(root, user=f"dr{i}", role="clinician", action="view_patient",
                                         practice="Z00001", patient_id=f"p{i}-{k}"))

    assert _in_threads(write) == []
    result = audit.verify(root)
    assert result.ok and result.entries == THREADS * EACH, result
    on_disk = audit.entries(root)
    assert [e["seq"] for e in on_disk] == list(range(1, THREADS * EACH + 1))
    assert sorted(e["hash"] for e in returned) == sorted(e["hash"] for e in on_disk)  # each caller got its own


def test_queued_audit_entries_share_one_fsync(tmp_path, monkeypatch):
    """While one writer has the turn, entries queue; the next writer writes them all with one
    fsync, and each caller returns only then, with its own entry."""
    root = _audit_root(tmp_path)
    audit.record(root, user="setup", role="system", action="audit_view")
    committer = audit_log._committer(root)
    synced: list[int] = []
    real = audit_log.os.fsync
    monkeypatch.setattr(audit_log.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    got: dict[int, dict] = {}
    with committer._turn:  # a writer is busy: the others queue
        threads = [threading.Thread(target=lambda i=i: got.update({i: audit.record(
            root, user=f"dr{i}", role="clinician", action="view_list", practice="Z00001")})) for i in range(5)]
        for t in threads:
            t.start()
        while len(committer._queue) < 5:
            threading.Event().wait(0.001)
        assert got == {}  # nobody is acknowledged before the write
    for t in threads:
        t.join()
    assert len(synced) == 1
    assert sorted(e["seq"] for e in got.values()) == [2, 3, 4, 5, 6]
    assert {e["user"] for e in got.values()} == {f"dr{i}" for i in range(5)}
    assert audit.verify(root).ok


def test_a_broken_log_refuses_the_whole_group(tmp_path):
    root = _audit_root(tmp_path)
    audit.record(root, user="setup", role="system", action="audit_view")
    path = root / "audit" / audit_log.LOG
    path.write_bytes(path.read_bytes() + b'{"torn')
    errors = _in_threads(lambda i: audit.record(root, user=f"dr{i}", role="clinician", action="view_list"), 4)
    assert len(errors) == 4 and all(isinstance(e, audit.AuditError) for e in errors)
    assert path.read_bytes().count(b"\n") == 1  # nothing more written


def test_an_audit_writer_stuck_too_long_is_a_busy_error(tmp_path, monkeypatch):
    root = _audit_root(tmp_path)
    monkeypatch.setattr(audit_log, "LOCK_WAIT_S", 0.05)
    committer = audit_log._committer(root)
    with committer._turn, pytest.raises(audit.AuditBusy, match="stayed busy"):
        audit.record(root, user="dr", role="clinician", action="view_list")
    assert committer._queue == [] and audit.entries(root) == []


def test_an_entry_taken_by_a_writer_is_waited_for_not_refused(tmp_path, monkeypatch):
    """A caller whose wait for the turn runs out after a writer took its entry waits for
    that write and returns the entry (it is on disk), rather than saying nothing was recorded."""
    root = _audit_root(tmp_path)
    monkeypatch.setattr(audit_log, "LOCK_WAIT_S", 0.05)
    committer = audit_log._committer(root)
    got = {}
    with committer._turn:
        t = threading.Thread(target=lambda: got.update(entry=audit.record(root, user="dr", role="clinician",
                                                                        action="view_list")))
        t.start()
        while not committer._queue:
            threading.Event().wait(0.001)
        group, committer._queue = committer._queue, []  # as a writer with the turn does
        committer._write(group)
        t.join()
    assert got["entry"]["seq"] == 1 and audit.verify(root).ok
