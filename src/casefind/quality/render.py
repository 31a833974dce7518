"""The report as one self-contained HTML file (inline CSS, no script, nothing fetched), for
finance teams and to send a provider its own section. Every data value is escaped by
jinja2's autoescape; the file is written under a temporary name, then renamed."""
from __future__ import annotations

from pathlib import Path

import jinja2

from casefind.outputs import safe_child, write_atomic
from casefind.quality.tables import MEASURED


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("casefind.quality", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def num(x) -> str:
    return "–" if x is None else f"{x:,}" if isinstance(x, int) else f"{x:,.2f}"


def _grid(units: list[dict], gaps: list[dict], window: list[str]) -> list[dict]:
    """One row per unit: its rows per month, gap months marked."""
    marked = {(g["table"], g["kind"], g["code"], g["month"]): g["gap"] for g in gaps}
    return [{"label": u["label"], "cells": [{"month": m, "rows": u["months"].get(m, 0),
                                             "gap": marked.get((u["table"], u["kind"], u["code"], m))}
                                            for m in window]} for u in units]


def _worst(units: list[dict], column: str) -> dict | None:
    shares = [(u["completeness"][column]["share"], u["label"]) for u in units
              if u["kind"] is not None and u["completeness"].get(column, {}).get("share") is not None]
    if not shares:
        return None
    share, label = min(shares)
    return {"share": share, "label": label}


def _table_sections(report: dict, window: list[str]) -> list[dict]:
    out = []
    for name, t in report["tables"].items():
        units = [u for u in report["units"] if u["table"] == name]
        out.append({"name": name, "t": t, "anchor": f"table-{name}",
                    "grid": _grid(units, report["gaps"], window) if t["months"] else [],
                    "completeness": [{"column": c, **v, "worst": _worst(units, c)}
                                     for c, v in t["completeness"].items()],
                    "implausible": [f for f in report["implausible"] if f["table"] == name],
                    "gaps": [g for g in report["gaps"] if g["table"] == name]})
    return out


def _provider_sections(report: dict, window: list[str]) -> list[dict]:
    out = []
    for i, p in enumerate(report["providers"]):
        units = [u for u in report["units"] if (u["kind"], u["code"]) == (p["kind"], p["code"])]
        out.append({**p, "anchor": f"provider-{i + 1}", "tables_detail": [
            {"table": u["table"], "u": u, "grid": _grid([u], u["gaps"], window) if u["months"] else [],
             "completeness": [{"column": c, **v} for c, v in u["completeness"].items()]} for u in units]})
    return out


def context(report: dict) -> dict:
    w = report["window"]
    window = list(next((t["months"] for t in report["tables"].values() if t["months"]), {}))
    return {"r": report, "window": window, "w": w, "tables": _table_sections(report, window),
            "providers": _provider_sections(report, window), "notes": {n: m.unit_note for n, m in MEASURED.items()},
            "crossed": [t for t in report["thresholds"] if t["crossed"]], "pct": pct, "num": num}


def render_html(report: dict) -> str:
    return _environment().get_template("quality.html.j2").render(**context(report))


def default_output(snapshot_id: str, folder: Path | None = None) -> Path:
    """quality-<snapshot>.html in the current folder (the id checked as a file name)."""
    return safe_child(folder or Path.cwd(), f"quality-{snapshot_id}", ".html")


def write_html(report: dict, path: Path) -> Path:
    html = render_html(report)
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda tmp: Path(tmp).write_text(html, encoding="utf-8", newline="\n"))
