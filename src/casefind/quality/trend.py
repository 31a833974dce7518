"""The trend against an earlier snapshot: rows up or down per table and provider, and rows
of the months both cover (history a provider restated), completeness and unknown codes.

An ingest replaces the store's snapshot and removes the earlier ones (docs/store.md), so the
earlier side is, in order: a quality report saved with ``casefind quality --json > FILE``
(what a scheduled run keeps), another store's folder (a copy kept before re-ingesting), or
the id of a snapshot still held in this store's ``snapshots/`` folder.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from casefind.errors import UsageError
from casefind.store.reader import Store
from casefind.store.sharded import ShardedStore
from casefind.store.shards import is_sharded
from casefind.store.writer import CURRENT, FORMAT, FORMAT_VERSION, SNAPSHOTS

OPTION = "--against"
REPORT_FORMAT = "casefind-quality"
_SNAPSHOT_ID = re.compile(r"^[0-9a-f]{16}$")
MAX_REPORT_BYTES = 256 * 1024 * 1024
HINT = ("give a report saved with `casefind quality --json > FILE`, another store's folder, or a snapshot "
        "id still in STORE/snapshots/ (an ingest removes earlier snapshots: save a report each run)")


def earlier(text: str, store_root: Path, build) -> dict:
    """The earlier report: loaded (a saved report) or built with ``build(store)``."""
    path = Path(text)
    if path.is_file():
        return _load_report(path)
    if path.is_dir() and (path / CURRENT).exists():
        return build(Store.open(path))
    if path.is_dir() and is_sharded(path):
        return build(ShardedStore(path))
    if _SNAPSHOT_ID.match(text):
        snapshot = Path(store_root) / SNAPSHOTS / text
        if (snapshot / "manifest.json").is_file():
            return build(_open_snapshot(Path(store_root), snapshot))
        raise UsageError(f"the store holds no snapshot {text}", HINT, OPTION)
    raise UsageError(f"{text[:200]!r} is not a saved report, a store or a snapshot id of this store", HINT, OPTION)


def _load_report(path: Path) -> dict:
    if path.stat().st_size > MAX_REPORT_BYTES:
        raise UsageError(f"{path} is too large to be a quality report", HINT, OPTION)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"{path} is not a JSON quality report ({e})"[:300], HINT, OPTION) from e
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT or not isinstance(
            report.get("tables"), dict) or not isinstance(report.get("units"), list):
        raise UsageError(f"{path} is not a casefind quality report", HINT, OPTION)
    return report


def _open_snapshot(root: Path, snapshot: Path) -> Store:
    try:
        manifest = json.loads((snapshot / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read snapshot {snapshot.name}: {e}", HINT, OPTION) from e
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"snapshot {snapshot.name} has another store format", HINT, OPTION)
    return Store(root, snapshot, manifest)


def _change(then: int, now: int) -> dict:
    return {"rows_then": then, "rows_now": now, "change": now - then,
            "change_share": None if then == 0 else (now - then) / then}


def _common(months_then: dict, months_now: dict) -> dict:
    both = sorted(set(months_then) & set(months_now))
    return {"common_months": [both[0], both[-1]] if both else None,
            "common_then": sum(months_then[m] for m in both), "common_now": sum(months_now[m] for m in both)}


def _key(u: dict) -> tuple:
    return (u["table"], u["kind"], u["code"])


def compare(now: dict, then: dict) -> dict:
    """What changed from ``then`` to ``now``, per table, provider, column and code table."""
    tables = []
    for name, t in now["tables"].items():
        old = then["tables"].get(name, {})
        tables.append({"table": name, **_change(old.get("rows", 0), t["rows"]),
                       **_common(old.get("months", {}), t["months"])})
    old_units = {_key(u): u for u in then["units"]}
    new_units = {_key(u): u for u in now["units"]}
    providers = []
    for key in sorted(set(old_units) | set(new_units), key=lambda k: tuple("" if x is None else x for x in k)):
        o, n = old_units.get(key), new_units.get(key)
        unit = n or o
        status = "new" if o is None else "gone" if n is None else ""
        providers.append({"table": key[0], "kind": key[1], "code": key[2], "label": unit["label"], "status": status,
                          **_change(o["rows"] if o else 0, n["rows"] if n else 0),
                          **_common(o["months"] if o else {}, n["months"] if n else {})})
    return {"against": {"snapshot_id": then.get("snapshot_id"), "store": then.get("store"),
                        "generated": then.get("generated")},
            "tables": tables, "providers": providers,
            "completeness": _completeness(now, then), "codes": _codes(now, then)}


def _completeness(now: dict, then: dict) -> list[dict]:
    out = []
    for name, t in now["tables"].items():
        old = then["tables"].get(name, {}).get("completeness", {})
        for col, v in t["completeness"].items():
            before = old.get(col, {}).get("share")
            out.append({"table": name, "column": col, "then": before, "now": v["share"],
                        "change": None if before is None or v["share"] is None else v["share"] - before})
    return out


def _codes(now: dict, then: dict) -> list[dict]:
    out = []
    for name, t in now["tables"].items():
        if t.get("codes"):
            old = (then["tables"].get(name) or {}).get("codes") or {}
            out.append({"table": name, "unknown_share_then": old.get("unknown_share"),
                        "unknown_share_now": t["codes"]["unknown_share"]})
    return out
