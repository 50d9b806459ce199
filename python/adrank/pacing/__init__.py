"""Budget pacing: spend events, a persistent store, and a feedback controller per campaign.

The ranker asks :meth:`PacingService.multipliers` for the candidates' campaigns on every
request and passes the result to scoring as ``pacing``; spend events reach
:meth:`PacingService.record_events` through the Python API or ``POST /v1/events``.
"""

from adrank.pacing.controller import PacingConfig
from adrank.pacing.curve import TrafficCurve
from adrank.pacing.events import EventKind, RecordResult, SpendEvent
from adrank.pacing.service import CampaignPacing, PacingService
from adrank.pacing.sqlite_store import SQLitePacingStore
from adrank.pacing.store import ControllerState, PacingStore, RecordedSpend

__all__ = [
    "CampaignPacing",
    "ControllerState",
    "EventKind",
    "PacingConfig",
    "PacingService",
    "PacingStore",
    "RecordResult",
    "RecordedSpend",
    "SQLitePacingStore",
    "SpendEvent",
    "TrafficCurve",
]
