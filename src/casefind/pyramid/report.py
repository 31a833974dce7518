"""The pyramid's files: pyramid.parquet and pyramid.csv (every unit's rows), pyramid.json
(the method, the dates, the ties at each band edge) and pyramid.html, one self-contained page
(inline CSS and SVG, no script, nothing fetched; every value escaped by jinja2's autoescape).
Each file is written under a temporary name, then renamed."""
from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pyarrow.parquet as pq

from casefind.outputs import write_atomic, write_csv
from casefind.pyramid.compute import ALL, PyramidResult

CHART_WIDTH, ROW_HEIGHT, LABEL_WIDTH, GAP = 760, 46, 110, 6


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("casefind.pyramid", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=pct, num=num, times=times)
    return env


def pct(x: float | None, places: int = 1) -> str:
    return "–" if x is None else f"{x * 100:,.{places}f}%"


def num(x: float | int | None, places: int = 0) -> str:
    return "–" if x is None else f"{x:,.{places}f}"


def times(x: float | None) -> str:
    return "–" if x is None else f"{x:,.1f}×"


def chart(rows: list[dict]) -> dict:
    """A unit's pyramid as SVG geometry: a row per band, the top band at the top, each a
    bar centred on the axis whose left half is the band's share of people and right half
    its share of emergency admissions (both of the whole bar's half-width at 100%)."""
    half = (CHART_WIDTH - 2 * LABEL_WIDTH) / 2
    centre = LABEL_WIDTH + half
    bars = []
    for i, r in enumerate(x for x in rows if x["band"] != ALL):
        y = 24 + i * ROW_HEIGHT
        people, admissions = (r["people_share"] or 0.0) * half, (r["admissions_share"] or 0.0) * half
        bars.append({"y": y, "h": ROW_HEIGHT - GAP, "band": r["band"], "people_x": centre - people,
                     "people_w": people, "admissions_w": admissions, "people": pct(r["people_share"]),
                     "admissions": pct(r["admissions_share"]), "rate": times(r["relative_rate"])})
    return {"width": CHART_WIDTH, "height": 24 + len(bars) * ROW_HEIGHT + 8, "centre": centre, "bars": bars,
            "left": LABEL_WIDTH, "right": CHART_WIDTH - LABEL_WIDTH}


def _units(rows: list[dict], level: str) -> list[dict]:
    """The level's units in table order, each with its rows (bands then ``all``)."""
    out: dict[str, dict] = {}
    for r in rows:
        if r["level"] == level:
            unit = out.setdefault(r["unit_code"], {"code": r["unit_code"], "name": r["unit_name"],
                                                   "parent": r["parent_code"], "rows": []})
            unit["rows"].append(r)
    return list(out.values())


def html(result: PyramidResult) -> str:
    rows = result.table.to_pylist()
    systems = [{**u, "chart": chart(u["rows"])} for u in _units(rows, "system")]
    return _environment().get_template("pyramid.html.j2").render(
        m=result.meta, systems=systems, localities=_units(rows, "locality"), practices=_units(rows, "practice"))


def write(folder: Path, result: PyramidResult) -> list[Path]:
    """pyramid.parquet, .csv, .json and .html into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = [write_atomic(folder / "pyramid.parquet", lambda p: pq.write_table(result.table, p)),
             write_csv(result.table, folder / "pyramid.csv"),
             write_atomic(folder / "pyramid.json",
                          lambda p: p.write_text(json.dumps(result.meta, indent=1), encoding="utf-8")),
             write_atomic(folder / "pyramid.html", lambda p: p.write_text(html(result), encoding="utf-8"))]
    return files
