"""The KPI pack as a Making Data Count user reads it: monthly values on XmR charts and rolling
ones not, MDC variation and assurance icons, one class per point shared by markers and the
signals table, limits clipped to what a measure can take, fixed and re-based baselines, 0/0 as
"no data", classes from unrounded figures, the disclosure rule stated, and the BI export."""
from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from casefind.errors import UsageError
from casefind.reports import charts, pack, pack_export, spc

PERIODS = [f"{2024 + (m + 10) // 12}-{(m + 10) % 12 + 1:02d}" for m in range(28)]  # 2024-11 .. 2027-02
NOW = PERIODS[-1]
META = {
    "admissions": dict(title="Emergency admissions per 1,000", domain="population_health", kind="rate",
                       unit_label="per 1,000 people a year", multiplier=1000.0, direction="lower_is_better",
                       target=None, basis="month"),
    "at_home": dict(title="At home 91 days after discharge", domain="process", kind="proportion",
                    unit_label="%", multiplier=100.0, direction="higher_is_better", target=95.0, basis="month"),
    "admissions_12m": dict(title="Emergency admissions, rolling year", domain="population_health", kind="rate",
                           unit_label="per 1,000 people", multiplier=1000.0, direction="lower_is_better",
                           target=None, basis="rolling_12m"),
}
PRACTICES = {"P1": 8000.0, "P2": 12000.0, "P3": 6000.0, "P4": 900.0}


def alternating(n: int, lo: float, hi: float) -> list[float]:
    return [lo if i % 2 == 0 else hi for i in range(n)]


# lower is better: a falling trend of 8 whose first point is beyond the upper limit
HIGH_POINT_IN_IMPROVING_RUN = alternating(12, 10.0, 11.0) + [30.0, 14, 12, 10, 9, 8, 7, 6] + alternating(8, 10, 11)
NEAR_100 = alternating(28, 96.0, 100.0)


def _bounds(period: str) -> tuple[dt.date, dt.date]:
    y, m = map(int, period.split("-"))
    return dt.date(y, m, 1), dt.date(y + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1)


def _row(kpi, period, level, code, parent, value, den, **kw) -> dict:
    meta = META[kpi]
    num = None if value is None else value * den / meta["multiplier"]
    start, end = _bounds(period)
    row = dict(run_id="run-1", kpi=kpi, **meta, period=period, period_start=start, period_end=end, level=level,
               unit_code=code, unit_name=f"Unit {code}", parent_code=parent, breakdown="", breakdown_value="",
               numerator=num, denominator=den, value=value, lower=None if value is None else value * 0.9,
               upper=None if value is None else value * 1.1, standardised=False, suppressed=False,
               framework=None, integrity=None, cohorts=None, exact_numerator=None, exact_denominator=None,
               exact_value=None, exact_lower=None, exact_upper=None)
    row.update(kw)
    return row


def build(system: dict[str, list[float]], practice_now: dict[str, dict[str, float]] | None = None,
          extra: list[dict] | None = None) -> pa.Table:
    rows = []
    for kpi, values in system.items():
        for period, v in zip(PERIODS, values):
            rows.append(_row(kpi, period, "system", "SYS", None, v, 26900.0))
            for code, den in PRACTICES.items():
                pv = (practice_now or {}).get(kpi, {}).get(code, v) if period == NOW else v
                rows.append(_row(kpi, period, "practice", code, "SYS", pv, den))
    return pa.Table.from_pylist(rows + (extra or []))


def _context(table, options=None, meta=None):
    return pack.build_context(table, NOW, title="t", meta=meta, options=options)


def _block(ctx, kpi):
    return next(s for s in ctx["kpis"] if s["kpi"].code == kpi)["systems"][0]


def _html(tmp_path, table, **kw) -> str:
    return pack.render_pack(table, NOW, tmp_path / "p.html", **kw).read_text(encoding="utf-8")


def _section(html: str, kpi: str) -> str:
    start = html.index(f'<section class="kpi" id="kpi-{kpi.replace("_", "-")}">')
    return html[start:html.index("</section>", start)]


# ---------------------------------------------------------------- one class per point

def test_markers_and_signals_table_agree_point_by_point(tmp_path):
    table = build({"admissions": HIGH_POINT_IN_IMPROVING_RUN})
    ctx = _context(table)
    chart = pack.chart_for(pack.History(pack.read_rows(table), NOW), ctx["kpis"][0]["kpi"], "system", "SYS",
                           pack.PackOptions())
    classes = spc.classify(chart, "lower_is_better")
    block = _block(ctx, "admissions")["spc"]
    for e in block["episodes"]:  # each row lists exactly the classes its points show
        assert sorted(v["label"] for v in e["variation"]) == sorted(
            {pack._variation(classes[i])["label"] for i in e["indices"]})
        assert sum(v["count"] for v in e["variation"]) == e["points"]
    svg = str(block["svg"])
    drawn = dict(re.findall(r'data-period="([^"]+)" data-class="([^"]+)"', svg))
    assert drawn == {PERIODS[i]: c.status for i, c in enumerate(classes)}
    # the point above the upper limit of this lower-is-better measure: concern, on the chart and in the table
    assert drawn[PERIODS[12]] == spc.CONCERN
    beyond = next(e for e in block["episodes"] if e["code"] == "L")
    assert beyond["start"] == PERIODS[12] and [v["label"] for v in beyond["variation"]] == [
        "Special cause concern (high)"]
    trend = next(e for e in block["episodes"] if e["code"] == "T")
    assert trend["mixed"] and {(v["label"], v["count"]) for v in trend["variation"]} == {
        ("Special cause concern (high)", 1), ("Special cause improvement (low)", 7)}
    html = _html(tmp_path, table)
    assert "takes its class from the first of point beyond a process limit, trend, two of three" in html


# ---------------------------------------------------------------- icons

def test_summary_and_chart_show_mdc_icons_not_met_ticks(tmp_path):
    table = build({"admissions": HIGH_POINT_IN_IMPROVING_RUN, "at_home": NEAR_100})
    html = _html(tmp_path, table)
    summary = html[html.index('id="summary"'):html.index('<section class="kpi"')]
    assert "Met" not in summary and "Missed" not in summary and "\u2713" not in summary
    assert 'data-icon="common_cause"' in summary  # admissions' latest point
    assert 'data-icon="assurance_hit_and_miss"' in summary  # 95% target inside the limits 85.4%-108.6%
    for name in ("common_cause", "improvement_high", "improvement_low", "concern_high", "concern_low",
                 "neither_high", "neither_low", "assurance_pass", "assurance_fail", "assurance_hit_and_miss"):
        assert charts.ICON_TEXT[name] in summary  # the legend names every icon
    head = _section(html, "at_home")
    assert 'class="chart-icons"' in head and 'data-icon="assurance_hit_and_miss"' in head


@pytest.mark.parametrize("name", ["concern_high", "improvement_low", "common_cause", "neither_high"])
def test_variation_icons_have_a_text_alternative(name):
    svg = charts.variation_icon_svg(name)
    assert f'role="img" aria-label="{charts.ICON_TEXT[name]}"' in svg and f"<title>{charts.ICON_TEXT[name]}" in svg
    letter = {"concern_high": ">H<", "improvement_low": ">L<", "neither_high": ">H<"}.get(name)
    assert letter is None or letter in svg
    colour = {"concern_high": "#c25e00", "improvement_low": "#1c5fa8", "common_cause": "#5f6b73",
              "neither_high": "#6a3d9a"}[name]
    assert f'stroke="{colour}"' in svg
    assert 'aria-hidden="true"' in charts.variation_icon_svg(name, labelled=False)


@pytest.mark.parametrize("name, letter, colour", [("assurance_pass", "P", "#1c5fa8"),
                                                  ("assurance_fail", "F", "#c25e00"),
                                                  ("assurance_hit_and_miss", "?", "#5f6b73")])
def test_assurance_icons(name, letter, colour):
    svg = charts.assurance_icon_svg(name)
    assert f">{letter}</text>" in svg and f'stroke="{colour}"' in svg and charts.ICON_TEXT[name] in svg


# ---------------------------------------------------------------- rolling figures are never XmR

def test_rolling_measures_are_run_charts_with_a_note(tmp_path):
    table = build({"admissions": HIGH_POINT_IN_IMPROVING_RUN, "admissions_12m": list(np.linspace(90, 70, 28))})
    html = _html(tmp_path, table)
    section = _section(html, "admissions_12m")
    assert 'aria-label="Run chart' in section and 'aria-label="XmR chart' not in section
    assert "Not an XmR chart: this is a rolling 12-month figure" in section
    assert "share 11 of their 12 months" in section and "Median" in section
    assert "<caption>Signals</caption>" not in section and 'class="limit"' not in section
    row = re.search(r'<tr data-kpi="admissions_12m" data-unit="SYS">.*?</tr>', html, re.S).group(0)
    assert "run chart †" in row and "data-icon" not in row
    # a steady fall would be all 'special cause' on an XmR chart; the export says it is not charted so
    rows = [r for r in pack_export.pack_rows(table, NOW).to_pylist() if r["kpi"] == "admissions_12m"]
    assert {r["chart"] for r in rows} == {"run"} and {r["variation"] for r in rows} == {None}
    assert "Rolling 12-month and point-in-time figures are shown as run charts, never as XmR" in html


def test_a_history_without_basis_is_charted_as_before(tmp_path):
    table = build({"admissions": HIGH_POINT_IN_IMPROVING_RUN}).drop(["basis", "framework", "integrity", "cohorts",
                                                                      "exact_numerator", "exact_denominator",
                                                                      "exact_value", "exact_lower", "exact_upper"])
    html = _html(tmp_path, table)
    assert 'aria-label="XmR chart' in _section(html, "admissions")


# ---------------------------------------------------------------- clipped limits

def test_limits_are_clipped_to_what_a_percentage_can_take(tmp_path):
    table = build({"at_home": NEAR_100})
    spc_block = _block(_context(table), "at_home")["spc"]
    assert spc_block["limits"]["upper"] == "100.0% (computed 108.6%, clipped)"
    assert spc_block["limits"]["lower"] == "87.4%"
    svg = str(spc_block["svg"])
    assert 'class="clipped"' in svg and "Upper limit (clipped)" in svg
    html = _html(tmp_path, table)
    assert "drawn dotted at that bound (clipped)" in _section(html, "at_home")
    now = next(r for r in pack_export.pack_rows(table, NOW).to_pylist()
               if r["kpi"] == "at_home" and r["level"] == "system" and r["period"] == NOW)
    assert now["spc_upper"] == 100.0 and now["spc_upper_clipped"] and now["spc_upper_computed"] == pytest.approx(108.64)
    assert not now["spc_lower_clipped"] and now["spc_lower"] == pytest.approx(87.36)


def test_a_count_near_zero_is_clipped_at_zero():
    table = build({"admissions": alternating(28, 0.0, 3.0)})
    limits = _block(_context(table), "admissions")["spc"]["limits"]
    assert limits["lower"] == "0.0 (computed -6.5, clipped)"  # never "-8 admissions"


# ---------------------------------------------------------------- fixed and re-based baselines

def test_fixed_baseline_and_rebase_options(tmp_path):
    values = alternating(12, 10.0, 11.0) + alternating(16, 20.0, 22.0)
    table = build({"admissions": values})
    fixed = _block(_context(table, pack.PackOptions(baseline=12)), "admissions")["spc"]
    assert fixed["baseline"] == {"n": 12, "start": PERIODS[0], "end": PERIODS[11]}
    assert fixed["limits"]["mean"] == "10.5" and fixed["variation"]["icon_name"] == "concern_high"
    rebased = _block(_context(table, pack.PackOptions(rebase=(("admissions", PERIODS[12]),))), "admissions")["spc"]
    assert rebased["rebased"] == [PERIODS[12]] and rebased["limits"]["mean"] == "21.0"
    assert rebased["variation"]["icon_name"] == "common_cause" and "re-based" in str(rebased["svg"])
    html = _html(tmp_path, table, options=pack.PackOptions(baseline=12))
    assert f"Limits fixed from the baseline {PERIODS[0]} to {PERIODS[11]} (12 points), then held." in html


@pytest.mark.parametrize("rebase, message", [
    ((("nope", "2025-06"),), "no KPI 'nope'"),
    ((("admissions", "2030-01"),), "re-base at a period after the first"),
    ((("admissions", PERIODS[0]),), "re-base at a period after the first"),
])
def test_bad_rebase_is_a_usage_error(rebase, message):
    with pytest.raises(UsageError, match=message) as e:
        _context(build({"admissions": HIGH_POINT_IN_IMPROVING_RUN}), pack.PackOptions(rebase=rebase))
    assert e.value.option == "--rebase"


# ---------------------------------------------------------------- 0/0, unrounded figures, disclosure

def test_zero_over_zero_is_no_data_not_suppressed(tmp_path):
    empty = _row("at_home", NOW, "practice", "P5", "SYS", None, 0.0, numerator=0.0, suppressed=True)
    table = build({"at_home": NEAR_100}, extra=[empty])
    html = _html(tmp_path, table)
    row = re.search(r'<tr data-kpi="at_home" data-unit="P5".*?</tr>', html, re.S).group(0)
    cells = re.findall(r'<td class="num value">([^<]*)</td>', row)
    assert cells == ["no data"] and 'class="suppressed"' not in row
    assert "nobody in the denominator this period (0/0)" in html
    exported = [r for r in pack_export.pack_rows(table, NOW).to_pylist() if r["unit_code"] == "P5"]
    assert exported[0]["no_data"] and exported[0]["value"] is None


def test_classes_come_from_unrounded_figures_but_only_published_ones_are_shown(tmp_path):
    # published (rounded) values are flat; the unrounded ones end in a run of 7 above the mean
    exact = alternating(21, 10.1, 10.3) + [10.42, 10.44, 10.41, 10.43, 10.42, 10.44, 10.43]
    rows = []
    for period, v in zip(PERIODS, exact):
        rows.append(_row("admissions", period, "system", "SYS", None, 10.0, 26900.0, exact_value=v))
        rows.append(_row("admissions", period, "practice", "P1", "SYS", 10.0, 8000.0, exact_value=v))
    table = pa.Table.from_pylist(rows)
    block = _block(_context(table), "admissions")["spc"]
    assert block["variation"]["icon_name"] == "concern_high"  # from the unrounded run
    assert re.findall(r'<title>[^<]*: ([^<(]*)', str(block["svg"]))[-1].strip() == "10.0"  # plotted as published
    html = _html(tmp_path, table)
    assert "10.43" not in html and "10.4</td>" not in html
    assert "exact" not in ",".join(pack_export.pack_rows(table, NOW).column_names)


def test_funnel_classes_use_unrounded_counts():
    # published: P4 at 20.0% (rounded counts); unrounded 35% of 180 people: above the 99.8% limit
    table = build({"at_home": NEAR_100})
    rows = table.to_pylist()
    for r in rows:
        if r["period"] == NOW and r["kpi"] == "at_home":
            r.update(value=20.0, exact_value=20.0, numerator=r["denominator"] * 0.2)
            if r["unit_code"] == "P4":
                r.update(exact_value=35.0, exact_numerator=r["denominator"] * 0.35, exact_denominator=r["denominator"])
    block = _block(_context(pa.Table.from_pylist(rows)), "at_home")["practices"]
    funnel = {r["code"]: r["funnel"] for r in block["rows"]}
    assert funnel["P4"] == "Above 99.8% limit" and funnel["P1"] == "Within 95% limits"
    assert {r["code"]: r["cell"]["value"] for r in block["rows"]}["P4"] == "20.0%"


HES = {"suppress_below": 8, "round_to": 5, "apply_to_levels": ["practice", "locality"], "source": "casefind.toml"}


def test_disclosure_rule_is_stated(tmp_path):
    assert pack.disclosure_text([json.dumps(HES)]) == (
        "Counts of 1\u20137 are suppressed (*) and others rounded to the nearest 5, at practice and locality level, "
        "following NHS England's HES/ECDS disclosure control methodology (set by casefind.toml); rates and "
        "percentages are worked out from the rounded counts.")
    assert pack.disclosure_text([{"suppress_below": 0, "round_to": 10}]) == (
        "Counts are rounded to the nearest 10; rates and percentages are worked out from the rounded counts.")
    assert pack.disclosure_text([{"suppress_below": 1, "round_to": 1}]).startswith("No counts are suppressed")
    assert pack.disclosure_text([]) is None and pack.disclosure_text(None) is None
    html = _html(tmp_path, build({"at_home": NEAR_100}), meta={"disclosure": [json.dumps(HES), json.dumps(HES)]})
    assert html.count("Counts of 1\u20137 are suppressed (*)") == 2  # header and notes, the policy once each
    assert "not recorded in the run log" in _html(tmp_path, build({"at_home": NEAR_100}))


# ---------------------------------------------------------------- funnel overdispersion

def test_overdispersion_note_and_option():
    spread = {"P1": 70.0, "P2": 99.0, "P3": 80.0, "P4": 96.0}  # most practices far from the system's 98%
    table = build({"at_home": alternating(28, 97.0, 99.0)}, practice_now={"at_home": spread})
    plain = _block(_context(table), "at_home")["practices"]
    assert plain["overdispersed"] and plain["outside"] >= 3 and plain["phi"] is not None
    assert float(plain["phi"]) > 1
    wide = _block(_context(table, pack.PackOptions(overdispersion=True)), "at_home")["practices"]
    assert wide["phi_used"] and not wide["overdispersed"] and wide["outside"] < plain["outside"]


# ---------------------------------------------------------------- provider and service levels

def test_provider_and_service_rows_are_summarised_when_present(tmp_path):
    extra = [_row("admissions", p, "provider", "RX1", "SYS", v, 5000.0) for p, v in
             zip(PERIODS, HIGH_POINT_IN_IMPROVING_RUN)]
    extra += [_row("admissions", NOW, "service", "RX1/ae", "RX1", 12.0, 5000.0)]
    html = _html(tmp_path, build({"admissions": HIGH_POINT_IN_IMPROVING_RUN}, extra=extra))
    assert '<tr data-kpi="admissions" data-unit="RX1">' in html and "(provider RX1)" in html
    assert '<tr data-kpi="admissions" data-unit="RX1/ae">' in html and "(service RX1/ae)" in html


# ---------------------------------------------------------------- the export for BI tools

def test_export_carries_the_spc_columns_per_unit_and_period(tmp_path):
    table = build({"admissions": HIGH_POINT_IN_IMPROVING_RUN, "at_home": NEAR_100,
                   "admissions_12m": list(np.linspace(90, 70, 28))})
    out = tmp_path / "pack.csv"
    n = pack_export.export_pack(table, NOW, out)
    got = pacsv.read_csv(out)
    assert got.num_rows == n == 3 * 5 * 28  # 3 KPIs x (system + 4 practices) x 28 periods
    assert got.column_names == pack_export.EXPORT_SCHEMA.names
    for column in ("spc_mean", "spc_lower", "spc_upper", "spc_lower_clipped", "spc_upper_clipped",
                   "variation", "variation_icon", "assurance", "assurance_icon"):
        assert column in got.column_names
    rows = [r for r in got.to_pylist() if r["kpi"] == "admissions" and r["level"] == "system"]
    chart = spc.xmr(HIGH_POINT_IN_IMPROVING_RUN, bounds=(0.0, None))
    assert rows[12]["spc_mean"] == pytest.approx(chart.mean) and rows[12]["spc_upper"] == pytest.approx(chart.upper)
    assert [r["variation_icon"] for r in rows] == [c.icon for c in spc.classify(chart, "lower_is_better")]
    assert rows[12]["variation_icon"] == "concern_high" and rows[12]["spc_rules"] == "beyond_limit,trend"
    at_home = [r for r in got.to_pylist() if r["kpi"] == "at_home" and r["level"] == "system"]
    assert {r["assurance_icon"] for r in at_home} == {"assurance_hit_and_miss"}
    assert pack_export.export_pack(table, NOW, tmp_path / "pack.parquet") == n
    with pytest.raises(UsageError, match=r"write \.csv or \.parquet"):
        pack_export.export_pack(table, NOW, tmp_path / "pack.xlsx")
    with pytest.raises(UsageError, match="does not exist"):
        pack_export.export_pack(table, NOW, tmp_path / "nope" / "pack.csv")


def test_export_rows_without_limits_say_why():
    table = build({"admissions": [5.0] + [float("nan")] * 27})
    rows = [r for r in pack_export.pack_rows(table, NOW).to_pylist() if r["level"] == "system"]
    assert rows[0]["variation"] == spc.INSUFFICIENT and rows[0]["spc_mean"] is None
    assert rows[1]["variation"] == spc.NO_DATA
