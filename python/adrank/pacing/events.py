"""Spend events: what an ad was charged, and when, reported after it was served.

Glossary: ``E`` events in a batch.

An event is one billable (or merely counted) action of a served creative::

    event_id     str    unique per action; a repeat of an id is ignored (at-least-once delivery)
    campaign_id  int64  the campaign charged
    kind         str    impression | click | conversion
    cost         float  what was charged for it, in the account currency (0 when not billed:
                        a click of a CPM campaign); finite, >= 0 and <= MAX_COST
    timestamp    float  unix seconds of the action, 0 to MAX_TIMESTAMP (year 9999); it decides
                        the campaign day the spend counts toward, so an event that arrives late
                        or out of order lands in its own day

Events are validated as a whole batch before anything is stored: a batch with one malformed
event changes nothing. The bounds above keep every total finite; a service tightens them with
:class:`EventBounds` (a largest cost per event, a window of timestamps around now).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "MAX_COST",
    "MAX_EVENT_ID_LENGTH",
    "MAX_TIMESTAMP",
    "EventBounds",
    "EventKind",
    "RecordResult",
    "SpendEvent",
    "as_events",
]

MAX_EVENT_ID_LENGTH = 128
# A sum of a billion events of MAX_COST stays far below float64's largest value.
MAX_COST = 1e12
MAX_TIMESTAMP = 253_402_300_799.0  # 9999-12-31T23:59:59Z: every day index fits in int64


class EventKind(IntEnum):
    IMPRESSION = 0
    CLICK = 1
    CONVERSION = 2

    @classmethod
    def parse(cls, name: str | EventKind) -> EventKind:
        if isinstance(name, EventKind):
            return name
        try:
            return cls[str(name).upper()]
        except KeyError:
            raise ValueError(
                f"kind must be one of impression, click, conversion, got {name!r}"
            ) from None


@dataclass(frozen=True)
class SpendEvent:
    """One served action and its charge; checked on construction (see the module docstring)."""

    event_id: str
    campaign_id: int
    kind: EventKind
    cost: float
    timestamp: float

    def __post_init__(self) -> None:
        if not isinstance(self.event_id, str) or not 0 < len(self.event_id) <= MAX_EVENT_ID_LENGTH:
            raise ValueError(
                f"event_id must be a string of 1 to {MAX_EVENT_ID_LENGTH} characters, "
                f"got {self.event_id!r}"
            )
        if isinstance(self.campaign_id, bool) or not isinstance(self.campaign_id, int):
            raise ValueError(f"campaign_id must be an integer, got {self.campaign_id!r}")
        if not -(2**63) <= self.campaign_id < 2**63:
            raise ValueError(f"campaign_id must fit in int64, got {self.campaign_id}")
        object.__setattr__(self, "kind", EventKind.parse(self.kind))
        for name in ("cost", "timestamp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
            object.__setattr__(self, name, float(value))
        if self.cost < 0:
            raise ValueError(f"cost must be >= 0, got {self.cost}")
        if self.cost > MAX_COST:
            raise ValueError(f"cost must be <= {MAX_COST:g}, got {self.cost}")
        if self.timestamp < 0:
            raise ValueError(f"timestamp must be >= 0 (unix seconds), got {self.timestamp}")
        if self.timestamp > MAX_TIMESTAMP:
            raise ValueError(
                f"timestamp must be <= {MAX_TIMESTAMP:.0f} (year 9999), got {self.timestamp}"
            )


def as_events(events: Iterable[SpendEvent | dict]) -> list[SpendEvent]:
    """The batch as checked :class:`SpendEvent` objects; dicts are parsed by field name.

    Raises ValueError naming the first bad event's position; nothing is partially accepted.
    """
    checked: list[SpendEvent] = []
    for position, event in enumerate(events):
        if isinstance(event, SpendEvent):
            checked.append(event)
            continue
        try:
            checked.append(SpendEvent(**event))
        except (TypeError, ValueError) as error:
            raise ValueError(f"events[{position}]: {error}") from None
    return checked


@dataclass(frozen=True)
class EventBounds:
    """A service's tighter bounds on the events it accepts.

    max_cost   the largest cost of one event
    max_age_s  how far before ``now`` a timestamp may lie (events delivered late)
    max_lead_s how far after ``now`` it may lie (clocks of the reporting hosts running ahead)
    """

    max_cost: float
    max_age_s: float
    max_lead_s: float

    def __post_init__(self) -> None:
        for name in ("max_cost", "max_age_s", "max_lead_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")

    def violations(self, events: Iterable[SpendEvent], now: float) -> list[tuple[int, str, str]]:
        """``(position, field, message)`` of every event outside the bounds, in batch order."""
        earliest, latest = now - self.max_age_s, now + self.max_lead_s
        found = []
        for position, event in enumerate(events):
            if event.cost > self.max_cost:
                found.append((position, "cost", f"cost must be <= {self.max_cost:g}"))
            if not earliest <= event.timestamp <= latest:
                found.append(
                    (
                        position,
                        "timestamp",
                        f"timestamp must lie within {self.max_age_s:g} s before and "
                        f"{self.max_lead_s:g} s after the service's clock ({now:.0f})",
                    )
                )
        return found


@dataclass(frozen=True)
class RecordResult:
    """What a batch changed: events newly stored, and repeats of ids already seen (ignored)."""

    accepted: int
    duplicates: int
