"""Review lists: selection, reasons, evidence, validation and atomic output of a rule run."""
