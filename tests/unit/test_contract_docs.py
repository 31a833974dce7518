from pathlib import Path

from casefind.contract.docs import render


def test_docs_match_the_schema():
    doc = Path(__file__).parents[2] / "docs" / "data-contract.md"
    assert doc.read_text() == render(), "regenerate: python -m casefind.contract.docs > docs/data-contract.md"
