"""Labels for impressions from events that arrive later: an attribution window, event time.

Glossary: ``impression`` a ranked, shown request (``request_id``, ``time``, feature ids);
``event`` an action on it (``event_id``, ``request_id``, ``kind``, ``time``), delivered at least
once and possibly before or long after its impression; ``window`` the attribution window in
seconds; ``clock`` the stream's event time: the largest impression or event time seen.

Rules:

- An impression is *ready* once ``clock >= time + window``; it is then emitted once, with
  label 1 when an event of the label kind with ``time <= event time <= time + window`` has
  arrived, else 0. Impressions come out in time order (ties in arrival order).
- A repeated ``event_id`` is ignored (``duplicate_events``); so is a repeated impression
  ``request_id`` while the first is still held (``duplicate_impressions``).
- An event for an impression already emitted is too late (``late_events``): it is dropped,
  never relabels what was trained on. An event whose impression has not arrived is kept until
  the clock passes its time + window (the impression could still come), then counted in
  ``unmatched_events`` and dropped.
- Memory stays bounded: emitted request ids and seen event ids are forgotten once their time is
  more than two windows behind the clock (an event that old is dropped either way: it counts
  as unmatched rather than late or duplicate).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass
class JoinStats:
    impressions: int = 0
    emitted: int = 0
    positives: int = 0
    duplicate_impressions: int = 0
    duplicate_events: int = 0
    late_events: int = 0
    unmatched_events: int = 0


@dataclass
class _Held:
    time: float
    features: tuple[int, ...]
    label: int = 0


@dataclass
class LabelJoiner:
    """Joins impressions and events by ``request_id`` under the rules above."""

    fields: tuple[str, ...]
    window_s: float
    label_kind: str = "click"
    stats: JoinStats = field(default_factory=JoinStats)
    clock: float = float("-inf")

    def __post_init__(self) -> None:
        if not self.window_s >= 0:
            raise ValueError(f"window_s must be >= 0, got {self.window_s}")
        self._held: dict[str, _Held] = {}
        self._order: list[tuple[float, int, str]] = []  # (time, arrival, request_id)
        self._arrivals = 0
        self._emitted: dict[str, float] = {}  # request_id -> impression time
        self._events_seen: dict[str, float] = {}  # event_id -> event time
        self._pending: dict[str, list[float]] = {}  # request_id -> label event times

    def add_impressions(
        self, request_ids: list[str], times: np.ndarray, features: Mapping[str, np.ndarray]
    ) -> None:
        for f in self.fields:
            if f not in features:
                raise KeyError(f"features has no field {f!r}")
        columns = [np.asarray(features[f], dtype=np.int64) for f in self.fields]
        for i, request_id in enumerate(request_ids):
            if request_id in self._held or request_id in self._emitted:
                self.stats.duplicate_impressions += 1
                continue
            t = float(times[i])
            held = _Held(t, tuple(int(c[i]) for c in columns))
            for event_time in self._pending.pop(request_id, ()):
                if t <= event_time <= t + self.window_s:
                    held.label = 1
            self._held[request_id] = held
            heapq.heappush(self._order, (t, self._arrivals, request_id))
            self._arrivals += 1
            self.stats.impressions += 1
            self.clock = max(self.clock, t)

    def add_events(
        self, event_ids: list[str], request_ids: list[str], kinds: list[str], times: np.ndarray
    ) -> None:
        for event_id, request_id, kind, time in zip(
            event_ids, request_ids, kinds, times, strict=True
        ):
            if event_id in self._events_seen:
                self.stats.duplicate_events += 1
                continue
            t = float(time)
            self._events_seen[event_id] = t
            self.clock = max(self.clock, t)
            if kind != self.label_kind:
                continue
            if request_id in self._emitted:
                self.stats.late_events += 1
            elif request_id in self._held:
                held = self._held[request_id]
                if held.time <= t <= held.time + self.window_s:
                    held.label = 1
            else:
                self._pending.setdefault(request_id, []).append(t)

    def ready(self, *, flush: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Impressions whose window has closed (all of them with ``flush``): features, labels."""
        rows: list[tuple[int, ...]] = []
        labels: list[int] = []
        while self._order and (flush or self._order[0][0] + self.window_s <= self.clock):
            _, _, request_id = heapq.heappop(self._order)
            held = self._held.pop(request_id)
            self._emitted[request_id] = held.time
            rows.append(held.features)
            labels.append(held.label)
        stale = [
            r for r, ts in self._pending.items() if flush or max(ts) + self.window_s < self.clock
        ]
        for request_id in stale:
            self.stats.unmatched_events += len(self._pending.pop(request_id))
        horizon = self.clock - 2 * self.window_s
        if flush:
            horizon = float("inf")
        self._emitted = {r: t for r, t in self._emitted.items() if t >= horizon}
        self._events_seen = {e: t for e, t in self._events_seen.items() if t >= horizon}
        self.stats.emitted += len(labels)
        self.stats.positives += sum(labels)
        matrix = np.array(rows, dtype=np.int64).reshape(len(rows), len(self.fields))
        features = {f: matrix[:, j].copy() for j, f in enumerate(self.fields)}
        return features, np.array(labels, dtype=np.int64)
