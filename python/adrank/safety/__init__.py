"""The content-safety gate: per-region rules over a catalog's creatives, decided once per
catalog snapshot, with an audit log of every block and a person's overrides, kept in a store
that survives a restart (:mod:`adrank.safety.rules`, :mod:`adrank.safety.gate`,
:mod:`adrank.safety.control`, :mod:`adrank.stores.safety_audit`)."""

from adrank.safety.gate import SafetyGate
from adrank.safety.rules import RegionRules, SafetyRules
from adrank.stores.safety_audit import AuditEntry, SQLiteAuditStore, open_audit_store

__all__ = [
    "AuditEntry",
    "RegionRules",
    "SQLiteAuditStore",
    "SafetyGate",
    "SafetyRules",
    "open_audit_store",
]
