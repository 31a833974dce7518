"""The pyramid command's defaults, apart from the modules that compute it, so that the CLI
can show them in ``--help`` without importing what the computing needs (scipy through the
budgets' bands): every ``casefind`` command starts faster for it."""
from __future__ import annotations

DEFAULT_BANDS = "0-0.5,0.5-5,5-20,20-100"
OUTCOMES = ("next", "concurrent")
