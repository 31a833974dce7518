"""The KPI pack: one self-contained HTML file whose numbers are the history table's."""
from __future__ import annotations

import datetime as dt
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pytest

from casefind.reports import pack

PERIODS = [f"{y}-{m:02d}" for y, m in [(2025, m) for m in range(9, 13)] + [(2026, m) for m in range(1, 11)]]
PACK_PERIOD = "2026-10"
LOCALITIES = {"L1": "North locality", "L2": "South locality"}
PRACTICES = {"P1": ("Abbey Surgery", "L1", 8000), "P2": ("Bridge Practice", "L1", 12000),
             "P3": ("Castle Medical", "L2", 6000), "P4": ("Dale Health Centre", "L2", 900)}
KPIS = {
    "emergency_admissions_per_1000": dict(
        title="Emergency admissions per 1,000", domain="population_health", kind="rate",
        unit_label="per 1,000 person-years", multiplier=1000.0, direction="lower_is_better", target=None),
    "flu_vaccination_uptake": dict(
        title="Flu vaccination uptake (65+)", domain="process", kind="proportion", unit_label="%",
        multiplier=100.0, direction="higher_is_better", target=75.0),
    "cost_per_head": dict(
        title="Secondary care cost per head", domain="cost", kind="mean", unit_label="£ per head",
        multiplier=1.0, direction="lower_is_better", target=None),
}
SCHEMA = pa.schema([
    ("run_id", pa.string()), ("kpi", pa.string()), ("title", pa.string()), ("domain", pa.string()),
    ("kind", pa.string()), ("unit_label", pa.string()), ("multiplier", pa.float64()),
    ("direction", pa.string()), ("target", pa.float64()), ("period", pa.string()),
    ("period_start", pa.date32()), ("period_end", pa.date32()), ("level", pa.string()),
    ("unit_code", pa.string()), ("unit_name", pa.string()), ("parent_code", pa.string()),
    ("breakdown", pa.string()), ("breakdown_value", pa.string()), ("numerator", pa.float64()),
    ("denominator", pa.float64()), ("value", pa.float64()), ("lower", pa.float64()),
    ("upper", pa.float64()), ("standardised", pa.bool_()), ("suppressed", pa.bool_()),
])


def _bounds(period: str) -> tuple[dt.date, dt.date]:
    y, m = map(int, period.split("-"))
    start = dt.date(y, m, 1)
    end = (dt.date(y + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1))
    return start, end


def _row(kpi: str, period: str, level: str, code: str, name: str, parent: str | None,
         num: float | None, den: float | None, *, breakdown: str = "", group: str = "",
         suppressed: bool = False, value: float | None = None) -> dict:
    meta = KPIS[kpi]
    if value is None and num is not None and den:
        value = num / den * meta["multiplier"]
    lower = upper = None
    if value is not None:
        lower, upper = value * 0.9, value * 1.1
    # suppressed rows keep their numbers here, as a careless producer might: the pack must hide them
    start, end = _bounds(period)
    return dict(run_id="run-abc123", kpi=kpi, **meta, period=period, period_start=start, period_end=end,
                level=level, unit_code=code, unit_name=name, parent_code=parent, breakdown=breakdown,
                breakdown_value=group, numerator=num, denominator=den, value=value, lower=lower,
                upper=upper, standardised=False, suppressed=suppressed)


def _practice_counts(kpi: str, t: int, code: str, den: float) -> tuple[float | None, float]:
    """Per-practice numerators; admissions drop after month 7 (the constructed shift)."""
    wiggle = (t % 3 - 1) * 0.02
    if kpi == "emergency_admissions_per_1000":
        rate = (0.100 if t < 7 else 0.080) * (1 + wiggle) * (1.6 if code == "P3" else 1.0) / 12
        return round(rate * den), den
    if kpi == "flu_vaccination_uptake":
        pop = den * 0.2
        return round(pop * (0.74 + 0.01 * (t % 4))), pop
    return None, den


def build_history() -> pa.Table:
    rows = []
    for kpi in KPIS:
        for t, period in enumerate(PERIODS):
            totals = {"SYS": [0.0, 0.0], "L1": [0.0, 0.0], "L2": [0.0, 0.0]}
            for code, (name, loc, den) in PRACTICES.items():
                if kpi == "cost_per_head":
                    value = 1180.0 + 37.5 * (t % 4) + int(code[1]) * 11.25
                    rows.append(_row(kpi, period, "practice", code, name, loc, value * den, den, value=value))
                    totals["SYS"][0] += value * den
                    totals[loc][0] += value * den
                else:
                    num, d = _practice_counts(kpi, t, code, den)
                    small = kpi == "flu_vaccination_uptake" and code == "P4" and t >= 12
                    rows.append(_row(kpi, period, "practice", code, name, loc, num, d, suppressed=small))
                    totals["SYS"][0] += num
                    totals[loc][0] += num
                    den = d
                totals["SYS"][1] += den
                totals[loc][1] += den
            for loc, name in LOCALITIES.items():
                num, den = totals[loc]
                value = num / den if kpi == "cost_per_head" else None
                rows.append(_row(kpi, period, "locality", loc, name, "SYS", num, den, value=value))
            num, den = totals["SYS"]
            value = num / den if kpi == "cost_per_head" else None
            system_suppressed = kpi == "flu_vaccination_uptake" and period == "2026-03"
            rows.append(_row(kpi, period, "system", "SYS", "Riverside system", None, num, den, value=value,
                             suppressed=system_suppressed))
            if kpi == "emergency_admissions_per_1000" and period == PACK_PERIOD:
                for sex, share in (("F", 0.45), ("M", 0.55)):
                    rows.append(_row(kpi, period, "system", "SYS", "Riverside system", None,
                                     round(num * share), den / 2, breakdown="sex", group=sex))
    # a later period that the pack must leave out
    rows.append(_row("emergency_admissions_per_1000", "2026-11", "system", "SYS", "Riverside system",
                     None, 99999, 27000))
    return pa.Table.from_pylist(rows, schema=SCHEMA)


class _Rows(HTMLParser):
    """Cell texts of every <tr data-kpi data-unit> row, keyed (kpi, unit, table index)."""

    def __init__(self):
        super().__init__()
        self.rows: dict[tuple[str, str], list[list[str]]] = {}
        self._cells: list[str] | None = None
        self._key = None
        self._text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-unit" in a:
            self._key, self._cells = (a["data-kpi"], a["data-unit"]), []
        elif tag in ("td", "th") and self._cells is not None:
            self._text = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._text is not None:
            self._cells.append(re.sub(r"\s+", " ", "".join(self._text)).strip())
            self._text = None
        elif tag == "tr" and self._cells is not None:
            self.rows.setdefault(self._key, []).append(self._cells)
            self._cells = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


@pytest.fixture(scope="module")
def history() -> pa.Table:
    return build_history()


@pytest.fixture(scope="module")
def rendered(history, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("pack") / "pack.html"
    path = pack.render_pack(history, PACK_PERIOD, out, meta={"snapshot_id": "snap-2026-11-02",
                                                             "generated": "2026-11-03 09:00 UTC"})
    return path, path.read_text(encoding="utf-8")


def _section(html: str, kpi: str) -> str:
    anchor = "kpi-" + kpi.replace("_", "-")
    start = html.index(f'<section class="kpi" id="{anchor}">')
    return html[start:html.index("</section>", start)]


def _svgs(text: str) -> list[str]:
    return re.findall(r'<svg class="chart".*?</svg>', text, flags=re.S)


def test_pack_is_self_contained(rendered):
    path, html = rendered
    assert path.name == "pack.html"
    assert html.startswith("<!DOCTYPE html>")
    lowered = html.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert "http:" not in lowered and "https:" not in lowered
    assert "<script" not in lowered and "<link" not in lowered and "<img" not in lowered
    assert not re.search(r"\bsrc\s*=", lowered) and "@import" not in lowered and "url(http" not in lowered
    assert "@media print" in html
    # print layout: a chart (with its KPI heading) never splits across pages, and KPIs are not
    # each forced onto a new page, so two charts share a page where they fit
    assert ".chart-block { break-inside: avoid; page-break-inside: avoid; }" in html
    assert "page-break-before: always" not in html


def test_header_names_period_run_and_snapshot(rendered):
    _, html = rendered
    assert "<title>casefind KPI pack – 2026-10</title>" in html
    assert "run-abc123" in html and "snap-2026-11-02" in html and "2026-11-03 09:00 UTC" in html
    assert "2026-11" not in html.replace("2026-11-02", "").replace("2026-11-03", "")  # later period left out


def test_every_kpi_has_its_title_and_charts(rendered):
    _, html = rendered
    for kpi, meta in KPIS.items():
        section = _section(html, kpi)
        assert meta["title"] in section
        charts = _svgs(section)
        expected = 1 if meta["kind"] == "mean" else 2  # no funnel for a mean
        assert len(charts) == expected, kpi
        assert 'aria-label="XmR chart' in charts[0]
        assert all(c.count("<svg") == 1 for c in charts)
    assert "No funnel plot: funnel limits apply to proportions and rates, not to a mean." in html
    ids = re.findall(r'id="(clip-[^"]+)"', html)
    assert len(ids) == len(set(ids)) == 2


def test_constructed_shift_is_signalled(rendered):
    _, html = rendered
    section = _section(html, "emergency_admissions_per_1000")
    assert "Shift: 7 or more points in a row above or below the mean" in section
    signals = section[section.index("<caption>Signals</caption>"):]
    signals = signals[:signals.index("</table>")]
    # admissions fell after month 7: lower is better, so the later run is an improvement
    assert re.search(r"Shift.*?below the mean.*?2026-04 to 2026-10.*?Special cause improvement", signals, re.S)
    assert re.search(r"Shift.*?above the mean.*?2025-09 to 2026-03.*?Special cause concern", signals, re.S)
    spc_svg = _svgs(section)[0]
    assert len(re.findall(r'class="code">[L2T]*S[L2T]*</text>', spc_svg)) == 14  # every point of both runs
    summary = _Rows()
    summary.feed(html)
    system_row = summary.rows[("emergency_admissions_per_1000", "SYS")][0]
    assert "Special cause improvement" in system_row[4]


def test_suppressed_cells_are_stars_and_never_plotted(history, rendered):
    _, html = rendered
    section = _section(html, "flu_vaccination_uptake")
    parsed = _Rows()
    parsed.feed(section)
    p4 = parsed.rows[("flu_vaccination_uptake", "P4")][0]
    assert p4[2:5] == ["*", "*", "*"]  # value, CI, numerator
    hidden = next(r for r in history.to_pylist() if r["kpi"] == "flu_vaccination_uptake"
                  and r["unit_code"] == "P4" and r["period"] == PACK_PERIOD)
    assert hidden["suppressed"] and hidden["value"] is not None
    assert f'{hidden["value"]:.1f}%' not in " ".join(p4)
    assert "* Suppressed" in section
    spc_svg, funnel_svg = _svgs(section)
    assert 'data-unit="P4"' not in funnel_svg and 'data-unit="P1"' in funnel_svg
    assert 'data-period="2026-03"' not in spc_svg and 'data-period="2026-02"' in spc_svg
    assert 'class="supp">*</text>' in spc_svg


def _expected(kpi: str, row: dict) -> list[str]:
    if kpi == "flu_vaccination_uptake":
        f = lambda v: f"{v:.1f}%"  # noqa: E731
    elif kpi == "cost_per_head":
        f = lambda v: f"£{v:,.2f}"  # noqa: E731
    else:
        f = lambda v: f"{v:,.1f}"  # noqa: E731
    numerator = f"{row['numerator']:,.0f}"
    return [f(row["value"]), f"{f(row['lower'])}–{f(row['upper'])}",
            "£" + numerator if kpi == "cost_per_head" else numerator, f"{row['denominator']:,.0f}"]


def test_practice_values_match_the_history(history, rendered):
    _, html = rendered
    parsed = _Rows()
    parsed.feed(html)
    now = [r for r in history.to_pylist() if r["period"] == PACK_PERIOD and r["level"] == "practice"]
    checked = 0
    for r in now:
        if r["suppressed"]:
            continue
        cells = parsed.rows[(r["kpi"], r["unit_code"])][0]
        assert cells[0].startswith(r["unit_name"])
        assert cells[2:6] == _expected(r["kpi"], r), (r["kpi"], r["unit_code"])
        checked += 1
    assert checked == 11  # 3 KPIs x 4 practices, less P4's suppressed flu uptake
    assert "£1,2" in html  # money has thousands separators


def test_summary_shows_target_and_change(history, rendered):
    _, html = rendered
    parsed = _Rows()
    parsed.feed(html)
    rows = {(r["kpi"], r["unit_code"], r["period"]): r for r in history.to_pylist() if r["breakdown"] == ""}
    flu = parsed.rows[("flu_vaccination_uptake", "SYS")][0]
    now, before = rows[("flu_vaccination_uptake", "SYS", "2026-10")], rows[("flu_vaccination_uptake", "SYS", "2026-09")]
    assert flu[1] == f"{now['value']:.1f}%"
    delta = now["value"] - before["value"]
    assert flu[3].startswith(("+" if delta > 0 else "\u2212") + f"{abs(delta):.1f} pp")
    # MDC assurance replaces "Met": uptake wanders 74-77% around its 75% target, so the target
    # lies between the process limits
    assert "Hit and miss (target ≥ 75.0%)" in flu[5]
    assert "target ≥ 75.0%" in flu[5]
    locality = parsed.rows[("cost_per_head", "L2")][0]
    assert locality[1] == f"£{rows[('cost_per_head', 'L2', '2026-10')]['value']:,.2f}"
    assert "no target" in locality[5]


def test_breakdown_table_for_the_system(rendered):
    _, html = rendered
    section = _section(html, "emergency_admissions_per_1000")
    assert "by breakdown" in section and ">sex<" in section and ">F<" in section and ">M<" in section


def test_written_atomically(history, tmp_path, monkeypatch):
    out = tmp_path / "packs" / "kpi.html"
    real_replace = os.replace
    calls = []

    def spy(src, dst):
        src, dst = Path(src), Path(dst)
        calls.append((src, dst))
        assert src.parent == dst.parent and src != dst
        assert not dst.exists()  # nothing at the final name until the rename
        assert src.read_text(encoding="utf-8").rstrip().endswith("</html>")  # complete before rename
        real_replace(src, dst)

    monkeypatch.setattr(pack.os, "replace", spy)
    assert pack.render_pack(history, PACK_PERIOD, out) == out
    assert len(calls) == 1 and calls[0][1] == out
    assert [p.name for p in out.parent.iterdir()] == ["kpi.html"]


def test_failed_write_leaves_the_old_file_and_no_temp(history, tmp_path, monkeypatch):
    out = tmp_path / "kpi.html"
    out.write_text("old pack", encoding="utf-8")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(pack.os, "fsync", boom)
    with pytest.raises(OSError):
        pack.render_pack(history, PACK_PERIOD, out)
    assert out.read_text(encoding="utf-8") == "old pack"
    assert [p.name for p in tmp_path.iterdir()] == ["kpi.html"]


def test_unknown_period_and_missing_columns_are_errors(history, tmp_path):
    with pytest.raises(ValueError, match="not in history"):
        pack.render_pack(history, "2030-01", tmp_path / "x.html")
    with pytest.raises(ValueError, match="missing columns: suppressed"):
        pack.render_pack(history.drop(["suppressed"]), PACK_PERIOD, tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()
