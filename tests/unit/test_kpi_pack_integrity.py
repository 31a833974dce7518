"""The KPI pack states each KPI's integrity assessment, source framework and cohorts (issue 13
item 6): the three tests as the history records them, high integrity only when all three pass,
"not assessed" for a user's file without an assessment, "not recorded" for histories written
before the columns, the count of high-integrity measures at the top, and the export's columns.

The definition tested (src/casefind/kpis/measure_meta.py, after the sources): "The sources judged
only 18% of the measures of five national outcomes frameworks "high integrity": measurable (the
data define it), reportable (it can be published at the level used) and influenced by
integrated care."
"""
from __future__ import annotations

import datetime as dt
import json
import re

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from casefind.reports import integrity as ig
from casefind.reports import pack, pack_export

PERIODS = ["2026-08", "2026-09", "2026-10"]
NOW = PERIODS[-1]
SOURCES = "(the sources judged 18% of the measures in five national outcomes frameworks high integrity)"


def _tests(measurable: bool, reportable: bool, influenced: bool, note: str = "") -> str:
    return json.dumps({"measurable": measurable, "reportable": reportable, "influenced": influenced,
                       "high_integrity": measurable and reportable and influenced, "note": note})


# what kpis/compute.py writes: framework text, integrity JSON, cohorts comma-separated
KPIS = {
    "admissions": dict(title="Emergency admissions", framework="NHS Outcomes Framework 2.3.i",
                       integrity=_tests(True, True, True, "counted from hospital spells"), cohorts="all"),
    "care_homes": dict(title="Care home admissions", framework="ASCOF 2A(2)",
                       integrity=_tests(True, False, True, "a handful a year per practice"),
                       cohorts="frailty,people aged 65+,long_term_conditions"),
    "own_measure": dict(title="A user's own measure", framework="",
                        integrity=json.dumps({"assessed": False, "note": "not assessed"}), cohorts=""),
}


def _row(kpi: str, period: str, level: str, code: str, parent: str | None, value: float, **about) -> dict:
    y, m = map(int, period.split("-"))
    start, end = dt.date(y, m, 1), dt.date(y + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1)
    row = dict(run_id="run-1", kpi=kpi, title=KPIS[kpi]["title"], domain="population_health", kind="rate",
               unit_label="per 1,000", multiplier=1000.0, direction="lower_is_better", target=None,
               period=period, period_start=start, period_end=end, level=level, unit_code=code,
               unit_name=f"Unit {code}", parent_code=parent, breakdown="", breakdown_value="",
               numerator=value * 8, denominator=8000.0, value=value, lower=value * 0.9, upper=value * 1.1,
               standardised=False, suppressed=False, basis="month")
    row.update({k: v for k, v in KPIS[kpi].items() if k != "title"}, **about)
    return row


def history(**about) -> pa.Table:
    """Every KPI for a system and one practice; ``about`` overrides framework/integrity/cohorts."""
    rows = [_row(kpi, p, level, code, parent, 10.0 + i, **about) for kpi in KPIS for i, p in enumerate(PERIODS)
            for level, code, parent in (("system", "SYS", None), ("practice", "P1", "SYS"))]
    return pa.Table.from_pylist(rows)


def _html(tmp_path, table) -> str:
    return pack.render_pack(table, NOW, tmp_path / "p.html").read_text(encoding="utf-8")


def _about_block(html: str, kpi: str) -> str:
    start = html.index(f'<section class="kpi" id="kpi-{kpi.replace("_", "-")}">')
    return html[html.index('<dl class="about">', start):html.index("</dl>", start)]


def _summary_cell(html: str, kpi: str) -> str:
    return re.search(rf'<tr data-kpi="{kpi}" data-unit="SYS">\s*<th scope="row">(.*?)</th>', html, re.S).group(1)


def _tests_shown(block: str) -> dict[str, str]:
    return dict(re.findall(r'<li data-test="(\w+)"[^>]*>.*?: <b>(yes|no)</b></li>', block))


# ---------------------------------------------------------------- the three tests, stated

@pytest.mark.parametrize("kpi, shown, verdict", [
    ("admissions", {"measurable": "yes", "reportable": "yes", "influenced": "yes"},
     "high integrity: meets all three tests"),
    ("care_homes", {"measurable": "yes", "reportable": "no", "influenced": "yes"},
     "not high integrity: 2 of 3 tests met (not reportable)"),
])
def test_each_kpi_section_states_the_three_tests(tmp_path, kpi, shown, verdict):
    html = _html(tmp_path, history())
    block = _about_block(html, kpi)
    assert _tests_shown(block) == shown
    assert f'title="{verdict}"' in block
    text = " ".join(re.sub(r"<[^>]+>", "", block).split())
    assert "measurable: yes" in text and "influenced by integrated care: yes" in text
    assert ("high integrity:" if kpi == "admissions" else "not high integrity:") in text
    assert '<li data-test="measurable" title="the data define it">' in block
    assert '<li data-test="reportable" title="it can be published at the level used">' in block
    # the tests stated in words once, in the notes on methods
    assert ("the three tests of a high-integrity measure: measurable (the data define it), reportable (it can be\n"
            "  published at the level used) and influenced by integrated care") in html


def test_the_note_framework_and_cohorts_are_shown(tmp_path):
    html = _html(tmp_path, history())
    care = _about_block(html, "care_homes")
    assert '<span class="integ-note">\u2013 a handful a year per practice</span>' in care
    assert '<dd class="framework">ASCOF 2A(2)</dd>' in care
    assert '<dd class="cohorts">frailty; people aged 65+; long term conditions</dd>' in care
    assert '<dd class="cohorts">the whole population</dd>' in _about_block(html, "admissions")
    # the framework moved from the meta line into the block: stated once per KPI section
    assert html.count("ASCOF 2A(2)") == 1


def test_a_measure_without_an_assessment_says_not_assessed(tmp_path):
    html = _html(tmp_path, history())
    own = _about_block(html, "own_measure")
    assert '<dd class="integrity"><span class="na">not assessed</span></dd>' in own
    assert "data-test" not in own and "high integrity" not in own
    assert '<dd class="framework">not stated</dd>' in own and '<dd class="cohorts">not stated</dd>' in own
    assert '<span class="sr-only">integrity not assessed</span>' in _summary_cell(html, "own_measure")


# ---------------------------------------------------------------- the summary

def test_summary_counts_and_marks_high_integrity_measures(tmp_path):
    html = _html(tmp_path, history())
    assert (f"1 of 3 measures meet all three integrity tests {SOURCES}; 1 is not assessed or not recorded."
            in html)
    high, partial = _summary_cell(html, "admissions"), _summary_cell(html, "care_homes")
    # a glyph hidden from screen readers, the words it stands for as its text alternative, the verdict as a tooltip
    assert ('<span class="integ-mark integ-high" title="high integrity: meets all three tests"><span class="glyph" '
            'aria-hidden="true">\u25c6</span><span class="sr-only">high integrity</span></span>') in high
    assert '<span class="sr-only">2 of 3 integrity tests met</span>' in partial and "integ-high" not in partial
    assert 'title="not high integrity: 2 of 3 tests met (not reportable)"' in partial
    assert "\u25c6</span></span> high integrity,\nit passes all three tests" in html  # the key


@pytest.mark.parametrize("assessments, line", [
    ([ig.assessment(KPIS["admissions"]["integrity"])] * 2,
     f"2 of 2 measures meet all three integrity tests {SOURCES}."),
    ([ig.assessment(KPIS["care_homes"]["integrity"])], f"0 of 1 measure meets all three integrity tests {SOURCES}."),
    ([ig.assessment(None), ig.assessment(KPIS["admissions"]["integrity"]), ig.assessment("{}"),
      ig.assessment(KPIS["own_measure"]["integrity"])],
     f"1 of 4 measures meet all three integrity tests {SOURCES}; 3 are not assessed or not recorded."),
    ([ig.assessment(None)] * 3, f"Integrity is not recorded in this history for any of the 3 measures {SOURCES}."),
])
def test_count_line(assessments, line):
    assert ig.count_line(assessments) == line


# ---------------------------------------------------------------- histories from before the columns

@pytest.mark.parametrize("make", [
    lambda: history().drop(["framework", "integrity", "cohorts"]),  # written before the columns
    lambda: history(framework=None, integrity=None, cohorts=None),  # columns added, old rows null
], ids=["columns absent", "nulls"])
def test_an_old_history_renders_not_recorded(tmp_path, make):
    table = make()
    html = _html(tmp_path, table)
    block = _about_block(html, "care_homes")
    assert '<dd class="framework">not recorded</dd>' in block and '<dd class="cohorts">not recorded</dd>' in block
    assert '<dd class="integrity"><span class="na">not recorded</span></dd>' in block
    assert f"Integrity is not recorded in this history for any of the 3 measures {SOURCES}." in html
    assert "integ" not in _summary_cell(html, "care_homes")  # no per-row marker: the line says it once
    rows = pack_export.pack_rows(table, NOW).to_pylist()
    assert {(r["framework"], r["high_integrity"], r["cohorts"]) for r in rows} == {(None, None, None)}


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"measurable": "yes", "reportable": true, "influenced": true}',
                                  '{"measurable": true, "reportable": true}'])
def test_an_unreadable_assessment_is_said_so_not_guessed(text):
    a = ig.assessment(text)
    assert a.status == ig.UNREADABLE and a.high_integrity is None and a.tests == ()
    assert ig.verdict(a) == "integrity not readable in the history"
    assert ig.marker(a)["css"] == "none"


# ---------------------------------------------------------------- escaping

def test_hostile_text_is_escaped(tmp_path):
    evil = '<script>alert("x")</script>'
    table = history(framework=f"<img src=x onerror=alert(1)>{evil}", integrity=_tests(True, True, True, evil),
                    cohorts="<b>bold</b>,frailty")
    html = _html(tmp_path, table)
    assert "<script>" not in html and "<img" not in html and "<b>bold</b>" not in html
    block = _about_block(html, "admissions")
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in block
    assert "&lt;img src=x onerror=alert(1)&gt;" in block and "&lt;b&gt;bold&lt;/b&gt;; frailty" in block


# ---------------------------------------------------------------- the export

def test_export_carries_framework_high_integrity_and_cohorts(tmp_path):
    table = history()
    out = tmp_path / "pack.csv"
    n = pack_export.export_pack(table, NOW, out)
    got = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    assert got.num_rows == n == 3 * 2 * 3  # KPIs x units x periods
    assert got.column_names[3:7] == ["chart", "framework", "high_integrity", "cohorts"]
    about = {r["kpi"]: (r["framework"], r["high_integrity"], r["cohorts"]) for r in got.to_pylist()}
    assert about == {"admissions": ("NHS Outcomes Framework 2.3.i", True, "all"),
                     "care_homes": ("ASCOF 2A(2)", False, "frailty,people aged 65+,long_term_conditions"),
                     "own_measure": (None, None, None)}  # "" reads back as null in CSV


def test_export_neutralises_a_framework_a_spreadsheet_would_evaluate(tmp_path):
    out = tmp_path / "pack.csv"
    pack_export.export_pack(history(framework="=HYPERLINK(\"http://x\")"), NOW, out)
    frameworks = set(pacsv.read_csv(out).column("framework").to_pylist())
    assert len(frameworks) == 1 and not frameworks.pop().startswith("=")
