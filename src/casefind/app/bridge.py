"""The app's one door to re-identification and the audit log: everything identifiable it
shows comes through ``identities_for`` (which checks and audits each call) and every decision,
print and download is written with ``record``."""
from __future__ import annotations

from casefind.audit import entries, record
from casefind.reidentify import Identity, identities_for

__all__ = ["Identity", "entries", "identities_for", "record"]
