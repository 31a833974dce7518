"""The risk pyramid and opportunity analysis (``casefind pyramid``; docs/pyramid.md): the
population in bands of a score (0-0.5, 0.5-5, 5-20, 20-100% by default, after Wennberg and
Roland), with each band's people, emergency admissions per 1,000, relative rate, shares of
admissions and cost, and the share of its admissions a cut through that band alone needs,
per practice, locality and system.

bands.py ranks people into bands (the tie rule); compute.py counts per unit and band;
report.py writes the HTML, Parquet, CSV and JSON."""
