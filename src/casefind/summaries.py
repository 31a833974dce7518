"""What each command's ``--json`` prints: plain dicts of its result, the same facts as its
summary table, for scripts and schedulers (docs/scripting.md lists the keys)."""
from __future__ import annotations

from dataclasses import asdict


def synth(result) -> dict:
    return {"command": "synth", "out": str(result.out), "rows": dict(result.rows),
            "injected": dict(result.injected or {}), "seconds": round(result.seconds, 3)}


def ingest(summary) -> dict:
    return {"command": "ingest", "store": str(summary.store),
            "identities_store": None if summary.identities_store is None else str(summary.identities_store),
            "snapshot_id": summary.snapshot_id,
            "tables": {name: asdict(t) for name, t in summary.tables.items()},
            "quarantined_total": summary.quarantined_total, "ignored": list(summary.ignored),
            "extra_columns": summary.extras, "identifier_columns_removed": summary.identifier_columns,
            "dropped_columns": summary.dropped_columns, "seconds": round(summary.seconds, 3)}


def run(result) -> dict:
    return {"command": "run", "run_id": result.run_id, "rule": result.rule.name,
            "as_of": result.rule.as_of.isoformat(), "out_dir": str(result.out_dir),
            "counts": dict(result.counts), "excluded": dict(result.excluded),
            "per_practice": dict(result.per_practice), "segments": result.segments,
            "warnings": list(result.warnings), "timings": {k: round(v, 4) for k, v in result.timings.items()},
            "manifest": str(result.out_dir / "manifest.json")}


def kpi(result) -> dict:
    levels: dict[str, int] = {}
    if result.results is not None:
        for level in result.results.column("level").to_pylist():
            levels[level] = levels.get(level, 0) + 1
    return {"command": "kpi", "run_id": result.run_id, "kpi_set": result.kpi_set, "periods": list(result.periods),
            "history": str(result.history), "rows": result.rows, "rows_by_level": levels,
            "suppressed": result.suppressed, "measures": result.measures, "warnings": list(result.warnings),
            "timings": {k: round(v, 4) for k, v in result.timings.items()}}


def check(rule, path) -> dict:
    return {"file": str(path), "rule": rule.name, "version": rule.version, "as_of": rule.as_of.isoformat(),
            "features": len(rule.features), "include": len(rule.include), "exclude": len(rule.exclude), "ok": True}
