"""Query engines: each evaluates the IR over a store. duckdb_sql is the reference."""
