"""What a rule file says about itself in comments: its header and its parameters' notes.

The shipped rules open with a comment block (a one-line summary, then paragraphs that start
``Rationale:``, ``Sources:``, ``Codes:`` ...); a parameter may carry a note after its value
(``min_age: 65  # the eFI is validated from 65``). The language gives neither a key of its
own, so the catalogue reads them from the comments, as a reader of the file would.
"""
from __future__ import annotations

import re

# a paragraph label at the start of a comment line: "Sources:", "Index spell:",
# "Sources (definitions are as close as the data contract allows):"
_LABEL = re.compile(r"^([A-Z][A-Za-z][\w /-]{0,40}?)(\s*\([^)]*\))?:(\s|$)")


def header_lines(text: str) -> list[str]:
    """The comment lines before the first line of YAML, without their ``#``."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            if line.strip():
                break
            continue
        lines.append(line[1:].strip())
    return lines


def header_sections(text: str) -> dict[str, str]:
    """The header's labelled paragraphs (label -> text, lines joined); ``summary``: its first
    line. A paragraph ends at a blank comment line or the next label."""
    lines = header_lines(text)
    sections: dict[str, str] = {}
    if lines and lines[0]:
        sections["summary"] = lines[0]
    label, body = None, []

    def close() -> None:
        if label is not None and body:
            sections[label] = (sections.get(label, "") + " " + " ".join(body)).strip()

    for line in lines[1:]:
        m = _LABEL.match(line)
        if m or not line:
            close()
            label, body = (m.group(1), [line[m.end():].strip()]) if m else (None, [])
        elif label is not None:
            body.append(line)
    close()
    return sections


def sources(text: str) -> str:
    """The header's Sources (or Source) paragraphs, in order; "" when it names none."""
    sections = header_sections(text)
    return " ".join(v for k, v in sections.items() if k.lower().startswith("source"))


def summary(text: str) -> str:
    return header_sections(text).get("summary", "")


def trailing_comments(mapping) -> dict[str, str]:
    """key -> the comment after its value on the same line, for a ruamel mapping."""
    out: dict[str, str] = {}
    items = getattr(getattr(mapping, "ca", None), "items", {}) or {}
    for key, tokens in items.items():
        token = tokens[2] if isinstance(tokens, list) and len(tokens) > 2 else None
        if token is None or not hasattr(token, "value"):
            continue
        try:
            same_line = token.start_mark.line == mapping.lc.value(key)[0]
        except (AttributeError, KeyError, TypeError):
            same_line = False
        note = token.value.split("\n", 1)[0].lstrip("#").strip()
        if same_line and note:
            out[str(key)] = note
    return out
