"""Query engines: each evaluates the IR over a store. base.py is the interface (``Engine``)
and the registry (``ENGINES``, ``get_engine``); duckdb_sql is the reference, native the fast one."""
