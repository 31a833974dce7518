"""Matched-cohort evaluation of a programme (``casefind evaluate SPEC.yml``, docs/evaluate.md)."""
