"""The audit trail: an append-only, hash-chained log of every display of identifiable data
and every decision, kept in ``STORE/audit/`` (docs/audit.md)."""
from casefind.audit.export import export
from casefind.audit.log import ACTIONS, ROLES, AuditBusy, AuditError, entries, record
from casefind.audit.verify import VerifyResult, parse_anchor, verify

__all__ = ["ACTIONS", "ROLES", "AuditBusy", "AuditError", "VerifyResult", "entries", "export", "parse_anchor",
           "record", "verify"]
