"""Write (or check) the description of every shipped rule as a golden file.

    python -m casefind.describe.golden            # rewrite tests/golden/describe/<rule>.md
    python -m casefind.describe.golden --check    # exit 1 and name the files that differ

tests/unit/test_describe_golden.py compares the same descriptions with the files, so a change
to a shipped rule (or to the words) that is not regenerated fails the tests: the reviewer sees
the new description in the diff, beside the rule's change.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_FOLDER = Path("tests/golden/describe")


def shipped_descriptions() -> dict[str, str]:
    """rule file stem -> its Markdown description, for every shipped rule."""
    from casefind.describe.document import describe
    from casefind.describe.render import markdown
    from casefind.project import rule_files, shipped_rules
    from casefind.rules.compile import compile_rule

    return {p.stem: markdown(describe(compile_rule(p))) for p in rule_files(shipped_rules())}


def differences(folder: Path) -> list[str]:
    """The golden files in ``folder`` that are missing, stale, or of no shipped rule."""
    texts = shipped_descriptions()
    out = [f"{name}.md" for name, text in texts.items()
           if not (folder / f"{name}.md").is_file() or (folder / f"{name}.md").read_text(encoding="utf-8") != text]
    return out + sorted(p.name for p in folder.glob("*.md") if p.stem not in texts)


def write(folder: Path) -> list[Path]:
    from casefind.outputs import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    texts = shipped_descriptions()
    for stale in folder.glob("*.md"):
        if stale.stem not in texts:
            stale.unlink()
    return [write_atomic(folder / f"{name}.md", lambda tmp, t=text: Path(tmp).write_text(t, encoding="utf-8"))
            for name, text in texts.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m casefind.describe.golden", description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if any file differs")
    args = parser.parse_args(argv)
    if args.check:
        stale = differences(args.folder)
        for name in stale:
            print(f"differs: {args.folder / name}", file=sys.stderr)
        return 1 if stale else 0
    for path in write(args.folder):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
