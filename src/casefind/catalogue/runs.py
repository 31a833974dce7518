"""The last run of each rule and KPI file, from what the runs left behind.

A rule's run writes ``OUT/<rule>-<as_of>/manifest.json`` (rule hash, as_of, store snapshot,
when) and registers its list in the store (``STORE/lists/``: run id, rule, as_of, snapshot,
but no rule hash); a KPI run is a row of the KPI history's run log (KPI file hash, periods,
snapshot, when). The catalogue shows the latest of each and whether the file has changed
since, by its sha256. Anything unreadable there is a note, not a failed catalogue.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from casefind.catalogue.model import LastRun
from casefind.errors import CasefindError

MAX_MANIFEST_BYTES = 16 * 1024 * 1024


@dataclass
class Runs:
    """Everything found: manifests and store listings per rule name, KPI runs per KPI set."""

    manifests: dict[str, list[tuple[Path, dict]]] = field(default_factory=dict)
    listings: dict[str, list] = field(default_factory=dict)
    kpi_runs: dict[str, list[dict]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _manifest(path: Path) -> dict | None:
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) and isinstance(data.get("rule"), str) else None


def read_manifests(out_dir: Path, runs: Runs) -> None:
    """``OUT/*/manifest.json``: the run folders casefind run writes (one level down)."""
    if not out_dir.is_dir():
        return
    for path in sorted(out_dir.glob("*/manifest.json")):
        try:
            data = _manifest(path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            runs.notes.append(f"{path}: not a readable run manifest ({type(e).__name__})")
            continue
        if data is None:
            runs.notes.append(f"{path}: not a run manifest casefind wrote")
            continue
        runs.manifests.setdefault(data["rule"], []).append((path, data))


def read_listings(store: Path, runs: Runs) -> None:
    """The store's registry of list runs (``STORE/lists/``)."""
    from casefind.store import listings

    try:
        for listing in listings.runs(store):
            runs.listings.setdefault(listing.rule, []).append(listing)
    except CasefindError as e:
        runs.notes.append(f"the store's registry of lists ({listings.lists_dir(store)}): {e.message}")


def read_kpi_runs(history_path: Path, runs: Runs, *, required: bool) -> None:
    """The KPI history's run log; a missing history is a note only when it was named."""
    from casefind.kpis import history

    if not history_path.exists() and not required:
        return
    try:
        table = history.runs(history_path)
    except CasefindError as e:
        runs.notes.append(f"the KPI history: {e.message}")
        return
    for row in table.to_pylist():
        if row.get("kpi_set") and row.get("status") != "dropped":
            runs.kpi_runs.setdefault(row["kpi_set"], []).append(row)


def _same_file(recorded: object, path: str) -> bool:
    try:
        return Path(str(recorded)).resolve() == Path(path).resolve()
    except (OSError, RuntimeError):
        return False


def _changed(recorded: object, sha256: str) -> bool | None:
    return None if not recorded or not sha256 else recorded != sha256


def last_rule_run(name: str, path: str, sha256: str, runs: Runs, store: Path | None) -> LastRun | None:
    """The latest manifest of rule ``name`` (by when it was created), else the store's
    latest registered run of it (by when it was registered)."""
    found = runs.manifests.get(name, [])
    if found:
        where, m = max(found, key=lambda pm: (str(pm[1].get("created") or ""), str(pm[1].get("as_of") or "")))
        ran = m.get("rule_file")
        return LastRun(source="manifest", where=str(where), run_id=m.get("run_id"), date=m.get("created"),
                       as_of=m.get("as_of"), store_snapshot=m.get("store_snapshot"),
                       file_sha256=m.get("rule_sha256"), changed=_changed(m.get("rule_sha256"), sha256),
                       ran_file=None if not ran or _same_file(ran, path) else str(ran), engine=m.get("engine"),
                       runs=len(found))
    listed = runs.listings.get(name, [])
    if not listed:
        return None
    last = max(listed, key=lambda run: run.recorded_at or "")
    return LastRun(source="store registry", where=str(store), run_id=last.run_id, as_of=last.as_of.isoformat(),
                   date=last.recorded_at and last.recorded_at[:19] + "+00:00", store_snapshot=last.snapshot_id,
                   file_sha256=last.rule_sha256, changed=_changed(last.rule_sha256, sha256), runs=len(listed))


def last_kpi_run(name: str, path: str, sha256: str, runs: Runs, history_path: Path | None) -> LastRun | None:
    """The KPI set's latest run in the run log (by when it started), whatever its status."""
    found = runs.kpi_runs.get(name, [])
    if not found:
        return None
    row = max(found, key=lambda r: str(r.get("started") or ""))
    try:
        periods = [str(p) for p in json.loads(row.get("periods") or "[]")]
    except (TypeError, ValueError):
        periods = []
    when = row.get("finished") or row.get("started")
    ran = row.get("kpi_file")
    return LastRun(source="KPI history", where=str(history_path), run_id=row.get("run_id"),
                   date=when.isoformat(timespec="seconds") if hasattr(when, "isoformat") else when,
                   periods=periods, store_snapshot=row.get("store_snapshot"), file_sha256=row.get("kpi_sha256"),
                   changed=_changed(row.get("kpi_sha256"), sha256),
                   ran_file=None if not ran or _same_file(ran, path) else str(ran), engine=row.get("engine"),
                   status=row.get("status"), runs=len(found))
