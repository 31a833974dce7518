"""The validation report: one JSON document (``summary``) and a self-contained HTML page of
it (inline CSS and SVG, no scripts), both written atomically."""
from __future__ import annotations

import json
from pathlib import Path

from casefind.outputs import write_atomic

# the published anchors for real data (c-statistics of 12-month emergency admission models)
ANCHORS = (
    ("QAdmissions (Hippisley-Cox and Coupland, BMJ Open 2013), validation cohort", 0.77, 0.78),
    ("Combined predictive model (Wennberg et al., King's Fund 2006)", 0.77, 0.78),
)
SCORES = (("model", "the fitted model"), ("baseline", "baseline: prior-year emergency admissions"),
          ("boosted", "gradient-boosted alternative (not shipped)"), ("latent", "latent risk: the ceiling"))


def summary(result: dict, artefact_file: Path | None) -> dict:
    """The report as plain data (what --json prints and the .json file holds)."""
    m = result["metrics"]
    ceiling = m.get("latent", {}).get("c_statistic", {}).get("c")
    c_model, c_base = m["model"]["c_statistic"]["c"], m["baseline"]["c_statistic"]["c"]
    gap = None
    if ceiling is not None and c_base is not None and ceiling > c_base:
        gap = (c_model - c_base) / (ceiling - c_base)
    fitted = result["fitted"]
    return {
        "model": result["spec"].name, "title": result["spec"].title, "spec": str(result["spec"].path),
        "artefact": str(artefact_file) if artefact_file else None,
        "snapshot_id": result["store"].snapshot_id, "engine": result["engine"],
        "dates": {k: v.isoformat() for k, v in result["dates"].items()},
        "training": result["train"], "validation": result["valid"],
        "scores": {k: m[k] for k, _ in SCORES if k in m},
        "ceiling_share": gap,
        "coefficients": [{"name": n, "coefficient": b, "per_sd": z}
                         for n, b, z in zip(fitted.names, fitted.coefficients, fitted.standardised)],
        "intercept": fitted.intercept, "flags": result["flags"],
        "anchors": [{"source": s, "c_low": lo, "c_high": hi} for s, lo, hi in ANCHORS],
    }


def _calibration_svg(deciles: list[dict], size: int = 320) -> str:
    """Observed against predicted risk by decile, on axes from 0 to the largest value."""
    top = max([d["predicted"] for d in deciles] + [d["observed"] for d in deciles] + [0.01]) * 1.05
    pad = 40
    scale = (size - 2 * pad) / top

    def xy(p: float, o: float) -> tuple[float, float]:
        return pad + p * scale, size - pad - o * scale

    x0, y0 = xy(0, 0)
    x1, y1 = xy(top, top)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#1f5f99"/>'
                   for x, y in (xy(d["predicted"], d["observed"]) for d in deciles))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
            f'aria-label="calibration by decile">'
            f'<line x1="{x0}" y1="{y0}" x2="{x1:.1f}" y2="{y0}" stroke="#555"/>'
            f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1:.1f}" stroke="#555"/>'
            f'<line x1="{x0}" y1="{y0}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="#aaa" stroke-dasharray="4 3"/>'
            f'{dots}<text x="{size / 2}" y="{size - 8}" text-anchor="middle" font-size="12">predicted risk '
            f'(0 to {top:.2f})</text><text x="12" y="{size / 2}" font-size="12" '
            f'transform="rotate(-90 12 {size / 2})" text-anchor="middle">observed rate</text></svg>')


def write_html(data: dict, path: Path) -> Path:
    from jinja2 import Environment, PackageLoader, select_autoescape
    from markupsafe import Markup

    env = Environment(loader=PackageLoader("casefind.models", "templates"), autoescape=select_autoescape(["html"]))
    deciles = data["scores"]["model"]["deciles"]
    html = env.get_template("model_report.html").render(
        d=data, names=dict(SCORES), svg=Markup(_calibration_svg(deciles)))
    return write_atomic(path, lambda tmp: Path(tmp).write_text(html, encoding="utf-8"))


def write_json(data: dict, path: Path) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=str) + "\n"))
