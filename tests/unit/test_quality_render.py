"""The report of a tiny hand-made store: each implausible value found and named, and a hostile
provider code shown as text on the terminal and escaped in the HTML."""
from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from casefind.quality import console as show
from casefind.quality import render
from casefind.quality.report import Options, build
from casefind.store import Store
from casefind_testdata import GOOD, N, cli, write_source

HOSTILE = "<img src=x onerror=alert(1)>[red]"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-quality")
    tables = {k: list(v) for k, v in GOOD.items()}
    tables["activity"] += [
        ("p1", "2024-01-01", "2025-02-04", "emergency_admission", "120000", "I509", HOSTILE, "home"),  # 400 days
        ("p1", "2025-02-01", N, "gp", "4200", N, N, N),   # 100x a GP appointment
        ("p1", "2025-03-01", N, "gp", "1", N, N, N),      # 1/42 of one
    ]
    tables["opt_outs"] += [("p1", "ndo", "2025-05-01")] * 5  # five opt-outs in a month: over the limit of 4
    r = cli("ingest", write_source(root / "src", tables), "--store", root / "store")
    assert r.exit_code == 0, r.output
    return build(Store.open(root / "store"), Options(months=12))


def _found(report, check):
    return [(f["label"], f["detail"]) for f in report["implausible"] if f["check"] == check]


def test_each_implausible_value_is_found(report):
    assert _found(report, "cost") == [("setting gp (no provider_code)", {"high": 1, "low": 1})]
    assert _found(report, "stay") == [(f"provider {HOSTILE}", {"too long": 1})]
    assert _found(report, "events_per_person") == [("all rows", {"most in one month": 5})]
    [stay] = [f for f in report["implausible"] if f["check"] == "stay"]
    assert stay["examples"][0]["days"] == 400 and stay["examples"][0]["max_days"] == 365
    [cost] = [f for f in report["implausible"] if f["check"] == "cost"]
    assert [e["ratio"] for e in cost["examples"]] == [100.0, pytest.approx(1 / 42, abs=1e-3)]


def test_the_emergency_spell_is_costed_with_its_excess_bed_days(report):
    """120,000 for a 400-day stay is 3,000 + 350 x 395 = 141,250 expected: plausible."""
    assert all(e.get("setting") != "emergency_admission" for f in report["implausible"] for e in f["examples"]
               if f["check"] == "cost")


def test_unknown_codes_are_listed(report):
    meds = report["tables"]["medications"]["codes"]
    assert meds["top_unknown"] == [{"system": "dmd", "code": "39732311000001104", "rows": 1, "malformed": False}]
    assert meds["unknown_share"] == 1.0


def test_the_report_is_json(report):
    assert json.loads(json.dumps(report))["snapshot_id"] == report["snapshot_id"]


def test_console_shows_hostile_text_as_text(report):
    out = Console(file=io.StringIO(), width=250, record=True)
    show.show(report, out)
    text = out.export_text()
    assert HOSTILE in text and "Implausible values" in text


def test_html_escapes_hostile_text_and_fetches_nothing(report, tmp_path):
    path = render.write_html(report, tmp_path / "q.html")
    html = path.read_text()
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;[red]" in html
    assert "<img" not in html and "<script" not in html and "http" not in html
    assert [p.name for p in tmp_path.iterdir()] == ["q.html"]


def test_default_output_is_named_after_the_snapshot(report, tmp_path):
    assert render.default_output(report["snapshot_id"], tmp_path) == tmp_path / f"quality-{report['snapshot_id']}.html"
