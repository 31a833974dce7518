"""Ingest: read a source, validate every row against the contract, quarantine what breaks
it, and build a new store snapshot beside the live one."""
from casefind.ingest.pipeline import IngestSummary, StrictModeError, run_ingest  # noqa: F401
from casefind.ingest.sources import IngestError  # noqa: F401
