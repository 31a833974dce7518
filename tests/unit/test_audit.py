"""The audit log: appends chain, verify finds each kind of tampering, concurrent writers
lose nothing, identifying data is refused, filters and export."""
from __future__ import annotations

import datetime as dt
import itertools
import json
import multiprocessing
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from casefind.audit import ACTIONS, AuditError, entries, export, parse_anchor, record, verify
from casefind.audit.log import LOG, entry_hash
from casefind.errors import UsageError


def _log(root: Path) -> Path:
    return root / "audit" / LOG


def _fill(root: Path, n: int = 6) -> list[dict]:
    return [record(root, user=f"dr{i % 2}", role="clinician", action="view_patient", practice=f"Z0000{1 + i % 2}",
                   patient_id=f"p{i}", run_id="r1", rule="frail", detail={"page": i}) for i in range(n)]


def _lines(root: Path) -> list[str]:
    return _log(root).read_text().splitlines()


def _write(root: Path, lines: list[str], *, newline: bool = True) -> None:
    _log(root).write_text("\n".join(lines) + ("\n" if newline else ""))


def _rehash_from(lines: list[str], start: int) -> list[str]:
    """What an attacker who can rewrite the file does: recompute every hash from ``start`` on."""
    out = list(lines)
    prev = json.loads(out[start - 1])["hash"] if start else "0" * 64
    for i in range(start, len(out)):
        e = json.loads(out[i])
        e["prev_hash"] = prev
        e["hash"] = entry_hash(e)
        prev = e["hash"]
        out[i] = json.dumps(e, separators=(",", ":"))
    return out


def test_entries_chain_and_verify(tmp_path):
    written = _fill(tmp_path)
    assert [e["seq"] for e in written] == [1, 2, 3, 4, 5, 6]
    assert written[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(written))
    result = verify(tmp_path)
    assert result.ok and result.entries == 6 and result.problems == []
    assert result.head == {"seq": 6, "hash": written[-1]["hash"]}
    assert json.loads(_lines(tmp_path)[0]) == written[0]
    assert written[0]["time"].endswith("Z") and dt.datetime.fromisoformat(written[0]["time"].replace("Z", "+00:00"))


def test_empty_log_verifies(tmp_path):
    result = verify(tmp_path)
    assert result.ok and result.entries == 0


def _edit(lines):
    e = json.loads(lines[2])
    e["user"] = "someone_else"
    lines[2] = json.dumps(e, separators=(",", ":"))
    return lines


def _swap(lines):
    lines[2], lines[3] = lines[3], lines[2]
    return lines


def _insert(lines):
    """A forged entry between seq 2 and 3, with its own hash right and linked to seq 2."""
    e = json.loads(lines[1])
    e.update(seq=3, user="forger", prev_hash=e["hash"])
    e["hash"] = entry_hash(e)
    return lines[:2] + [json.dumps(e)] + lines[2:]


@pytest.mark.parametrize("tamper, expected", [
    (_edit, "seq 3: edited"),
    (lambda lines: lines[:2] + lines[3:], "seq 3: removed"),
    (lambda lines: lines[:-1], "seq 6: removed"),
    (_swap, "reordered"),
    (_insert, "inserted"),
    (lambda lines: lines[:3] + ["{not json"] + lines[3:], "line 4: bad line"),
    (lambda lines: _rehash_from(_edit(lines), 2), "seq 6: edited (the anchor records"),  # head anchor catches it
    (lambda lines: _rehash_from(lines[:2] + lines[3:], 2), "seq 3: removed"),
])
def test_verify_detects_tampering(tmp_path, tamper, expected):
    _fill(tmp_path)
    _write(tmp_path, tamper(_lines(tmp_path)))
    result = verify(tmp_path)
    assert not result.ok
    assert any(p.startswith(expected) or expected in p for p in result.problems), result.problems


def test_swap_names_both_entries(tmp_path):
    _fill(tmp_path)
    _write(tmp_path, _swap(_lines(tmp_path)))
    problems = verify(tmp_path).problems
    assert any(p.startswith("seq 4: reordered") for p in problems)
    assert any(p.startswith("seq 3: reordered") for p in problems)


def test_truncated_last_line_is_detected_and_blocks_appends(tmp_path):
    _fill(tmp_path)
    data = _log(tmp_path).read_bytes()
    _log(tmp_path).write_bytes(data[:-20])  # a torn write: the last line cut short, no newline
    problems = verify(tmp_path).problems
    assert any(p.startswith("line 6: bad line") for p in problems), problems
    assert any(p.startswith("seq 6: removed") for p in problems), problems
    with pytest.raises(AuditError, match="last line of the audit log"):
        record(tmp_path, user="dr", role="clinician", action="view_list")
    assert _log(tmp_path).read_bytes() == data[:-20]  # nothing was appended


def test_full_rewrite_needs_an_outside_anchor(tmp_path):
    """Rewriting the file and head.json beats the local checks; an anchor kept elsewhere does not."""
    _fill(tmp_path)
    outside = verify(tmp_path).head
    anchor = parse_anchor(f"{outside['seq'] - 2}:{json.loads(_lines(tmp_path)[3])['hash']}")
    forged = _rehash_from(_edit(_lines(tmp_path)), 2)
    _write(tmp_path, forged)
    last = json.loads(forged[-1])
    (tmp_path / "audit" / "head.json").write_text(json.dumps({"seq": last["seq"], "hash": last["hash"]}))
    assert verify(tmp_path).ok  # the attacker rebuilt everything the store holds
    result = verify(tmp_path, anchors=[anchor])
    assert not result.ok and result.problems[0].startswith("seq 4: edited (the anchor records")


def test_removed_head_anchor_is_reported(tmp_path):
    _fill(tmp_path, 2)
    (tmp_path / "audit" / "head.json").unlink()
    assert verify(tmp_path).problems == ["head anchor: missing (audit/head.json was removed)"]


@pytest.mark.parametrize("text", ["3", "x:" + "a" * 64, "3:" + "a" * 63, "3:" + "G" * 64])
def test_bad_anchor_refused(text):
    with pytest.raises(UsageError):
        parse_anchor(text)


def test_threads_lose_nothing(tmp_path):
    def write(k):
        for i in range(25):
            record(tmp_path, user=f"t{k}", role="clinician", action="decide", patient_id=f"p{k}-{i}")
    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = verify(tmp_path)
    assert result.ok, result.problems
    assert result.entries == 200
    assert len({e["patient_id"] for e in entries(tmp_path)}) == 200


def _process_writer(root: str, k: int, n: int) -> None:
    for i in range(n):
        record(root, user=f"proc{k}", role="practice_admin", action="view_list", patient_ids=[f"q{k}-{i}"])


def test_two_processes_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(str(tmp_path), k, 40)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    result = verify(tmp_path)
    assert result.ok, result.problems
    assert result.entries == 80
    assert {e["user"] for e in entries(tmp_path)} == {"proc0", "proc1"}


@pytest.mark.parametrize("kw, match", [
    ({"detail": {"nhs_number": "x"}}, "identifying"),
    ({"detail": {"Given Name": "Ann"}}, "identifying"),
    ({"detail": {"address_line_1": "1 High St"}}, "identifying"),
    ({"detail": {"note": "called 943 476 5919"}}, "NHS number"),
    ({"detail": {"notes": ["ok", "9434765919"]}}, "NHS number"),
    ({"user": "9434765919"}, "NHS number"),
    ({"detail": {"blob": {"nested": 1}}}, "text, numbers"),
    ({"detail": {"big": "x" * 5000}}, "over"),
    ({"patient_ids": "p1"}, "list"),
    ({"user": ""}, "user"),
    ({"user": "a\nb"}, "user"),
])
def test_identifying_or_bad_values_are_refused(tmp_path, kw, match):
    args = {"user": "dr", "role": "clinician", "action": "view_patient", **kw}
    with pytest.raises(AuditError, match=match):
        record(tmp_path, **args)
    assert not _log(tmp_path).exists() or _log(tmp_path).read_text() == ""


def test_hex_ids_and_hashes_are_not_mistaken_for_nhs_numbers(tmp_path):
    e = record(tmp_path, user="dr", role="clinician", action="view_patient", patient_id="a9434765919b",
               detail={"digest": "a9434765919b" * 4})
    assert e["patient_id"] == "a9434765919b"


@pytest.mark.parametrize("kw", [{"action": "peek"}, {"role": "superuser"}])
def test_vocabulary_is_fixed(tmp_path, kw):
    with pytest.raises(UsageError):
        record(tmp_path, **{"user": "dr", "role": "clinician", "action": "view_list", **kw})
    assert "peek" not in ACTIONS


def test_entries_filters(tmp_path):
    _fill(tmp_path)
    record(tmp_path, user="dr0", role="clinician", action="view_list", practice="Z00001", patient_ids=["p0", "p9"])
    assert [e["seq"] for e in entries(tmp_path, user="dr1")] == [2, 4, 6]
    assert [e["seq"] for e in entries(tmp_path, practice="Z00001", action="view_list")] == [7]
    assert [e["seq"] for e in entries(tmp_path, patient_id="p9")] == [7]
    assert [e["seq"] for e in entries(tmp_path, patient_id="p0")] == [1, 7]
    today = dt.datetime.now(dt.UTC).date()
    assert len(entries(tmp_path, since=today, until=today)) == 7
    assert entries(tmp_path, since=today + dt.timedelta(days=1)) == []
    assert entries(tmp_path, until=today - dt.timedelta(days=1)) == []
    with pytest.raises(UsageError):
        entries(tmp_path, action="peek")


def test_export_csv_neutralises_and_parquet_keeps_lists(tmp_path):
    record(tmp_path, user="=HYPERLINK(\"x\")", role="clinician", action="view_list", practice="Z00001",
           patient_ids=["p1", "p2"], detail={"rows": 2})
    record(tmp_path, user="dr", role="auditor", action="audit_view")
    out = tmp_path / "audit.csv"
    assert export(tmp_path, out, action="view_list") == 1
    text = out.read_bytes()
    assert text.startswith(b"\xef\xbb\xbf")
    body = text.decode("utf-8-sig")
    assert "'=HYPERLINK" in body and "p1 p2" in body
    assert body.splitlines()[0].replace('"', "").split(",")[:3] == ["seq", "time", "user"]
    pq_out = tmp_path / "audit.parquet"
    assert export(tmp_path, pq_out) == 2
    t = pq.read_table(pq_out)
    assert t.column("patient_ids").to_pylist() == [["p1", "p2"], None]
    assert json.loads(t.column("detail")[0].as_py()) == {"rows": 2}
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("name", ["audit.xlsx", "audit"])
def test_export_refuses_other_formats(tmp_path, name):
    with pytest.raises(UsageError):
        export(tmp_path, tmp_path / name)


def test_audit_log_survives_a_new_ingest(tmp_path):
    from casefind_testdata import GOOD, cli, write_source

    store = tmp_path / "store"
    assert cli("ingest", write_source(tmp_path / "a", GOOD), "--store", store).exit_code == 0
    first = record(store, user="dr", role="clinician", action="view_list", practice="Z00001", patient_ids=["p1"])
    changed = {**GOOD, "diagnoses": GOOD["diagnoses"][:2]}  # other data: a new snapshot
    r = cli("ingest", write_source(tmp_path / "b", changed), "--store", store)
    assert r.exit_code == 0, r.output
    assert entries(store) == [first]
    assert verify(store).ok


@pytest.mark.parametrize("damage", ["drop_last", "delete_log", "edit_last", "delete_head"])
def test_appends_stop_when_the_log_no_longer_ends_at_its_anchor(tmp_path, damage):
    """Appending would move the anchor and hide the damage, so it is refused."""
    _fill(tmp_path, 3)
    lines = _lines(tmp_path)
    if damage == "drop_last":
        _write(tmp_path, lines[:-1])
    elif damage == "delete_log":
        _log(tmp_path).unlink()
    elif damage == "delete_head":
        (tmp_path / "audit" / "head.json").unlink()
    else:
        _write(tmp_path, _rehash_from(_edit(lines), 2)[:3])
    before = _log(tmp_path).read_bytes() if _log(tmp_path).exists() else None
    with pytest.raises(AuditError, match="does not end where its anchor"):
        record(tmp_path, user="dr", role="clinician", action="view_list")
    assert (_log(tmp_path).read_bytes() if _log(tmp_path).exists() else None) == before
    assert not verify(tmp_path).ok
