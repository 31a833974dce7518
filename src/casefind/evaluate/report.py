"""The evaluation folder, ``OUT/evaluate-<name>/``: effects, balance and matches as Parquet,
report.html (self-contained: inline CSS and SVG, no scripts) and manifest.json, written in
a temporary folder and renamed into place whole."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from jinja2 import Environment, PackageLoader, select_autoescape

from casefind.evaluate.run import Result
from casefind.outputs import folder_swapped_in, safe_child

INTERVAL = "paired t interval over matched sets (analytic variance of the set differences)"


def effects_table(r: Result) -> pa.Table:
    rows = [{"outcome": e.outcome, "sets": e.sets, "treated_before": e.treated_before,
             "treated_after": e.treated_after, "control_before": e.control_before,
             "control_after": e.control_after, "estimate": e.estimate, "lower": e.lower, "upper": e.upper,
             "std_error": e.std_error, "confidence": e.confidence, "relative": e.relative,
             "interval": INTERVAL} for e in r.effects]
    return pa.Table.from_pylist(rows)


def balance_table(r: Result) -> pa.Table:
    return pa.table({"feature": [b.feature for b in r.balance], "stage": [b.stage for b in r.balance],
                     "mean_treated": [b.mean_treated for b in r.balance],
                     "mean_control": [b.mean_control for b in r.balance],
                     "smd": [b.smd for b in r.balance], "flagged": [b.flagged for b in r.balance]})


def matches_table(r: Result) -> pa.Table:
    """One row per (treated, control) pair, with both people's outcomes before and after."""
    m, v = r.matches, r.values
    ids = r.patient_ids
    months = [r.months[i] for i in m.month]
    cols = {"set_id": pa.array(m.set_id), "index_month": pa.array(months, pa.date32()),
            "treated_patient_id": ids.take(pa.array(m.treated)), "control_patient_id": ids.take(pa.array(m.control)),
            "distance": pa.array(m.distance)}
    before = np.array([v.dates.index(d) for d in months], np.int64)
    after = np.array([v.dates.index(_after(r, d)) for d in months], np.int64)
    for name, _ in r.spec.outcomes:
        grid = np.nan_to_num(v.columns[f"outcome|{name}"], nan=0.0)
        for who, rows in (("treated", v.local(m.treated)), ("control", v.local(m.control))):
            cols[f"{who}_before_{name}"] = pa.array(grid[rows, before] if len(rows) else np.zeros(0))
            cols[f"{who}_after_{name}"] = pa.array(grid[rows, after] if len(rows) else np.zeros(0))
    return pa.table(cols)


def _after(r: Result, d: dt.date) -> dt.date:
    from casefind.evaluate.outcomes import months_later

    return months_later(d, r.spec.window_months)


def write(r: Result, out: Path) -> Path:
    """Every file into ``out/evaluate-<name>/``, swapped in whole; manifest.json lists each
    file with its SHA-256."""
    out.mkdir(parents=True, exist_ok=True)
    final = safe_child(out, f"evaluate-{r.spec.name}")
    tmp = out / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    with folder_swapped_in(tmp, final):
        for name, table in (("effects", effects_table(r)), ("balance", balance_table(r)),
                            ("matches", matches_table(r))):
            pq.write_table(table, tmp / f"{name}.parquet")
        (tmp / "report.html").write_text(html(r), encoding="utf-8")
        files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tmp.iterdir())}
        (tmp / "manifest.json").write_text(json.dumps(manifest(r, files), indent=2, default=str))
    return final


def manifest(r: Result, files: dict[str, str]) -> dict:
    s, m = r.spec, r.spec.matching
    return {"run_id": r.run_id, "evaluation": s.name, "spec": str(s.path), "spec_sha256": s.file_sha256,
            "store": str(r.store_root), "snapshot_id": r.snapshot_id, "data_end": r.data_end,
            "group": {"kind": s.group_kind, "from": s.group_label, "first": s.first, "last": s.last},
            "window_months": s.window_months, "index_months": list(r.months),
            "matching": {"method": m.method, "exact": [n for n, _ in m.exact], "features": [n for n, _ in m.features],
                         "caliper": m.caliper, "caliper_width": r.matches.caliper_width, "ratio": m.ratio,
                         "replacement": m.replacement, "seed": m.seed},
            "interval": INTERVAL, "confidence": s.confidence, "counts": r.counts, "warnings": r.warnings,
            "files": files}


def fmt(v: float, places: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    text = f"{abs(v):,.{places}f}"
    return ("−" if v < 0 and float(text.replace(",", "")) != 0 else "") + text


def effect_places(e) -> int:
    """Decimal places for an effect and its interval, by the size of the outcome's means: three
    for counts per person (0.145 admissions), none for money (1,477 a person)."""
    size = max((abs(v) for v in (e.treated_before, e.treated_after, e.control_before, e.control_after)
                if v is not None and math.isfinite(v)), default=0.0)
    return 3 if size < 10 else 1 if size < 1000 else 0


def forest(e) -> dict | None:
    """Where an effect's point and interval sit on a small axis that includes 0."""
    if not all(map(math.isfinite, (e.estimate, e.lower, e.upper))):
        return None
    lo, hi = min(e.lower, 0.0), max(e.upper, 0.0)
    span = (hi - lo) or 1.0
    lo, hi = lo - 0.1 * span, hi + 0.1 * span

    def x(v: float) -> float:
        return round(10 + 180 * (v - lo) / (hi - lo), 1)

    return {"zero": x(0.0), "lower": x(e.lower), "upper": x(e.upper), "point": x(e.estimate)}


def love(rows) -> dict:
    """A Love plot: |SMD| before (open) and after (filled) per feature, 0.1 marked."""
    features = list(dict.fromkeys(b.feature for b in rows))
    finite = [abs(b.smd) for b in rows if math.isfinite(b.smd)]
    top = max([0.25] + finite) * 1.1

    def x(v: float) -> float:
        return round(160 + 320 * min(abs(v), top) / top, 1) if math.isfinite(v) else 480.0

    points = [{"y": 20 + 22 * features.index(b.feature), "x": x(b.smd), "stage": b.stage} for b in rows]
    return {"features": [(f, 24 + 22 * i) for i, f in enumerate(features)], "points": points,
            "threshold": x(0.1), "height": 40 + 22 * len(features), "top": fmt(top, 2)}


def html(r: Result) -> str:
    env = Environment(loader=PackageLoader("casefind.evaluate", "templates"), autoescape=select_autoescape(["html"]))
    env.filters["fmt"] = fmt
    env.globals["places"] = effect_places
    return env.get_template("report.html.j2").render(
        r=r, s=r.spec, m=r.spec.matching, effects=[(e, forest(e)) for e in r.effects],
        balance=r.balance, love=love(r.balance), interval=INTERVAL,
        features=", ".join(n for n, _ in r.spec.matching.features),
        exact=", ".join(n for n, _ in r.spec.matching.exact) or "none")
