"""The data contract: the tables analysts load, defined once (see schema.py)."""
from casefind.contract.schema import (  # noqa: F401
    ANALYSIS_TABLES,
    CONTRACT_VERSION,
    EVENT_TABLES,
    INPUT_EVENT_TABLES,
    INPUT_TABLES,
    TABLES,
    Column,
    Table,
    table,
)
