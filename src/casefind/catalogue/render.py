"""The catalogue as one self-contained HTML file: inline CSS, no script, nothing fetched.

Like the KPI pack it is meant to be emailed and opened on locked-down machines. Every value
comes from the catalogue and is escaped (autoescape): a rule's title is text, never markup.
"""
from __future__ import annotations

from pathlib import Path

import jinja2

from casefind.catalogue.model import KIND_LABELS, SHIPPED_LABELS, Catalogue, status


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("casefind.catalogue", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(cat: Catalogue, *, title: str = "casefind catalogue") -> str:
    statuses = {e.anchor: dict(zip(("text", "css"), status(e))) for e in cat.entries}
    return _environment().get_template("catalogue.html.j2").render(
        cat=cat, title=title, kinds=KIND_LABELS, statuses=statuses, shipped=SHIPPED_LABELS)


def write_html(cat: Catalogue, out_path: Path, *, title: str = "casefind catalogue") -> Path:
    """Render and write atomically (a temporary file renamed into place); returns the path."""
    from casefind.reports.pack import write_atomic

    return write_atomic(Path(out_path), render_html(cat, title=title))
