"""Every shipped rule's description is held as a golden file (tests/golden/describe/<rule>.md).

When a shipped rule, or the words, change, this fails until the descriptions are regenerated:

    python -m casefind.describe.golden

and the regenerated description is reviewed in the same diff as the change.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from casefind.describe import golden
from casefind.project import rule_files, shipped_rules

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "describe"
SHIPPED = ["charlson", "frail", "hfrs", "high_utilisers", "multimorbidity", "rising_risk", "segments"]


def test_every_shipped_rule_has_a_golden_description():
    assert [p.stem for p in rule_files(shipped_rules())] == SHIPPED
    assert sorted(p.stem for p in GOLDEN.glob("*.md")) == SHIPPED


@pytest.fixture(scope="module")
def descriptions() -> dict[str, str]:
    return golden.shipped_descriptions()


@pytest.mark.parametrize("rule", SHIPPED)
def test_description_matches_its_golden_file(descriptions, rule):
    held = (GOLDEN / f"{rule}.md").read_text(encoding="utf-8")
    assert descriptions[rule] == held, (
        f"the description of {rule} changed: run `python -m casefind.describe.golden` and review the diff")


def test_golden_files_say_what_the_rules_say(descriptions):
    """Spot checks against the rules' own words, so a golden file is not just whatever was written."""
    frail = descriptions["frail"]
    assert "aged `min_age` (65) or over" in frail
    assert "| `efi` | number | `deficits` divided by 36. |" in frail
    assert "The number of emergency admissions in the 12 months before the list date." in frail
    assert "### `efi` (snomed, 2,040 codes, 35 categories)" in frail  # as its header says: 2,040 distinct codes
    high = descriptions["high_utilisers"]
    assert "in the top 0.5% of the rule's population by `cost_12m`" in high
    assert "`emergency_12m` is at least `min_admissions` (3)" in high
    hfrs = descriptions["hfrs"]
    assert "### `hfrs` (icd10, 109 prefixes, 109 categories)" in hfrs  # "all 109 categories and their points"
    assert "aged 75 or over" in hfrs


def test_golden_check_and_write(tmp_path, capsys):
    assert golden.main([str(tmp_path), "--check"]) == 1  # nothing there yet
    assert sorted(capsys.readouterr().err.split()) == sorted(
        ["differs:"] * len(SHIPPED) + [str(tmp_path / f"{r}.md") for r in SHIPPED])
    (tmp_path / "retired.md").write_text("an old rule's description")
    assert golden.main([str(tmp_path)]) == 0
    assert sorted(p.stem for p in tmp_path.glob("*.md")) == SHIPPED  # the retired rule's file is gone
    assert golden.main([str(tmp_path), "--check"]) == 0
    (tmp_path / "frail.md").write_text("stale")
    (tmp_path / "extra.md").write_text("no such rule")
    assert golden.differences(tmp_path) == ["frail.md", "extra.md"]
