"""Build the catalogue of a rules folder from explicit inputs (no settings are read here).

Rules are the folder's ``*.yml`` (not their ``*.test.yml`` test files), KPI files its
``kpis/*.yml``, budget files its ``budgets/*.yml`` when that folder exists. Each is
described (describe.py), then given its last run (runs.py) from the output folder's run
manifests, the store's registry of lists and the KPI history.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from casefind.catalogue import describe
from casefind.catalogue.model import KPIS, RULE, Catalogue, Entry
from casefind.catalogue.runs import Runs, last_kpi_run, last_rule_run, read_kpi_runs, read_listings, read_manifests
from casefind.project import kpi_files, rule_files

BUDGETS = "budgets"
SHIPPED = "SHIPPED.json"  # written by casefind init: the sha256 of each file it copied
MAX_SHIPPED_BYTES = 4 * 1024 * 1024


def budget_paths(budgets_dir: Path) -> list[Path]:
    return sorted(p for ext in ("*.yml", "*.yaml") for p in budgets_dir.glob(ext))


def _default_history(store: Path | None) -> Path | None:
    from casefind.kpis.history import default_path

    return default_path(store) if store is not None else None


def _runs(out_dir: Path | None, store: Path | None, history: Path | None) -> Runs:
    runs = Runs()
    if out_dir is not None:
        read_manifests(out_dir, runs)
    if store is not None:
        read_listings(store, runs)
    history_path = history or _default_history(store)
    if history_path is not None:
        read_kpi_runs(history_path, runs, required=history is not None)
    return runs


def _shipped(rules_dir: Path, notes: list[str]) -> tuple[str | None, dict[str, str] | None]:
    """(casefind release, relative path -> sha256) from the rules folder's SHIPPED.json."""
    path = rules_dir / SHIPPED
    if not path.is_file():
        return None, None
    try:
        if path.stat().st_size > MAX_SHIPPED_BYTES:
            raise ValueError("too large")
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        if not isinstance(files, dict):
            raise ValueError("no files")
    except (OSError, ValueError, KeyError, TypeError) as e:
        notes.append(f"{path}: not a SHIPPED.json casefind init wrote ({type(e).__name__})")
        return None, None
    return str(data.get("casefind_version") or "?"), {str(k): str(v) for k, v in files.items()}


def _against_shipped(path: Path, sha256: str | None, root: Path, files: dict[str, str]) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return "added"
    if rel not in files:
        return "added"
    return "unchanged" if sha256 == files[rel] else "edited"


def _mark_shipped(entries: list[Entry], root: Path, files: dict[str, str]) -> None:
    for e in entries:
        e.shipped = _against_shipped(Path(e.path), e.sha256, root, files)
        for c in e.codelists:
            if c.file:
                c.shipped = _against_shipped(Path(e.path).parent / c.file, c.sha256, root, files)


def _anchors(entries: list[Entry]) -> None:
    """A unique HTML id per entry: kind and name, numbered when two share them."""
    used: set[str] = set()
    for e in entries:
        base = re.sub(r"[^a-z0-9]+", "-", f"{e.kind}-{e.name}".lower()).strip("-") or e.kind
        anchor, i = base, 2
        while anchor in used:
            anchor, i = f"{base}-{i}", i + 1
        used.add(anchor)
        e.anchor = anchor


def build(rules_dir: Path, *, out_dir: Path | None = None, store: Path | None = None,
          history: Path | None = None, budgets_dir: Path | None = None) -> Catalogue:
    """The catalogue of ``rules_dir``. ``out_dir``: where runs wrote their folders;
    ``store``: its registry of lists (and its default KPI history); ``history``: the KPI
    history (default STORE/kpi/history.duckdb); ``budgets_dir``: default RULES/budgets."""
    rules_dir = Path(rules_dir)
    budgets_dir = Path(budgets_dir) if budgets_dir is not None else rules_dir / BUDGETS
    history_path = history or _default_history(store)
    entries = [describe.describe_rule(p) for p in rule_files(rules_dir)]
    entries += [describe.describe_kpis(p) for p in kpi_files(rules_dir)]
    has_budgets = budgets_dir.is_dir()
    if has_budgets:
        entries += [describe.describe_budget(p) for p in budget_paths(budgets_dir)]
    runs = _runs(out_dir, store, history)
    shipped_from, shipped = _shipped(rules_dir, runs.notes)
    if shipped is not None:
        _mark_shipped(entries, rules_dir, shipped)
    for e in entries:
        if e.kind == RULE:
            e.last_run = last_rule_run(e.name, e.path, e.sha256, runs, store)
        elif e.kind == KPIS:
            e.last_run = last_kpi_run(e.name, e.path, e.sha256, runs, history_path)
    _anchors(entries)
    return Catalogue(rules_dir=str(rules_dir), generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                     out_dir=None if out_dir is None else str(out_dir), store=None if store is None else str(store),
                     history=None if history_path is None else str(history_path),
                     budgets_dir=str(budgets_dir) if has_budgets else None, shipped_from=shipped_from,
                     entries=entries, notes=runs.notes)
