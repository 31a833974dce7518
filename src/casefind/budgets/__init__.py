"""Year of Care capitated budgets: budget files, tariffs, the cohort register, budget against
actual, risk share and outcomes (docs/budgets.md)."""
