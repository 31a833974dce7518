"""``casefind describe RULE``: a rule in plain English for a governance board, generated from
its compiled IR so that it can never drift from what runs (see docs/describe.md)."""
