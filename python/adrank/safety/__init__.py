"""The content-safety gate: per-region rules over a catalog's creatives, decided once per
catalog snapshot, with an audit log of every block and a person's overrides
(:mod:`adrank.safety.rules`, :mod:`adrank.safety.gate`, :mod:`adrank.safety.control`)."""

from adrank.safety.gate import AuditEntry, SafetyGate
from adrank.safety.rules import RegionRules, SafetyRules

__all__ = ["AuditEntry", "RegionRules", "SafetyGate", "SafetyRules"]
