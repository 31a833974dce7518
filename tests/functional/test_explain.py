"""`casefind explain RULE`: the IR as indented trees (a feature used by a later one shown by
its name), the rule's codelists once each by name and size, each scan's slots named by the
feature or criterion they serve, and the kernels."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from casefind.cli import main
from casefind.explain import slot_names
from casefind.ingest import run_ingest
from casefind.rules import ir
from casefind.rules.compile import compile_rule
from casefind.synth import generate

FRAIL = Path(__file__).parents[2] / "rules" / "frail.yml"


def test_explain_names_slots_shows_trees_and_each_codelist_once(tmp_path):
    generate(300, 5, tmp_path / "src")
    run_ingest(tmp_path / "src", tmp_path / "store")
    result = CliRunner().invoke(main, ["explain", str(FRAIL), "--store", str(tmp_path / "store")])
    assert result.exit_code == 0, result.output
    out = result.output
    ir_part = out.split("Codelists")[0]
    assert "deficits : int\n  Add\n    left: feature coded_deficits\n" in ir_part  # an earlier feature by name
    assert "CountDistinct(table=diagnoses, window=ever)" in ir_part
    rule = compile_rule(FRAIL)
    efi = rule.codelists["efi"]
    assert out.count(f"efi: {len(efi.codes)} codes, 0 prefixes (snomed)") == 1  # the rule's codelists, once
    assert "slot 0: emergency_12m (count)" in out
    assert "exclude palliative_care (exists)" in out
    assert "def scan_activity(" in out


def test_every_aggregation_of_frail_gets_a_name():
    rule = compile_rule(FRAIL)
    names = slot_names(rule)
    found = {x for _, node in [*rule.features.items(), *rule.include, *rule.exclude, ("", rule.population)]
             for x in ir.walk(node, into=(ir.ROWS, ir.DATE)) if isinstance(x, (ir.Aggregate, ir.Trend))}
    assert found and found == set(names)
    assert names[rule.features["emergency_12m"]] == "emergency_12m"
