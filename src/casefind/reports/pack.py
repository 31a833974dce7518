"""The monthly KPI pack: one self-contained, printable HTML file from the KPI ``history`` table.

Why one file: packs are emailed and read on locked-down machines, so everything (CSS, SVG
charts and icons) is inline, nothing is fetched and no script runs. Every number shown comes
from ``history``; the only things computed here are chart furniture: XmR means, limits and
signals (``spc``), Making Data Count icons, and funnel limits (``funnel``). Classes are worked
out from the unrounded figures where the history keeps them (``exact_*``); only the published
(rounded, suppressed) figures are shown.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import pyarrow as pa
from markupsafe import Markup

from casefind.errors import UsageError
from casefind.reports import charts, spc
from casefind.reports import funnel as fn
from casefind.reports import integrity as ig
from casefind.reports.view import (  # noqa: F401  (fmt_* are part of this module's interface)
    DOMAINS,
    MISSING,
    NO_DATA,
    SUMMARY_LEVELS,
    SUPPRESSED,
    History,
    Kpi,
    exact,
    fmt_change,
    fmt_ci,
    fmt_count,
    fmt_value,
    no_data,
    period_kind,
    read_rows,
    shown,
)

VARIATION = {  # label, css class, glyph: the glyph keeps the badge legible in black and white
    spc.IMPROVEMENT: ("Special cause improvement", "improve", "\u25b2"),
    spc.CONCERN: ("Special cause concern", "concern", "\u25a0"),
    spc.NEUTRAL_HIGH: ("Special cause (high), neither improvement nor concern", "neutral", "\u25c6"),
    spc.NEUTRAL_LOW: ("Special cause (low), neither improvement nor concern", "neutral", "\u25c6"),
    spc.COMMON: ("Common cause", "common", "\u25cf"),
    spc.INSUFFICIENT: ("Too few points for limits", "none", "\u2013"),
    spc.NO_DATA: ("No data", "none", "\u2013"),
}
ASSURANCE = {spc.PASS: "Consistently passes the target", spc.FAIL: "Consistently fails the target",
             spc.HIT_AND_MISS: "Hit and miss"}
HES_RULE = "NHS England's HES/ECDS disclosure control methodology"


@dataclass(frozen=True)
class PackOptions:
    """How the SPC charts are drawn: ``baseline`` N holds limits from the first N points;
    ``rebase`` (kpi, period) pairs start new limits at a period; ``overdispersion`` widens
    funnel limits by Spiegelhalter's factor where practices are overdispersed."""

    baseline: int | None = None
    rebase: tuple[tuple[str, str], ...] = ()
    overdispersion: bool = False


# ---------------------------------------------------------------- one chart per unit and KPI

def rebase_indices(h: History, kpi: Kpi, options: PackOptions) -> list[int]:
    out = []
    for code, period in options.rebase:
        if code != kpi.code:
            continue
        if period not in h.periods or h.periods.index(period) == 0:
            raise UsageError(f"{code}={period}: re-base at a period after the first charted "
                             f"({h.periods[0]} to {h.periods[-1]})", option="--rebase")
        out.append(h.periods.index(period))
    return out


def check_options(h: History, options: PackOptions) -> None:
    """Every --rebase names a KPI of the pack and a charted period."""
    known = {k.code for k in h.kpis}
    for code, _ in options.rebase:
        if code not in known:
            raise UsageError(f"no KPI {code!r} in this pack", f"KPIs: {', '.join(sorted(known))}",
                             option="--rebase")
    for kpi in h.kpis:
        rebase_indices(h, kpi, options)


def chart_for(h: History, kpi: Kpi, level: str, unit: str, options: PackOptions) -> spc.XmR | None:
    """The XmR chart of one unit's KPI, from unrounded values where kept; None for a measure
    that is not charted as XmR (rolling-year or point-in-time figures)."""
    if not kpi.xmr:
        return None
    values = h.series(kpi.code, level, unit, exact_values=True)
    baseline = options.baseline
    return spc.xmr(values, baseline=baseline, rebase_at=rebase_indices(h, kpi, options),
                   bounds=kpi.bounds(values.tolist()))


# ---------------------------------------------------------------- building the page

def _badge(status: str) -> dict:
    label, css, glyph = VARIATION[status]
    return {"label": label, "css": css, "glyph": glyph}


def _variation(point: spc.PointClass) -> dict:
    """Icon (where MDC has one) and text for one class."""
    badge = _badge(point.status)
    icon = point.icon
    if point.status in (spc.IMPROVEMENT, spc.CONCERN):
        badge["label"] += " (high)" if point.sense > 0 else " (low)"
    badge["icon"] = Markup(charts.variation_icon_svg(icon, labelled=False)) if icon else None
    badge["icon_name"] = icon
    return badge


def _assurance(status: str | None) -> dict | None:
    if status is None:
        return None
    name = spc.ASSURANCE_ICONS[status]
    return {"label": ASSURANCE[status], "icon": Markup(charts.assurance_icon_svg(name, labelled=False)),
            "icon_name": name}


def _cell(row: dict | None, kpi: Kpi) -> dict:
    if row is None:
        return {"value": MISSING, "ci": MISSING, "numerator": MISSING, "denominator": MISSING,
                "suppressed": False, "no_data": False}
    if no_data(row):
        return {"value": NO_DATA, "ci": MISSING, "numerator": "0", "denominator": "0", "suppressed": False,
                "no_data": True}
    if row["suppressed"]:
        return {"value": SUPPRESSED, "ci": SUPPRESSED, "numerator": SUPPRESSED,
                "denominator": fmt_count(row["denominator"]), "suppressed": True, "no_data": False}
    numerator = fmt_count(row["numerator"])
    if kpi.money and row["numerator"] is not None:  # a cost KPI's numerator is money too
        numerator = ("-" if row["numerator"] < 0 else "") + "\u00a3" + fmt_count(abs(row["numerator"]))
    return {"value": fmt_value(row["value"], kpi), "ci": fmt_ci(row["lower"], row["upper"], kpi),
            "numerator": numerator, "denominator": fmt_count(row["denominator"]),
            "suppressed": False, "no_data": False}


def _target_text(kpi: Kpi) -> str | None:
    if kpi.target is None:
        return None
    sign = {"higher_is_better": "\u2265", "lower_is_better": "\u2264"}.get(kpi.direction, "=")
    return f"target {sign} {fmt_value(kpi.target, kpi)}"


def _status_now(h: History, chart: spc.XmR | None, kpi: Kpi) -> spc.PointClass | None:
    """The class of this period's point (None: not an XmR measure)."""
    if chart is None:
        return None
    if chart.n == 0:
        return spc.PointClass(spc.NO_DATA)
    if not chart.has_limits:
        return spc.PointClass(spc.INSUFFICIENT)
    return spc.classify(chart, kpi.direction)[h.periods.index(h.period)]


def _summary_row(h: History, kpi: Kpi, level: str, unit: str, options: PackOptions) -> dict:
    row = h.get(kpi.code, h.period, level, unit)
    pos = h.periods.index(h.period)
    prev_period = h.periods[pos - 1] if pos else None
    now, before = shown(row), shown(h.get(kpi.code, prev_period, level, unit)) if prev_period else None
    delta = None if now is None or before is None else now - before
    chart = chart_for(h, kpi, level, unit, options)
    status = _status_now(h, chart, kpi)
    return {"kpi": kpi, "cell": _cell(row, kpi), "change": fmt_change(delta, kpi), "previous": prev_period,
            "variation": _variation(status) if status else None,
            "assurance": _assurance(spc.assurance(chart, kpi.direction, kpi.target)) if chart else None,
            "target": _target_text(kpi), "basis_note": kpi.basis_note, "integrity": ig.marker(kpi.integrity)}


def _summary(h: History, options: PackOptions) -> list[dict]:
    out = []
    for level in SUMMARY_LEVELS:
        for unit in h.units[level].values():
            domains = []
            for domain, domain_title in DOMAINS.items():
                kpis = [k for k in h.kpis if k.domain == domain and h.get(k.code, h.period, level, unit["code"])]
                if kpis:
                    domains.append({"title": domain_title,
                                    "rows": [_summary_row(h, k, level, unit["code"], options) for k in kpis]})
            if domains:  # a unit no KPI reports on (e.g. a provider without activity) is left out
                out.append({"level": level, "unit": unit, "domains": domains})
    return out


def _rule_groups(chart: spc.XmR):
    """(rule, sense, point indices) for each maximal run of points one rule flags in one sense."""
    ones = np.ones_like(chart.side)
    flags = [("beyond_limit", chart.beyond_limit, chart.side), ("shift", chart.shift, chart.side),
             ("trend", chart.trend_rising, ones), ("trend", chart.trend_falling, -ones),
             ("two_of_three", chart.two_of_three, chart.side)]
    valid = np.flatnonzero(~np.isnan(chart.values))
    for rule, flag, sense in flags:
        group: list[int] = []
        for i in [*valid, None]:
            same_segment = not group or i is None or chart.segment[i] == chart.segment[group[0]]
            if i is not None and flag[i] and same_segment and (not group or sense[group[0]] == sense[i]):
                group.append(int(i))
                continue
            if group:
                yield rule, int(sense[group[0]]), group
            group = [int(i)] if i is not None and flag[i] else []


def episodes(chart: spc.XmR, classes: list[spc.PointClass], periods: list[str]) -> list[dict]:
    """Signals as readable runs: which rule, which periods, and the classes its points show.

    The classes are the points' own (``spc.classify``), so the table says what the markers
    show; a run whose points show more than one class (a higher-precedence rule decided some)
    lists each with its count."""
    out = []
    for rule, sense, group in _rule_groups(chart):
        counts: dict[tuple[str, int], int] = {}
        for i in group:
            key = (classes[i].status, classes[i].sense)
            counts[key] = counts.get(key, 0) + 1
        shown_as = [dict(_variation(spc.PointClass(s, None, d)), count=c) for (s, d), c in counts.items()]
        out.append({"rule": spc.RULE_LABELS[rule], "code": charts.RULE_CODES[rule],
                    "start": periods[group[0]], "end": periods[group[-1]], "points": len(group),
                    "where": _where(rule, sense), "variation": shown_as, "mixed": len(shown_as) > 1,
                    "indices": group})
    return sorted(out, key=lambda e: (periods.index(e["start"]), e["code"]))


def _where(rule: str, sense: int) -> str:
    if rule == "trend":
        return "rising" if sense > 0 else "falling"
    return "above the mean" if sense > 0 else "below the mean"


def _limits_text(chart: spc.XmR, kpi: Kpi) -> dict:
    def limit(raw: float, shown_: float, clipped: bool) -> str:
        return f"{fmt_value(shown_, kpi)} (computed {fmt_value(raw, kpi)}, clipped)" if clipped else fmt_value(raw, kpi)

    return {"mean": fmt_value(chart.mean, kpi),
            "lower": limit(chart.lower, chart.lower_shown, chart.lower_clipped),
            "upper": limit(chart.upper, chart.upper_shown, chart.upper_clipped),
            "clipped": chart.lower_clipped or chart.upper_clipped}


def _spc_block(h: History, kpi: Kpi, system: dict, options: PackOptions) -> dict:
    label = f"{kpi.title}, {system['name']}"
    published = h.series(kpi.code, "system", system["code"])
    if not kpi.xmr:
        svg = charts.run_chart(h.periods, published, label=f"Run chart: {label}", target=kpi.target,
                               fmt=lambda v: fmt_value(v, kpi))
        return {"svg": Markup(svg), "xmr": False, "note": kpi.basis_note, "episodes": [], "n": int(
            np.count_nonzero(~np.isnan(published))), "trial": False, "limits": None, "variation": None,
            "assurance": None, "baseline": None, "rebased": []}
    chart = chart_for(h, kpi, "system", system["code"], options)
    classes = spc.classify(chart, kpi.direction)
    svg = charts.spc_chart(h.periods, chart, classes, target=kpi.target, label=f"XmR chart: {label}",
                           fmt=lambda v: fmt_value(v, kpi), values=published)
    status = _status_now(h, chart, kpi)
    baseline = None
    if options.baseline and chart.n > options.baseline:
        valid = [h.periods[i] for i in np.flatnonzero(~np.isnan(chart.values))]
        baseline = {"n": options.baseline, "start": valid[0], "end": valid[options.baseline - 1]}
    return {"svg": Markup(svg), "xmr": True, "note": None, "episodes": episodes(chart, classes, h.periods),
            "n": chart.n, "n_basis": chart.n_basis, "trial": chart.has_limits and chart.trial_limits,
            "limits": _limits_text(chart, kpi) if chart.has_limits else None,
            "variation": _variation(status), "assurance": _assurance(spc.assurance(chart, kpi.direction,
                                                                                   kpi.target)),
            "baseline": baseline, "rebased": [h.periods[i] for i in chart.rebase_at]}


def _funnel_x(row: dict, kpi: Kpi, exact_values: bool = False) -> float | None:
    """The denominator a practice sits at; for age-standardised rates the 'derived denominator'
    (count / standardised rate), which gives the count the Poisson spread it actually has."""
    pick = (lambda c: row[f"exact_{c}"] if row.get(f"exact_{c}") is not None else row[c]) if exact_values \
        else (lambda c: row[c])
    if kpi.standardised and kpi.kind == "rate":
        num, val = pick("numerator"), pick("value")
        return num / (val / kpi.multiplier) if num and val else None
    return pick("denominator")


def _funnel_points(h: History, kpi: Kpi, practices: list[dict], centre: float | None):
    """Per practice: (row, published x, exact x, exact value), for those that can be assessed."""
    out = []
    for p in practices:
        row = h.get(kpi.code, h.period, "practice", p["code"])
        if shown(row) is None or centre is None or kpi.kind not in fn.KINDS:
            out.append((p, row, None, None, None))
            continue
        x, x_exact = _funnel_x(row, kpi), _funnel_x(row, kpi, exact_values=True)
        ok = x and x > 0 and x_exact and x_exact > 0
        out.append((p, row, x if ok else None, x_exact if ok else None, exact(row) if ok else None))
    return out


def _overdispersion(kind: str, centre: float, multiplier: float, assessed) -> float:
    return fn.overdispersion([v for *_, v in assessed], [xe for *_, xe, _ in assessed], kind, centre, multiplier)


def _practice_block(h: History, kpi: Kpi, system: dict, uid: str, options: PackOptions) -> dict:
    practices = [p for p in h.units["practice"].values() if h.system_of(p) == system["code"]]
    centre_row = h.get(kpi.code, h.period, "system", system["code"])
    centre, centre_exact = shown(centre_row), exact(centre_row)
    items = _funnel_points(h, kpi, practices, centre)
    assessed = [it for it in items if it[2] is not None]
    phi = _overdispersion(kpi.kind, centre_exact, kpi.multiplier, assessed) if len(assessed) >= 2 else float("nan")
    use_phi = phi if options.overdispersion and phi > 1 else 1.0
    statuses = dict(zip([it[0]["code"] for it in assessed],
                        fn.classify([it[4] for it in assessed], [it[3] for it in assessed], kpi.kind,
                                    centre_exact, kpi.multiplier, use_phi))) if assessed else {}
    points, rows = [], []
    for p, row, x, _, _ in items:
        status = statuses.get(p["code"], fn.NOT_ASSESSED)
        if x is not None:
            points.append(charts.FunnelPoint(p["code"], float(row["value"]), float(x), status))
        locality = h.units["locality"].get(p["parent"] or "")
        rows.append({"code": p["code"], "name": p["name"], "locality": locality["name"] if locality else "",
                     "cell": _cell(row, kpi),
                     "funnel": MISSING if status == fn.NOT_ASSESSED else fn.CLASS_LABELS[status]})
    note = None
    if kpi.kind not in fn.KINDS:
        note = f"No funnel plot: funnel limits apply to proportions and rates, not to a {kpi.kind}."
    elif centre is None:
        note = "No funnel plot: the system value for this period is missing or suppressed."
    elif not points:
        note = "No funnel plot: no practice has a value that can be shown."
    svg = None
    if note is None:
        svg = Markup(charts.funnel_chart(kpi.kind, centre, kpi.multiplier, points, uid=uid, phi=use_phi,
                                         label=f"Funnel plot: {kpi.title}, practices in {system['name']}, "
                                               f"{h.period}", fmt=lambda v: fmt_value(v, kpi)))
    outside = sum(1 for s in statuses.values() if s != fn.WITHIN)
    return {"svg": svg, "note": note, "rows": rows, "centre": fmt_value(centre, kpi),
            "derived_x": kpi.standardised and kpi.kind == "rate",
            "any_suppressed": any(r["cell"]["suppressed"] for r in rows),
            "any_no_data": any(r["cell"]["no_data"] for r in rows),
            "overdispersed": bool(statuses) and outside * 2 > len(statuses) and use_phi == 1.0,
            "outside": outside, "assessed": len(statuses),
            "phi": None if np.isnan(phi) else f"{phi:.2f}", "phi_used": use_phi > 1.0}


def _breakdowns(h: History, kpi: Kpi, system: dict) -> list[dict]:
    rows = [r for r in h.now if r["kpi"] == kpi.code and r["level"] == "system"
            and r["unit_code"] == system["code"] and r["breakdown"] != ""]
    rows.sort(key=lambda r: (r["breakdown"], r["breakdown_value"]))
    return [{"breakdown": r["breakdown"].replace("_", " "), "value": r["breakdown_value"],
             "cell": _cell(r, kpi)} for r in rows]


def _about(kpi: Kpi) -> dict:
    """What a KPI section says about the measure: framework, the three tests, note, cohorts."""
    a = kpi.integrity
    return {"framework": ig.framework_text(kpi.framework), "status": ig.status_text(a), "verdict": ig.verdict(a),
            "high": a.high_integrity, "tests": a.tests, "note": a.note, "cohorts": ig.cohort_text(kpi.cohorts)}


def _kpi_sections(h: History, options: PackOptions) -> list[dict]:
    out = []
    for k_i, kpi in enumerate(h.kpis):
        systems = []
        for s_i, system in enumerate(h.units["system"].values()):
            systems.append({"unit": system, "spc": _spc_block(h, kpi, system, options),
                            "practices": _practice_block(h, kpi, system, f"{k_i}-{s_i}", options),
                            "breakdowns": _breakdowns(h, kpi, system)})
        out.append({"kpi": kpi, "domain": DOMAINS.get(kpi.domain, kpi.domain),
                    "target": fmt_value(kpi.target, kpi) if kpi.target is not None else None,
                    "about": _about(kpi), "systems": systems})
    return out


def _as_list(v) -> list[str]:
    if v is None:
        return []
    return [str(x) for x in v] if isinstance(v, (list, tuple, set)) else [str(v)]


def disclosure_text(policies) -> str | None:
    """The disclosure rule applied, in words, from the run log's policy (JSON text or dicts)."""
    seen = []
    for p in _as_list(policies) if isinstance(policies, str) else (policies or []):
        p = json.loads(p) if isinstance(p, str) else p
        if p and p not in seen:
            seen.append(p)
    if not seen:
        return None
    return " ".join(_one_policy(p) for p in seen)


def _one_policy(p: dict) -> str:
    below, round_to = int(p.get("suppress_below") or 0), int(p.get("round_to") or 0)
    parts = []
    if below > 1:
        parts.append(f"Counts of 1\u2013{below - 1} are suppressed (*)" if below > 2 else
                     "Counts of 1 are suppressed (*)")
    if round_to > 1:
        parts.append(("others" if parts else "Counts are") + f" rounded to the nearest {round_to}")
    text = " and ".join(parts) if parts else "No counts are suppressed or rounded"
    levels = _as_list(p.get("apply_to_levels"))
    if levels:
        text += f", at {' and '.join(levels) if len(levels) < 3 else ', '.join(levels)} level"
    if below == 8 and round_to == 5:
        text += f", following {HES_RULE}"
    if p.get("source") and p["source"] != "default":
        text += f" (set by {p['source']})"
    return text + "; rates and percentages are worked out from the rounded counts."


def _header(h: History, meta: dict) -> dict:
    run_ids = _as_list(meta.get("run_ids", meta.get("run_id"))) or sorted({r["run_id"] for r in h.rows})
    snapshots = (_as_list(meta.get("snapshot_ids", meta.get("snapshot_id")))
                 or sorted({str(r["snapshot_id"]) for r in h.rows if r.get("snapshot_id")}))
    generated = meta.get("generated") or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    known = {"run_ids", "run_id", "snapshot_ids", "snapshot_id", "generated", "disclosure"}
    extra = [(str(k).replace("_", " "), str(v)) for k, v in meta.items() if k not in known]
    start = min(r["period_start"] for r in h.now)
    end = max(r["period_end"] for r in h.now)
    return {"run_ids": run_ids, "snapshots": snapshots or ["not recorded"], "generated": str(generated),
            "extra": extra, "start": start.isoformat(), "end": end.isoformat(),
            "disclosure": disclosure_text(meta.get("disclosure"))}


def _legend() -> dict:
    icons = ["common_cause", "improvement_high", "improvement_low", "concern_high", "concern_low",
             "neither_high", "neither_low"]
    return {
        "spc": [(Markup(charts.legend_marker(kind, 1)), VARIATION[kind][0])
                for kind in (spc.COMMON, spc.IMPROVEMENT, spc.CONCERN, spc.NEUTRAL_HIGH)],
        "variation_icons": [(Markup(charts.variation_icon_svg(n, 20, labelled=False)), charts.ICON_TEXT[n])
                            for n in icons],
        "assurance_icons": [(Markup(charts.assurance_icon_svg(n, 20, labelled=False)), charts.ICON_TEXT[n])
                            for n in spc.ASSURANCE_ICONS.values()],
        "rules": [(charts.RULE_CODES[r], spc.RULE_LABELS[r]) for r in spc.RULES],
        "funnel": [(Markup(charts.legend_funnel_marker(s)), label) for s, label in
                   ((fn.WITHIN, "Within the 95% limits"), (fn.ABOVE_95, "Beyond a 95% limit"),
                    (fn.ABOVE_998, "Beyond a 99.8% limit"))],
    }


def build_context(history: pa.Table, period: str, *, title: str, meta: dict | None = None,
                  options: PackOptions | None = None) -> dict:
    """Everything the template shows, as plain values (tests can inspect it without HTML)."""
    options = options or PackOptions()
    h = History(read_rows(history), period)
    check_options(h, options)
    return {"title": title, "period": period, "periods": h.periods, "header": _header(h, meta or {}),
            "summary": _summary(h, options), "kpis": _kpi_sections(h, options), "legend": _legend(),
            "integrity_line": ig.count_line([k.integrity for k in h.kpis]),
            "run_length": spc.RUN_LENGTH, "min_firm": spc.MIN_POINTS_FIRM, "options": options,
            "precedence": [spc.RULE_LABELS[r].split(":")[0].lower() for r in spc.PRECEDENCE],
            "any_rolling": any(not k.xmr for k in h.kpis)}


# ---------------------------------------------------------------- output

def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("casefind.reports", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def write_atomic(out_path: Path, text: str) -> Path:
    """Write via a temporary file in the same folder, then rename: readers never see half a pack."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    mode = out_path.stat().st_mode & 0o777 if out_path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        os.chmod(tmp, mode)  # mkstemp makes 0600; a pack is meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path


def render_pack(history: pa.Table, period: str, out_path: Path, *, title: str = "casefind KPI pack",
                meta: dict | None = None, options: PackOptions | None = None) -> Path:
    """Render the KPI pack for ``period`` to one self-contained HTML file; returns its path."""
    context = build_context(history, period, title=title, meta=meta, options=options)
    html = _environment().get_template("pack.html.j2").render(**context)
    return write_atomic(Path(out_path), html)
