"""Reports: SPC (XmR) charts, funnel plots and the self-contained monthly KPI pack.

Submodules: ``spc`` (XmR limits and Making Data Count signals), ``funnel`` (funnel-plot
limits), ``charts`` (inline SVG) and ``pack`` (``render_pack``). ``render_pack`` is loaded
on first use so that ``spc`` and ``funnel`` do not need Jinja2.
"""
from __future__ import annotations

__all__ = ["render_pack"]


def __getattr__(name: str):
    if name == "render_pack":
        from casefind.reports.pack import render_pack

        return render_pack
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
