"""The budget statement: one self-contained HTML file whose figures are the budget folder's,
in whole pounds that add up as printed, with nothing identifiable in it."""
from __future__ import annotations

import json
import math
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from budget_statement_data import COMPLETE, MONTHS, PRACTICES, PSEUDONYMS, budget_folder, practice_month
from casefind.budgets import statement_money as money
from casefind.budgets import statement_sections as sections
from casefind.budgets.statement import build_context, render_statement
from casefind.budgets.statement_folder import BudgetFolderError, read_folder
from casefind.cli_budget_statement import statement_command
from casefind.errors import CasefindError, UsageError

CHROMIUM = Path("/usr/bin/chromium")


class Tables(HTMLParser):
    """Every table's rows as cell texts, with the table's and each row's attributes."""

    def __init__(self):
        super().__init__()
        self.tables: list[dict] = []
        self.figures: dict[str, str] = {}
        self._stack: list[dict] = []
        self._row = None
        self._cell = None
        self._figure = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._stack.append({"attrs": a, "rows": []})
        elif tag == "tr" and self._stack:
            self._row = {"attrs": a, "cells": []}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        if "data-figure" in a:
            self._figure = (a["data-figure"], [])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row["cells"].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._stack[-1]["rows"].append(self._row)
            self._row = None
        elif tag == "table" and self._stack:
            self.tables.append(self._stack.pop())
        elif tag in ("span", "td") and self._figure is not None:
            self.figures[self._figure[0]] = "".join(self._figure[1]).strip()
            self._figure = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._figure is not None:
            self._figure[1].append(data)

    def find(self, cls: str, **attrs) -> dict:
        found = [t for t in self.tables if cls in t["attrs"].get("class", "").split()
                 and all(t["attrs"].get(f"data-{k}") == v for k, v in attrs.items())]
        assert len(found) == 1, (cls, attrs, len(found))
        return found[0]


def pounds(text: str) -> int:
    """'-£1,234' -> -1234."""
    m = re.fullmatch(r"(-?)£([\d,]+)", text.strip())
    assert m, text
    return int(m.group(2).replace(",", "")) * (-1 if m.group(1) else 1)


@pytest.fixture
def folder(tmp_path) -> Path:
    return budget_folder(tmp_path)


@pytest.fixture
def page(folder) -> tuple[str, Tables]:
    html = render_statement(folder).read_text(encoding="utf-8")
    parsed = Tables()
    parsed.feed(html)
    return html, parsed


def _body(table: dict) -> list[dict]:
    return [r for r in table["rows"] if "data-month" in r["attrs"] or "data-unit" in r["attrs"]
            or "data-category" in r["attrs"] or "data-cohort" in r["attrs"]]


def _total(table: dict, key: str | None = None) -> list[str]:
    rows = [r for r in table["rows"] if (key is None and r["attrs"].get("class") == "total")
            or r["attrs"].get("data-total") == key]
    assert rows, key
    return rows[0]["cells"]


# ---------------------------------------------------------------- rounding

@pytest.mark.parametrize("values, total, want", [
    ([1.4, 1.4, 1.4], None, [2, 1, 1]),          # 4.2 -> 4: the largest fraction (first, by order) goes up
    ([0.5, 0.5], None, [1, 0]),                  # 1.0 -> 1
    ([10.2, 20.3, 30.5], None, [10, 20, 31]),    # 61.0 -> 61
    ([2.5], None, [3]),                          # half away from zero
    ([-2.5], None, [-3]),
    ([-1.6, -1.6], None, [-1, -2]),              # -3.2 -> -3: a tie goes to the first
    ([1.0, 2.0], 5, [2, 3]),                     # a total beyond the floors+1 still adds up
    ([1.0, 2.0], 1, [0, 1]),
    ([], None, []),
])
def test_controlled_rounding_adds_up_to_the_rounded_total(values, total, want):
    got = money.controlled(values, total)
    assert got == want
    assert sum(got) == (money.whole(math.fsum(values)) if total is None else total)


@pytest.mark.parametrize("value, text", [(1234.5, "£1,235"), (-1234.5, "-£1,235"), (0.49, "£0"), (None, "–"),
                                         (float("nan"), "–"), (2.675, "£3")])
def test_pounds_are_whole_and_signed_before_the_pound_sign(value, text):
    assert money.pounds(value) == text


@pytest.mark.parametrize("value, text", [(2.675, "£2.68"), (-0.005, "-£0.01"), (1179.52, "£1,179.52"), (None, "–")])
def test_rates_are_to_the_penny(value, text):
    assert money.pence(value) == text


# ---------------------------------------------------------------- the figures

def test_headline_figures_are_the_folders(page, folder):
    _, p = page
    meta = json.loads((folder / "statement.json").read_text())
    budget_to_date = sum(practice_month(c, i)[0] for c in PRACTICES for i in range(COMPLETE))
    actual_to_date = sum(practice_month(c, i)[1] for c in PRACTICES for i in range(COMPLETE))
    assert pounds(p.figures["budget"]) == money.whole(meta["totals"]["budget"])
    assert pounds(p.figures["budget_to_date"]) == money.whole(budget_to_date)
    assert pounds(p.figures["actual"]) == money.whole(actual_to_date)
    assert pounds(p.figures["variance"]) == money.whole(budget_to_date) - money.whole(actual_to_date)
    assert p.figures["people_start"] == "300" and p.figures["people_end"] == "311"
    forecast = actual_to_date + sum(practice_month(c, i)[0] for c in PRACTICES for i in range(COMPLETE, 12))
    assert pounds(p.figures["forecast"]) == money.whole(forecast)
    assert pounds(p.figures["forecast_variance"]) == money.whole(meta["totals"]["budget"]) - money.whole(forecast)
    assert pounds(p.figures["adjusted_total"]) == money.whole(meta["adjusted_total"])
    assert pounds(p.figures["provider_share"]) == -2345


def test_month_by_month_rows_add_up_to_each_total_printed(page):
    _, p = page
    t = p.find("months", unit="SYS01")
    rows = _body(t)
    assert [r["attrs"]["data-month"] for r in rows] == MONTHS
    budget = [pounds(r["cells"][2]) for r in rows]
    actual = [pounds(r["cells"][3]) for r in rows]
    done = COMPLETE
    assert pounds(_total(t, "to_date")[1]) == sum(budget[:done])
    assert pounds(_total(t, "to_date")[2]) == sum(actual[:done])
    assert pounds(_total(t, "to_date")[3]) == sum(budget[:done]) - sum(actual[:done])
    assert pounds(_total(t, "rest")[1]) == sum(budget[done:])
    assert pounds(_total(t, "year")[1]) == sum(budget)
    assert pounds(_total(t, "year")[2]) == sum(actual)
    for r, b, a in zip(rows[:done], budget, actual):
        assert pounds(r["cells"][4]) == b - a
        assert r["cells"][6] == "complete"
    for r in rows[done:]:
        assert r["attrs"].get("class") == "incomplete"
        assert r["cells"][4] == "–" and r["cells"][6] == "† data incomplete"
    exact = [sum(practice_month(c, i)[0] for c in PRACTICES) for i in range(12)]
    assert all(abs(b - e) < 1 for b, e in zip(budget, exact))  # each row within £1 of its exact value


def test_practices_and_localities_add_up_to_the_system(page):
    _, p = page
    months = p.find("months", unit="SYS01")
    for level, count in (("practice", 4), ("locality", 2)):
        t = p.find("units", level=level)
        rows = _body(t)
        assert len(rows) == count
        total = next(r for r in t["rows"] if r["cells"][0] == "Total")["cells"]
        offset = 1 if level == "practice" else 0
        for col in (3, 4, 5):  # budget to date, actual to date, variance to date
            assert sum(pounds(r["cells"][col + offset]) for r in rows) == pounds(total[col])
        assert pounds(total[3]) == pounds(_total(months, "to_date")[1])
        assert pounds(total[4]) == pounds(_total(months, "to_date")[2])
        for r in rows:
            assert pounds(r["cells"][5 + offset]) == pounds(r["cells"][3 + offset]) - pounds(r["cells"][4 + offset])


def test_tariffs_show_sizes_trims_merges_and_rates(page):
    _, p = page
    t = p.find("tariffs")
    rows = {r["attrs"]["data-category"]: r["cells"] for r in _body(t)}
    assert rows["0_none"][1:3] == ["400", "4"]
    assert rows["0_none"][4:10] == ["£310.46", "£298.10", "2.5%", "£305.55", "–", "computed"]
    assert rows["3_mental"][3] == "2 long-term conditions"  # merged into, by its label
    assert rows["1_physical"][8] == "£24.00"
    foot = next(r for r in t["rows"] if r["cells"][0] == "All categories")["cells"]
    assert foot[1:3] == ["646", "7"]


def test_cohort_movement_totals_and_the_end_of_life_warning(page):
    html, p = page
    t = p.find("movement")
    rows = _body(t)
    assert len(rows) == 12
    foot = next(r for r in t["rows"] if r["cells"][0] == "Year")["cells"]
    for col in range(1, 5):
        assert sum(int(r["cells"][col]) for r in rows) == int(foot[col])
    for col in range(6, 10):
        assert sum(pounds(r["cells"][col]) for r in rows) == pounds(foot[col])
    assert foot[5] == "+38"  # 48 joined, 10 left
    assert "end of life carry high costs" in html


def test_simulation_table_gives_the_handbooks_totals(page):
    # Long Term Conditions Year of Care Commissioning handbook, simulation table (/work/shared/domain.md,
    # "Money"): 0-0.5%: 2,854 people, £10,179 -> £9,854; 0.5-2%: 9,203, £7,454 -> £7,341; 2-5%: 19,930,
    # £4,537 -> £4,555; 5-10%: 33,941, £3,085 -> £3,136.
    _, p = page
    t = p.find("simulation", year="1")
    rows = {r["attrs"]["data-cohort"]: r["cells"] for r in _body(t)}
    assert rows["0-0.5%"][1:5] == ["2,854", "£10,179", "£9,854", "-£325"]
    foot = next(r for r in t["rows"] if r["cells"][0] == "All cohorts")["cells"]
    assert foot[1] == "65,928"
    assert pounds(foot[5]) == 292_780_423 and pounds(foot[6]) == 292_902_665
    assert pounds(foot[7]) == 292_902_665 - 292_780_423
    assert sum(pounds(r[5]) for r in rows.values()) == pounds(foot[5])


def test_no_simulation_no_section(tmp_path):
    html = render_statement(budget_folder(tmp_path, simulation=False)).read_text()
    assert 'id="simulation"' not in html


def test_shadow_budgets_side_by_side(page):
    _, p = page
    rows = {r["attrs"]["data-unit"]: r["cells"] for r in _body(p.find("shadow"))}
    assert list(rows) == ["SYS01", "L1", "L2"]  # system first
    whole, cohort = rows["SYS01"][1:5], rows["SYS01"][5:9]
    assert whole == ["12,000", "£11,999,980", "£12,049,380", "-£49,400"]
    assert cohort == ["300", "£300,000", "£301,234", "-£1,234"]


def test_risk_share_and_outcomes_show_their_working(page):
    html, p = page
    assert "first 2% of the budget: 100% provider" in html
    assert "101.26 &gt; 95: reduction of £5,000" in html
    row = _body_outcome(p)
    assert row[1:5] == ["95", "101.26", "not met", "-£5,000"]


def _body_outcome(p: Tables) -> list[str]:
    t = p.find("outcomes")
    return next(r for r in t["rows"] if r["attrs"].get("data-kpi") == "emergency_admissions_per_1000")["cells"]


# ---------------------------------------------------------------- safety

def test_text_from_data_is_escaped_and_nothing_is_fetched(page):
    html, _ = page
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in html
    assert not re.search(r"https?://|\bsrc=|@import|url\((?!#)", html)


def test_no_pseudonym_appears(page, folder):
    html, _ = page
    tagged = pq.read_table(folder / "tagged_activity.parquet").column("patient_id").to_pylist()
    assert tagged and set(tagged) <= set(PSEUDONYMS)
    for pid in PSEUDONYMS:
        assert pid not in html
    assert "patient_id" not in html


# ---------------------------------------------------------------- the folder and the file

def test_statement_is_written_atomically_where_asked(folder, tmp_path):
    out = tmp_path / "out" / "s.html"
    out.parent.mkdir()
    out.write_text("old")
    assert render_statement(folder, out) == out
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in out.parent.iterdir()] == ["s.html"]  # no temporary file left
    assert not (folder / "statement.html").exists()


def test_totals_that_disagree_with_the_months_are_said(tmp_path):
    folder = budget_folder(tmp_path, simulation=False)
    meta = json.loads((folder / "statement.json").read_text())
    meta["totals"]["budget"] += 10
    (folder / "statement.json").write_text(json.dumps(meta))
    checks = build_context(read_folder(folder))["checks"]
    assert len(checks) == 1 and "the difference is £10" in checks[0]


def _broken(tmp_path, how: str) -> Path:
    folder = budget_folder(tmp_path, simulation=False)
    if how == "no tariffs":
        (folder / "tariffs.parquet").unlink()
    elif how == "no column":
        t = pq.read_table(folder / "monthly.parquet")
        pq.write_table(t.drop_columns(["forecast"]), folder / "monthly.parquet")
    elif how == "bad json":
        (folder / "statement.json").write_text("{not json")
    elif how == "no totals":
        (folder / "statement.json").write_text(json.dumps({"budget": "b", "year": "2026-27"}))
    elif how == "no statement":
        (folder / "statement.json").unlink()
    elif how == "bad parquet":
        (folder / "shadow.parquet").write_text("not parquet")
    elif how == "json list":
        (folder / "statement.json").write_text("[]")
    return folder


@pytest.mark.parametrize("how, message", [
    ("no tariffs", "tariffs.parquet is missing"), ("no column", "missing column(s) forecast"),
    ("bad json", "cannot be read as JSON"), ("no totals", "missing totals"),
    ("no statement", "not a budget output folder"), ("bad parquet", "cannot be read as Parquet"),
    ("json list", "expected a JSON object")])
def test_an_incomplete_folder_is_one_clear_error(tmp_path, how, message):
    with pytest.raises(BudgetFolderError, match=re.escape(message)) as e:
        render_statement(_broken(tmp_path, how))
    assert isinstance(e.value, CasefindError) and e.value.hint


def test_not_a_folder(tmp_path):
    with pytest.raises(BudgetFolderError, match="no such folder"):
        read_folder(tmp_path / "nowhere")


def test_missing_total_keys_are_named(tmp_path):
    folder = budget_folder(tmp_path, simulation=False)
    meta = json.loads((folder / "statement.json").read_text())
    del meta["totals"]["people_end"]
    (folder / "statement.json").write_text(json.dumps(meta))
    with pytest.raises(BudgetFolderError, match=r"totals\.people_end"):
        read_folder(folder)


def test_optional_parts_may_be_absent(tmp_path):
    folder = budget_folder(tmp_path, simulation=False, risk_share=None, outcomes=[], adjusted_total=None, trim=None)
    html = render_statement(folder).read_text()
    assert "states no risk share" in html and "ties no adjustment to outcomes" in html
    p = Tables()
    p.feed(html)
    assert p.figures["provider_share"] == "none" and p.figures["adjusted_total"] == "–"


# ---------------------------------------------------------------- the command

def test_command_writes_the_statement_and_the_export(folder, tmp_path):
    r = CliRunner().invoke(statement_command, [str(folder), "--export", str(tmp_path / "bi"), "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert (folder / "statement.html").exists()
    assert (tmp_path / "bi" / "monthly.csv").exists()
    assert "record-level, pseudonymised" in r.output
    assert "summary.csv: 1 row\n" in r.output


def test_command_json_and_html_option(folder, tmp_path):
    out = tmp_path / "x.html"
    r = CliRunner().invoke(statement_command, [str(folder), "--html", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"statement": str(out), "export": None}


def test_command_format_needs_export(folder):
    r = CliRunner().invoke(statement_command, [str(folder), "--format", "csv"])
    assert isinstance(r.exception, UsageError) and r.exception.exit_code == 2
    assert str(r.exception) == "--format: give --export DIR to say where the tables go"
    r = CliRunner().invoke(statement_command, [str(folder), "--no-records"])
    assert isinstance(r.exception, UsageError) and "--no-records" in str(r.exception)


# ---------------------------------------------------------------- in a browser

@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium (/usr/bin/chromium) is not installed")
def test_prints_to_a_sane_number_of_a4_pages(page, folder, tmp_path):
    args = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--no-pdf-header-footer"]
    url = (folder / "statement.html").as_uri()
    pdf, png = tmp_path / "s.pdf", tmp_path / "s.png"
    subprocess.run([*args, f"--print-to-pdf={pdf}", url], check=True, capture_output=True, timeout=120)
    subprocess.run([*args, f"--screenshot={png}", "--window-size=1300,1800", url], check=True,
                   capture_output=True, timeout=120)
    pages = len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf.read_bytes()))
    assert 3 <= pages <= 6, pages
    assert png.stat().st_size > 20_000  # a rendered page, not a blank one


# ---------------------------------------------------------------- edges

def _edit_system_months(folder: Path, edit) -> None:
    t = pq.read_table(folder / "monthly.parquet")
    rows = t.to_pylist()
    for i, r in enumerate(rows):
        if r["level"] == "system" and r["category"] == "all":
            edit(MONTHS.index(r["month"]), r)
        rows[i] = r
    pq.write_table(pa.Table.from_pylist(rows, t.schema), folder / "monthly.parquet")


def test_a_spike_in_spend_is_a_signal_of_concern(tmp_path):
    folder = budget_folder(tmp_path, simulation=False)
    _edit_system_months(folder, lambda i, r: r.update(actual=90_000.0) if i == 6 else None)
    spc_block = build_context(read_folder(folder))["systems"][0]["spc"]
    assert spc_block["signals"] == ["2026-10 (Point beyond a process limit)"]
    assert spc_block["status"].startswith("special cause concern")


def test_one_complete_month_gives_no_limits(tmp_path):
    folder = budget_folder(tmp_path, simulation=False)
    _edit_system_months(folder, lambda i, r: r.update(complete=i == 0))
    html = render_statement(folder).read_text()
    assert "Too few complete months for process limits." in html
    system = build_context(read_folder(folder))["systems"][0]
    assert system["spc"]["limits"] is None and system["table"]["months_done"] == 1


def test_no_complete_month_no_forecast(tmp_path):
    folder = budget_folder(tmp_path, simulation=False)
    _edit_system_months(folder, lambda i, r: r.update(complete=False, forecast=None))
    head = build_context(read_folder(folder))["head"]
    assert head["forecast"] == "–" and head["forecast_variance"] == "–" and head["actual"] == "£0"


@pytest.mark.parametrize("value, text", [(None, "–"), (95, "95"), (101.26, "101.26"), (0.5, "0.5"),
                                         (1234.0, "1,234"), (float("inf"), "–"), (True, "True"), ("n/a", "n/a")])
def test_outcome_numbers_as_given(value, text):
    assert sections._number(value) == text


def test_counts_and_percentages_missing():
    assert money.count(None) == "–" and money.percent(None) == "–" and money.percent(0.025) == "2.5%"


def test_totals_must_be_an_object(tmp_path):
    folder = budget_folder(tmp_path, simulation=False, totals=[1, 2])
    with pytest.raises(BudgetFolderError, match="missing totals"):
        read_folder(folder)


def test_working_may_be_one_line_or_none():
    assert sections._lines(None) == [] and sections._lines("a") == ["a"] and sections._lines(["a", 1]) == ["a", "1"]


def test_stated_methods_read_plainly(tmp_path):
    trim = {"method": "cap", "above_percentile": 99.0, "thresholds": {"1_physical": 9752.016800000049},
            "within": ["1_physical", "2_physical"]}
    folder = budget_folder(tmp_path, simulation=False, trim=trim, adjusted_total_means="budget - commissioner's share")
    html = render_statement(folder).read_text()
    assert "method cap; above percentile 99; thresholds 1 physical 9,752.02; within 1_physical, 2_physical" in html
    assert "(budget - commissioner&#39;s share)" in html


def test_a_whole_year_of_data_has_no_rest_row(tmp_path):
    folder = budget_folder(tmp_path, simulation=False)
    _edit_system_months(folder, lambda i, r: r.update(complete=True, forecast=r["forecast"] or 1.0))
    p = Tables()
    p.feed(render_statement(folder).read_text())
    t = p.find("months", unit="SYS01")
    assert not [r for r in t["rows"] if r["attrs"].get("data-total") == "rest"]
    assert _total(t, "to_date")[1] == _total(t, "year")[1]
