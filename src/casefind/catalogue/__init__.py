"""`casefind catalogue`: every rule, KPI file and budget file of a project, described.

Like dbt's ``docs generate``: per file its title, version, sources, codelists (with their
provenance and sha256), parameters, the tables and columns it reads, whether it has a
test file, and its last run, with whether the file changed since. ``collect.build`` makes
the catalogue (plain data, ``model``), ``console`` prints it, ``render`` writes it as one
self-contained HTML file.
"""
