"""casefind catalogue's library (issue 11): every shipped rule and KPI file described, the
codelists as their provenance sidecars record them, the tables and columns the IR reads,
parameters, files that do not compile listed with their error, budget files, last runs
from run manifests, and one self-contained HTML file that escapes what it shows."""
from __future__ import annotations

import hashlib
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from casefind.catalogue import header
from casefind.catalogue.collect import build
from casefind.catalogue.model import status
from casefind.catalogue.render import render_html, write_html
from casefind.codelists_report import provenance_text
from casefind.rules import ir
from casefind.rules.compile import compile_rule

ROOT = Path(__file__).parents[2]
RULES = ROOT / "rules"
RULE = 'rule: {name}\ntitle: "{title}"\nversion: 0.1.0\nas_of: "2026-10-31"\n' \
       "parameters:\n  min_age: 65   # the eFI is validated from 65\n  min_visits: 2\n" \
       "population: registered and age >= min_age\n" \
       "features:\n  visits: count(activity, setting == \"ae\", within=months(12))\n" \
       "criteria:\n  include:\n    busy: visits >= min_visits\n"


@pytest.fixture(scope="module")
def shipped():
    return build(RULES)


@pytest.fixture
def rules(tmp_path) -> Path:
    """A copy of the shipped rules, to break and edit."""
    return Path(shutil.copytree(RULES, tmp_path / "rules"))


def _by_name(cat, kind="rule"):
    return {e.name: e for e in cat.of_kind(kind)}


def test_every_shipped_rule_and_kpi_file_is_listed_and_compiles(shipped):
    stems = {p.stem for p in RULES.glob("*.yml") if not p.name.endswith(".test.yml")}
    assert len(stems) == 7
    assert set(_by_name(shipped)) == stems
    assert set(_by_name(shipped, "kpis")) == {"triple_aim"}
    assert [e.path for e in shipped.entries if e.error] == []
    for e in shipped.entries:
        compiled_title = compile_rule(e.path).title if e.kind == "rule" else None
        assert e.title and e.version and (compiled_title in (None, e.title))
        assert e.sha256 == hashlib.sha256(Path(e.path).read_bytes()).hexdigest()
    assert shipped.budgets_dir.endswith("budgets")  # the shipped Year of Care budget files
    assert set(_by_name(shipped, "budget")) == {"ltc_year_of_care", "lead_provider"}
    assert [e.path for e in shipped.entries if e.kind == "budget" and e.error] == []
    assert len({e.anchor for e in shipped.entries}) == len(shipped.entries)


def test_each_codelist_is_recorded_as_its_file_and_provenance_sidecar_say(shipped):
    checked = 0
    for e in shipped.entries:
        assert e.codelists or e.name in ("high_utilisers", "rising_risk"), e.name
        for c in e.codelists:
            if c.file is None:
                assert c.sha256 is None and c.source is None
                continue
            csv = (Path(e.path).parent / c.file).resolve()
            assert c.sha256 == hashlib.sha256(csv.read_bytes()).hexdigest(), (e.name, c.name)
            sidecar = csv.with_name(csv.stem + ".provenance.json")
            if not sidecar.is_file():
                assert c.sidecar is None and c.source is None and c.licence is None, (e.name, c.name)
                continue
            side = json.loads(sidecar.read_text())
            assert c.sidecar == sidecar.name
            for key in ("source", "release", "licence", "date_retrieved", "what"):
                assert getattr(c, key) == (provenance_text(side[key]) if key in side else None), (c.name, key)
            counts = side["counts"]
            if c.selected_categories:  # category: picks some of the file's rows
                assert c.rows == sum(counts["per_category"].get(k, 0) for k in c.selected_categories)
                assert c.file_rows == counts["total_rows"]
            else:
                assert c.rows == counts["total_rows"] and c.file_rows is None
                assert c.codes + c.prefixes == counts["total_distinct_codes"]
            checked += 1
    assert checked >= 10


def test_the_tables_and_columns_read_are_those_the_rule_ir_names(shipped):
    frail = _by_name(shipped)["frail"]
    rule = compile_rule(RULES / "frail.yml")
    named: dict[str, set[str]] = {}
    for node in [rule.population, *rule.features.values(), *(n for _, n in rule.include + rule.exclude)]:
        for n in ir.walk(node, (ir.ROWS, ir.DATE)):
            if isinstance(n, (ir.Aggregate, ir.Trend)):
                named.setdefault(n.table, set())
            if isinstance(n, ir.Column):
                named.setdefault(n.table, set()).add(n.column)
    assert named  # the walk found the rule's tables
    for table, columns in named.items():
        assert columns <= set(frail.reads[table]), table
    assert set(frail.reads) == set(named) | {"patients"}  # age, registered, alive
    assert frail.attributes == ["age", "alive", "registered"]


@pytest.mark.parametrize("rule, table, columns, absent", [
    ("frail", "diagnoses", {"code", "code_system", "date"}, {"procedures", "observations", "experience"}),
    ("frail", "reviews", {"decision", "rule", "date"}, set()),
    ("frail", "registers", {"register", "start_date", "end_date"}, set()),
    ("charlson", "diagnoses", {"code", "spell_id", "position"}, {"medications"}),
    ("high_utilisers", "activity", {"setting", "cost", "start_date"}, {"diagnoses", "medications"}),
])
def test_reads_per_rule(shipped, rule, table, columns, absent):
    entry = _by_name(shipped)[rule]
    assert columns <= set(entry.reads[table])
    assert not absent & set(entry.reads)


def test_parameters_are_the_rules_own_values(shipped, tmp_path):
    for name, entry in _by_name(shipped).items():
        compiled = compile_rule(RULES / f"{name}.yml").parameters
        assert [(p.name, p.default, p.type) for p in entry.parameters] == \
               [(k, v.value, v.type.value) for k, v in compiled.items()]
    (tmp_path / "r.yml").write_text(RULE.format(name="r", title="A rule"))
    entry = build(tmp_path).entries[0]
    assert [(p.name, p.default, p.description) for p in entry.parameters] == \
           [("min_age", 65, "the eFI is validated from 65"), ("min_visits", 2, None)]
    assert entry.reads == {"activity": ["setting", "start_date"],
                           "patients": ["birth_date", "registration_end", "registration_start"]}


@pytest.mark.parametrize("text, where", [
    ("rule: broken\nas_of: \"2026-10-31\"\npopulation: registered and\n", ":3:"),
    ("rule: broken\nas_of: \"2026-10-31\"\nfeatures:\n  x: count(activty)\n", ":4:"),
    ("rule: broken\n  bad: [\n", ":"),
    ("rule: broken\nas_of: \"2026-10-31\"\ncodelists:\n  c: codelists/missing.csv\n", ":4:"),
])
def test_a_file_that_does_not_compile_is_listed_with_its_error_and_the_rest_still_appear(rules, text, where):
    broken = rules / "broken.yml"
    broken.write_text(text)
    cat = build(rules)
    entries = _by_name(cat)
    assert len(entries) == 8 and "broken" in entries
    e = entries["broken"]
    assert e.error and e.error.startswith(str(broken) + where), e.error
    assert status(e) == ("does not compile", "error")
    assert [x.name for x in cat.entries if x.error] == ["broken"]
    assert "Does not compile" in render_html(cat)


def test_a_broken_kpi_file_is_listed_too(rules):
    (rules / "kpis" / "bad.yml").write_text("kpis: bad\nmeasures:\n  m:\n    title: t\n    domain: health\n")
    kpis = _by_name(build(rules), "kpis")
    assert set(kpis) == {"bad", "triple_aim"}
    assert kpis["bad"].error.startswith(str(rules / "kpis" / "bad.yml") + ":")
    assert kpis["triple_aim"].error is None


def test_budget_files_are_compiled_and_listed_with_their_header_fields_when_the_folder_exists(tmp_path):
    (tmp_path / "r.yml").write_text(RULE.format(name="r", title="A rule"))
    assert build(tmp_path).budgets_dir is None
    budgets = tmp_path / "budgets"
    budgets.mkdir()
    (budgets / "frailty.yml").write_text('budget: frailty_pool\ntitle: Frailty pool\nversion: 2\n'
                                         'cohort: {when: "age >= 65"}\ncategories:\n'
                                         '  old: {when: "age >= 80"}\n  rest: {}\n')
    (budgets / "broken.yml").write_text("budget: [\n")
    (budgets / "typo.yml").write_text('budget: typo\ncohort: {when: "age >= 65"}\ncategories:\n'
                                      '  a: {when: "agee > 1"}\n')
    cat = build(tmp_path)
    assert cat.budgets_dir == str(budgets)
    got = _by_name(cat, "budget")
    assert got["frailty_pool"].header == {"budget": "frailty_pool", "title": "Frailty pool", "version": 2}
    assert got["frailty_pool"].title == "Frailty pool" and got["frailty_pool"].version == "2"
    assert got["frailty_pool"].criteria == {"categories": ["old", "rest"]}
    assert got["frailty_pool"].error is None
    assert got["broken"].error.startswith(str(budgets / "broken.yml") + ":")
    assert got["typo"].error.startswith(str(budgets / "typo.yml") + ":4:")  # the located compile error


def test_test_files_beside_a_rule_are_found(tmp_path):
    (tmp_path / "r.yml").write_text(RULE.format(name="r", title="A rule"))
    (tmp_path / "s.yml").write_text(RULE.format(name="s", title="Another"))
    (tmp_path / "r.test.yml").write_text("patients: []\n")
    got = _by_name(build(tmp_path))
    assert set(got) == {"r", "s"}  # the test file is not a rule
    assert got["r"].test_file == str(tmp_path / "r.test.yml") and got["s"].test_file is None


def _manifest(out: Path, name: str, **fields) -> Path:
    folder = out / f"{name}-2026-10-31"
    folder.mkdir(parents=True)
    data = {"run_id": "abcdef012345", "rule": name, "as_of": "2026-10-31", "store_snapshot": "snap1",
            "created": "2026-11-01T09:00:00+00:00", "engine": "native", **fields}
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder / "manifest.json"


def test_last_run_from_a_manifest_and_whether_the_file_changed_since(tmp_path):
    rule = tmp_path / "rules" / "r.yml"
    rule.parent.mkdir()
    rule.write_text(RULE.format(name="r", title="A rule"))
    sha = hashlib.sha256(rule.read_bytes()).hexdigest()
    out = tmp_path / "out"
    _manifest(out, "r", rule_sha256=sha, rule_file=str(rule))
    (out / "junk").mkdir()
    (out / "junk" / "manifest.json").write_text("{not json")
    run = build(rule.parent, out_dir=out).entries[0].last_run
    assert (run.source, run.as_of, run.store_snapshot, run.changed, run.ran_file) == \
           ("manifest", "2026-10-31", "snap1", False, None)
    cat = build(rule.parent, out_dir=out)
    assert status(cat.entries[0])[0] == "unchanged since last run"
    assert any("junk" in n for n in cat.notes)  # an unreadable manifest is a note, not a failure
    rule.write_text(rule.read_text() + "# edited\n")
    cat = build(rule.parent, out_dir=out)
    assert cat.entries[0].last_run.changed is True
    assert status(cat.entries[0]) == ("changed since last run", "changed")


def test_the_latest_manifest_is_the_last_run(tmp_path):
    (tmp_path / "r.yml").write_text(RULE.format(name="r", title="A rule"))
    out = tmp_path / "out"
    _manifest(out, "r", run_id="000000000001", created="2026-11-01T09:00:00+00:00")
    folder = out / "later"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"run_id": "000000000002", "rule": "r", "as_of": "2026-09-30",
                                                      "created": "2026-11-02T09:00:00+00:00"}))
    run = build(tmp_path, out_dir=out).entries[0].last_run
    assert (run.run_id, run.as_of, run.runs, run.changed) == ("000000000002", "2026-09-30", 2, None)
    assert status(build(tmp_path, out_dir=out).entries[0])[0] == "ran (file hash not recorded)"


HOSTILE = '<script>alert(1)</script><img src=https://evil.example/x.png>'


def test_the_html_is_self_contained_and_escapes_a_hostile_title(tmp_path):
    (tmp_path / "evil.yml").write_text(RULE.format(name="evil", title=HOSTILE))
    cat = build(tmp_path)
    assert cat.entries[0].title == HOSTILE
    html = render_html(cat)
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    _assert_self_contained(html)
    out = write_html(cat, tmp_path / "c.html")
    assert out.read_text() == html and not list(tmp_path.glob(".c.html*"))  # no temporary file left


def test_the_html_of_the_shipped_rules_has_a_contents_entry_and_a_section_per_file(shipped):
    html = render_html(shipped)
    _assert_self_contained(html)
    for e in shipped.entries:
        assert f'href="#{e.anchor}"' in html and f'id="{e.anchor}"' in html
        assert e.sha256 in html
    for c in _by_name(shipped)["frail"].codelists:
        assert c.sha256[:16] in html


class _Tags(HTMLParser):
    """Every tag and attribute of a page, and the text of its <style> elements."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        if self.tags and self.lasttag == "style":
            self.styles.append(data)


def _assert_self_contained(html: str) -> None:
    page = _Tags()
    page.feed(html)
    names = {t for t, _ in page.tags}
    assert not names & {"script", "link", "iframe", "object", "embed", "img", "base", "form"}, names
    links = [v for _, attrs in page.tags for k, v in attrs.items() if k in ("href", "src", "action")]
    assert links and all(v.startswith("#") for v in links)
    assert not any(k.startswith("on") for _, attrs in page.tags for k in attrs)  # no event handlers
    assert page.styles and not any("url(" in s or "@import" in s for s in page.styles)


def test_the_json_form_holds_everything(shipped):
    data = json.loads(json.dumps(shipped.to_dict(), default=str))
    assert [e["name"] for e in data["entries"]] == [e.name for e in shipped.entries]
    frail = next(e for e in data["entries"] if e["name"] == "frail")
    assert frail["ok"] and frail["codelists"][0]["sha256"] and frail["reads"]["reviews"]


@pytest.mark.parametrize("text, sources, summary", [
    ("# One line\n#\n# Rationale: why.\n# Sources: A et al. 2016;\n# B 2018.\n# Codes: x.csv\nrule: r\n",
     "A et al. 2016; B 2018.", "One line"),
    ("# T\n# Source: only one\nrule: r\n", "only one", "T"),
    ("# T\n# Sources (as close as the data allows):\n# - X\n# - Y\n\nrule: r\n", "- X - Y", "T"),
    ("rule: r\n# Sources: after the YAML starts, not a header\n", "", ""),
    ("# T\n# Rationale: no sources here\nrule: r\n", "", "T"),
])
def test_header_sources(text, sources, summary):
    assert header.sources(text) == sources
    assert header.summary(text) == summary


def test_a_project_copy_says_which_files_were_edited_since_they_were_shipped(tmp_path):
    from casefind.init_project import init_project

    project = init_project(tmp_path / "project").root / "rules"
    (project / "frail.yml").write_text((project / "frail.yml").read_text().replace("min_age: 65", "min_age: 70"))
    bmi = project / "codelists" / "bmi_value_snomed.csv"
    bmi.write_text(bmi.read_text().replace("60621009", "60621008"))  # same rows: its sidecar still agrees
    (project / "mine.yml").write_text(RULE.format(name="mine", title="Mine"))
    cat = build(project)
    assert [e.path for e in cat.entries if e.error] == []
    got = {e.name: e.shipped for e in cat.entries}
    assert got == {**{e.name: "unchanged" for e in cat.entries}, "frail": "edited", "mine": "added"}
    assert cat.shipped_from
    edited = {(e.name, c.name) for e in cat.entries for c in e.codelists if c.shipped == "edited"}
    # the budget files use multimorbidity.yml's codelists through their cohort rule
    assert edited == {("multimorbidity", "bmi_value"), ("segments", "bmi_value"),
                      ("ltc_year_of_care", "bmi_value"), ("lead_provider", "bmi_value")}
    assert "edited since copied" in render_html(cat)
    assert build(RULES).shipped_from is None and all(e.shipped is None for e in build(RULES).entries)


def test_the_terminal_shows_a_title_with_markup_as_text(tmp_path):
    from rich.console import Console

    from casefind.catalogue.console import print_catalogue

    title = "[red]x[/red] [link=https://evil.example]y[/link] [bold"
    (tmp_path / "r.yml").write_text(RULE.format(name="r", title=title))
    out = Console(record=True, width=400)
    print_catalogue(build(tmp_path), out)
    assert out.export_text(clear=False).count(title) == 2  # in the summary and as the detail's title
    assert 'href="https://evil.example"' not in out.export_html()
