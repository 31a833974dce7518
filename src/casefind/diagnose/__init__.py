"""Rule diagnostics (``casefind diagnose``): cohort size, turnover, overlap, PPV, crisis curve."""
