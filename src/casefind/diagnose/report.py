"""A diagnosis's outputs: Parquet tables for analysts, a self-contained HTML report and a
manifest, written to a temporary folder renamed into place whole.

Files (OUT/diagnose-<as_of>/): sizes.parquet (rule, practice, people), turnover.parquet,
overlap.parquet (every pair: both, Jaccard), upset.parquet (exclusive intersections),
ppv.parquet (per rule and practice), crisis.parquet (rule, group, month, people, means),
report.html, manifest.json.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import jinja2
import pyarrow as pa
import pyarrow.parquet as pq

from casefind import __version__
from casefind.diagnose import charts, crisis
from casefind.diagnose.overlap import upset_svg
from casefind.diagnose.run import Diagnosis
from casefind.outputs import UnsafePathError, folder_swapped_in, safe_child

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("casefind.diagnose", "templates"),
                          autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)


def tables(d: Diagnosis) -> dict[str, pa.Table]:
    """Every table the diagnosis writes, by file stem."""
    sizes = [{"rule": r, "practice": p, "people": n} for r, by in d.sizes.items() for p, n in by.items()]
    upset = [{"rules": " & ".join(c), "n_rules": len(c), "people": n} for c, n in d.overlap.intersections]
    crisis_rows = [row for c in d.curves for row in c.rows]
    return {"sizes": _table(sizes, {"rule": pa.string(), "practice": pa.string(), "people": pa.int64()}),
            "turnover": pa.Table.from_pylist([t.row() for t in d.turnover]) if d.turnover else pa.table({}),
            "overlap": pa.Table.from_pylist(d.overlap.pairs()) if d.overlap.rules else pa.table({}),
            "upset": _table(upset, {"rules": pa.string(), "n_rules": pa.int64(), "people": pa.int64()}),
            "ppv": pa.Table.from_pylist(d.ppv) if d.ppv else pa.table({}),
            "crisis": _table(crisis_rows, {"rule": pa.string(), "group": pa.string(), "month": pa.int64(),
                                           "people": pa.int64(), "mean_cost": pa.float64(),
                                           "mean_admissions": pa.float64()})}


def _table(rows: list[dict], schema: dict[str, pa.DataType]) -> pa.Table:
    return pa.Table.from_pylist(rows, pa.schema(list(schema.items())))


def manifest(d: Diagnosis) -> dict:
    return {"command": "diagnose", "as_of": d.as_of.isoformat(), "store_snapshot": d.store_snapshot,
            "rules": [{"name": r.name, "file": str(Path(r.path).resolve()), "sha256": r.file_sha256,
                       "version": r.version} for r in d.rules],
            "against": d.options.against, "engine": d.options.engine,
            "crisis": {"window_months": d.options.window, "washout_months": d.options.washout},
            "timings_s": {k: round(v, 4) for k, v in d.timings.items()}, "casefind": __version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def html(d: Diagnosis) -> str:
    months = [int(m) for m in crisis.OFFSETS]
    curves = []
    for c in d.curves:
        by = {g: [r for r in c.rows if r["group"] == g] for g in crisis.GROUPS}
        curves.append({"curve": c, "window": [crisis.month_end(m) for m in c.window.identification_months[[0, -1]]],
                       "cost": charts.line_chart(months, {g: [r["mean_cost"] for r in by[g]] for g in by},
                                                 f"{c.rule}: cost per person a month (£)", money=True),
                       "admissions": charts.line_chart(months, {g: [r["mean_admissions"] for r in by[g]] for g in by},
                                                       f"{c.rule}: emergency admissions per person a month",
                                                       money=False)})
    practices = sorted({p for by in d.sizes.values() for p in by})
    return _ENV.get_template("diagnose.html.j2").render(
        d=d, practices=practices, upset=upset_svg(d.overlap), curves=curves, labels=charts.LABELS,
        css=_ENV.loader.get_source(_ENV, "diagnose.css")[0])


def write(d: Diagnosis, out: Path) -> Path:
    """All outputs into OUT/diagnose-<as_of>/, swapped in whole; returns that folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        from casefind.errors import UsageError

        raise UsageError(f"{out} is a file; give a folder for the outputs", option="--out")
    try:
        final = safe_child(out, f"diagnose-{d.as_of.isoformat()}")
    except UnsafePathError as e:  # pragma: no cover - the name is built from a date
        raise RuntimeError(e.message) from None
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tmp-diagnose-{uuid.uuid4().hex[:8]}"
    with folder_swapped_in(tmp, final):
        for stem, table in tables(d).items():
            pq.write_table(table, tmp / f"{stem}.parquet")
        (tmp / "report.html").write_text(html(d), encoding="utf-8")
        (tmp / "manifest.json").write_text(json.dumps(manifest(d), indent=2, default=str))
    d.out_dir = final
    return final
