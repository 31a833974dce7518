"""The semantics section of docs/rules-language.md, written from the spec tests (after
ehrQL's ehrql/docs/specs.py): the tests are the only place the semantics are stated, so the
doc cannot drift from what both engines are held to.

Each module under tests/spec/<construct>/ has a ``title`` and a docstring (what the
construct means, a sentence or two); each test function there that takes ``spec_test`` is a
case, described by its docstring, with its tables, features and expected values. The
generator calls each case with a recorder in place of ``spec_test`` (no engine runs) and
renders what it was given. It lives with the spec tests, not in ``src/``, because it reads
them and ships with nothing.

Regenerate (tests/unit/test_rules_docs.py fails while the doc is out of date):

    PYTHONPATH=tests python tests/spec/docs.py
"""
from __future__ import annotations

import importlib.util
import inspect
import textwrap
from pathlib import Path

from ascii_tables import markdown

SPEC_DIR = Path(__file__).parent
DOC = SPEC_DIR.parents[1] / "docs" / "rules-language.md"
BEGIN = ("<!-- BEGIN semantics: generated from tests/spec by `PYTHONPATH=tests python tests/spec/docs.py`;"
         " edit the spec tests, not this section -->")
END = "<!-- END semantics -->"
# construct folders in the order the doc shows them, each with its heading
SECTIONS = {
    "aggregations": "Aggregations", "windows": "Windows and the evaluation date", "attributes": "Patient attributes",
    "operators": "Operators, functions and missing values", "case": "case", "codelists": "Codelists",
    "scores": "Weighted scores", "at": "at: another evaluation date", "trend": "trend",
    "population_rank": "percentile and top", "spells": "Hospital spells", "registers": "QOF registers",
    "reviews": "Review decisions", "kpis": "KPIs",
}


def spec_modules() -> list[tuple[str, object]]:
    """(construct folder, module) for every spec module, folders in SECTIONS order."""
    folders = sorted(p.name for p in SPEC_DIR.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    unplaced = set(folders) - set(SECTIONS)
    if unplaced:
        raise ValueError(f"spec folders {sorted(unplaced)} have no heading in tests/spec/docs.py SECTIONS")
    out = []
    for folder in (f for f in SECTIONS if f in folders):
        for path in sorted((SPEC_DIR / folder).glob("test_*.py")):
            spec = importlib.util.spec_from_file_location(f"spec_docs_{folder}_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            out.append((folder, module))
    return out


def cases(module) -> list[tuple[str, dict]]:
    """(description, the arguments given to spec_test) of each case in the module, in order."""
    out = []
    for name, fn in vars(module).items():
        takes_a_case = list(inspect.signature(fn).parameters) == ["spec_test"] if inspect.isfunction(fn) else False
        if name.startswith("test_") and takes_a_case:
            if not fn.__doc__:
                raise ValueError(f"{module.__name__}.{name} has no docstring to describe it")
            out += [(inspect.cleandoc(fn.__doc__), case) for case in _recorded(fn)]
    return out


def _recorded(test) -> list[dict]:
    """What ``test`` gives ``spec_test``, called with a recorder in its place."""
    given: list[dict] = []
    test(lambda **case: given.append(case))
    return given


def render_case(description: str, case: dict, shown: set) -> str:
    """A case as Markdown; a table already in ``shown`` (earlier in its module) is referred to."""
    parts = ["**" + " ".join(description.split()) + "**"]
    tables = [(f"`{t}`", text) for t, text in case["tables"].items()]
    for name, given in (case.get("codelists") or {}).items():
        if isinstance(given, Path):
            parts.append(f"codelist `{name}`: the published `{given.name}`")
        elif not given.lstrip().startswith("{"):
            tables.append((f"codelist `{name}`", given))
    for label, text in tables:
        if (label, text) in shown:
            parts.append(f"{label}: as above")
        else:
            shown.add((label, text))
            parts.append(f"{label}\n\n{markdown(text)}")
    parts.append(f"```\n{rule_text(case)}```")
    parts.append(f"gives{' (to the bit)' if case.get('exact') else ''}\n\n{markdown(case['expected'])}")
    return "\n\n".join(parts)


def rule_text(case: dict) -> str:
    lines = [f'as_of: "{case.get("as_of", "2026-10-31")}"']
    if case.get("population"):
        lines.append(f"population: {case['population']}")
    codelists = (case.get("codelists") or {}).items()
    inline = {k: v for k, v in codelists if isinstance(v, str) and v.lstrip().startswith("{")}
    if inline:
        lines += ["codelists:"] + [f"  {k}: {v.strip()}" for k, v in inline.items()]
    lines.append("features:")
    lines += [f"  {line}" for line in textwrap.dedent(case["features"]).strip().splitlines()]
    return "\n".join(lines) + "\n"


def render() -> str:
    """The generated section, markers included."""
    out = [BEGIN, "## Semantics, case by case",
           "Each case below is a spec test (`tests/spec/`): the tables in, the rule's features, and the values "
           "every engine must give, for every patient of the store (a dash is a missing value; patients not "
           "in a `patients` table are born 1950-01-01, female, registered since 2000-01-01)."]
    section = None
    for folder, module in spec_modules():
        found = cases(module)
        if not found:
            continue
        if folder != section:
            section = folder
            out.append(f"### {SECTIONS[folder]}")
        out.append(f"#### {module.title}\n\n{inspect.cleandoc(module.__doc__)}")
        shown: set = set()
        out += [render_case(description, case, shown) for description, case in found]
    return "\n\n".join(out + [END]) + "\n"


def updated(doc: str) -> str:
    """``doc`` with its generated section replaced (appended when it has none yet)."""
    if BEGIN.split(":")[0] not in doc:
        return doc.rstrip("\n") + "\n\n" + render()
    head, rest = doc.split(BEGIN.split(":")[0], 1)
    tail = rest.split(END, 1)[1]
    return head + render().rstrip("\n") + tail


if __name__ == "__main__":
    DOC.write_text(updated(DOC.read_text()))
    print(f"wrote {DOC}")
