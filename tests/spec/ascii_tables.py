"""Tables written as text, with named columns, for the spec tests and the docs built from them
(after ehrQL's tests/spec): a header, a rule of dashes, one line per row, cells split by |.

    patient | date       | code
    --------+------------+-----
    1       | 2026-01-03 | 123

An empty cell is a missing value. Imports nothing of casefind, so the docs generator can
read the cases without engines."""
from __future__ import annotations

import textwrap


def parse_table(text: str) -> list[dict[str, str | None]]:
    """The rows of ``text``, each a dict from column name to its cell (None when empty)."""
    lines = [line.strip() for line in textwrap.dedent(text).strip().splitlines() if line.strip()]
    if len(lines) < 2 or set(lines[1]) - set("-+| "):
        raise ValueError(f"a table needs a header and a line of dashes under it:\n{text}")
    header = _cells(lines[0])
    if "" in header or len(set(header)) != len(header):
        raise ValueError(f"every column needs a name, each once: {header}")
    rows = []
    for line in lines[2:]:
        cells = _cells(line)
        if len(cells) != len(header):
            raise ValueError(f"{len(cells)} cells for {len(header)} columns: {line!r}")
        rows.append({name: cell or None for name, cell in zip(header, cells)})
    return rows


def column_names(text: str) -> list[str]:
    return _cells(textwrap.dedent(text).strip().splitlines()[0].strip())


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().split("|")]


def typed(cell: str | None) -> object:
    """An expected value as written: empty is missing, true/false, a whole number, a decimal
    (5.0 is a decimal, 5 a whole number), else text (dates are compared as YYYY-MM-DD)."""
    if cell is None:
        return None
    if cell in ("true", "false"):
        return cell == "true"
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


def markdown(text: str) -> str:
    """A table as a Markdown table, for the docs (an empty cell shows as a dash)."""
    rows = parse_table(text)
    names = column_names(text)
    out = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    out += ["| " + " | ".join("—" if r[n] is None else r[n] for n in names) + " |" for r in rows]
    return "\n".join(out)
