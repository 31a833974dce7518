"""The population store: patient-sorted, encoded, memory-mapped columnar snapshots."""
from casefind.store.reader import Store, StoredTable  # noqa: F401
from casefind.store.writer import StoreBusy, StoreError  # noqa: F401
