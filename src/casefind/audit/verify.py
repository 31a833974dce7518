"""Check the audit log's hash chain: every entry's hash over its own content, every
``prev_hash`` the hash of the entry before it, seqs 1, 2, 3... in order, and the last entry
the one the head anchor (and any anchors recorded elsewhere) names.

What this catches, and what it cannot (docs/audit.md): an edit, removal, reordering or
insertion by anyone who does not rebuild the chain is found at the entry concerned. Someone
who can rewrite the whole file can recompute every hash after an edit; the head anchor
(``head.json``) then disagrees, unless they rewrote it too. Only an anchor kept out of their
reach (a head hash printed by ``casefind audit verify`` and recorded elsewhere, given back
with ``--anchor SEQ:HASH``) proves that the log up to that entry is the one seen then.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from casefind.audit.log import FIELDS, GENESIS, entry_hash, read_head, read_lines
from casefind.errors import UsageError


@dataclass
class VerifyResult:
    ok: bool
    entries: int
    problems: list[str] = field(default_factory=list)
    head: dict | None = None  # the last good entry's seq and hash, to record elsewhere


def parse_anchor(text: str) -> tuple[int, str]:
    """'SEQ:HASH' (as ``casefind audit verify`` prints it) → (seq, hash)."""
    seq, _, digest = text.strip().partition(":")
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise UsageError(f"anchor {text!r} is not SEQ:HASH (a number, ':', 64 hex digits)", option="--anchor")
    return int(seq), digest


def _parse(raw: bytes, lineno: int, problems: list[str]) -> dict | None:
    try:
        e = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        problems.append(f"line {lineno}: bad line (not JSON: a torn write or an edit)")
        return None
    if not isinstance(e, dict) or tuple(sorted(e)) != tuple(sorted(FIELDS)) or not isinstance(e.get("seq"), int):
        problems.append(f"line {lineno}: bad line (not an audit entry: fields missing or added)")
        return None
    if e["hash"] != entry_hash(e):
        problems.append(f"seq {e['seq']}: edited (its hash does not match its content)")
    return e


def _span(a: int, b: int) -> str:
    return f"seq {a}" if a == b else f"seq {a}-{b}"


def _order(parsed: list[dict], problems: list[str]) -> None:
    """Seqs and links: removed, reordered or inserted entries, and broken links."""
    all_seqs = {e["seq"] for e in parsed}
    seen: set[int] = set()
    expected, prev, prev_flagged = 1, None, False
    for e in parsed:
        s, before = e["seq"], len(problems)
        if s in seen:
            problems.append(f"seq {s}: inserted (a second entry numbered {s})")
        elif s < expected:
            problems.append(f"seq {s}: reordered (it comes after seq {prev['seq']})")
        elif s > expected:
            missing = [m for m in range(expected, s) if m not in all_seqs]
            if missing:
                problems.append(f"{_span(missing[0], missing[-1])}: removed" if len(missing) == s - expected
                                else f"seq {', '.join(map(str, missing))}: removed")
            if len(missing) < s - expected:
                problems.append(f"seq {s}: reordered (it comes before seq {expected})")
        flagged = len(problems) > before
        want = GENESIS if prev is None else prev["hash"]
        if e["prev_hash"] != want and not flagged and not prev_flagged:
            what = "the first entry does not start the chain" if prev is None else \
                f"its prev_hash is not the hash of seq {prev['seq']} before it"
            problems.append(f"seq {s}: inserted or edited ({what})")
            flagged = True
        seen.add(s)
        expected, prev, prev_flagged = max(expected, s + 1), e, flagged


def _anchors(parsed: list[dict], anchors: list[tuple[int, str]], problems: list[str]) -> None:
    by_seq = {e["seq"]: e for e in parsed}
    last = max(by_seq, default=0)
    for seq, digest in anchors:
        if seq > last:
            problems.append(f"{_span(last + 1, seq)}: removed (the anchor records seq {seq}; "
                            f"the log ends at seq {last})")
        elif seq in by_seq and by_seq[seq]["hash"] != digest:
            problems.append(f"seq {seq}: edited (the anchor records hash {digest[:12]}..., the log has "
                            f"{by_seq[seq]['hash'][:12]}...: the log was rewritten up to there)")


def _head(store_root: Path, parsed: list[dict], problems: list[str]) -> list[tuple[int, str]]:
    head = read_head(store_root)
    if head is None:
        if parsed:
            problems.append("head anchor: missing (audit/head.json was removed)")
        return []
    if head.get("broken") or not isinstance(head.get("seq"), int) or not isinstance(head.get("hash"), str):
        problems.append("head anchor: bad (audit/head.json is not an anchor)")
        return []
    last = max((e["seq"] for e in parsed), default=0)
    if head["seq"] < last:
        problems.append(f"{_span(head['seq'] + 1, last)}: appended after the head anchor (seq {head['seq']}) "
                        "without moving it: a crash between the two writes, or entries added by hand")
    return [(head["seq"], head["hash"])]


def verify(store_root: str | Path, anchors: list[tuple[int, str]] | None = None) -> VerifyResult:
    """Every problem in the chain, by seq (or line, for a line that is not an entry)."""
    store_root = Path(store_root)
    problems: list[str] = []
    parsed = [e for n, raw in enumerate(read_lines(store_root), 1) if (e := _parse(raw, n, problems)) is not None]
    _order(parsed, problems)
    _anchors(parsed, _head(store_root, parsed, problems) + list(anchors or []), problems)
    head = {"seq": parsed[-1]["seq"], "hash": parsed[-1]["hash"]} if parsed else None
    return VerifyResult(ok=not problems, entries=len(parsed), problems=problems, head=head)
