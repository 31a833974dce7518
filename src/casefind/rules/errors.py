"""Rule errors that an analyst can act on: where (file:line:col), what, and a hint."""
from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A position in a rule file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def shifted(self, line: int, col: int) -> "Span":
        """A position inside an expression that starts at this span (line/col 1-based)."""
        if line == 1:
            return Span(self.file, self.line, self.col + col - 1)
        return Span(self.file, self.line + line - 1, col)


class RuleError(Exception):
    def __init__(self, span: Span | None, message: str, hint: str | None = None):
        self.span, self.message, self.hint = span, message, hint
        where = f"{span}: " if span else ""
        super().__init__(f"{where}{message}" + (f"\n  hint: {hint}" if hint else ""))


def did_you_mean(name: str, candidates) -> str | None:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
