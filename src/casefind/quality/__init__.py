"""The data-quality report (``casefind quality``): rows, completeness, unknown codes,
implausible values, gaps and the trend, per table, provider and month (docs/quality.md)."""
