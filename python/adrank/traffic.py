"""Traffic control: kill switches per advertiser and campaign, ad-load caps per region/placement.

Glossary: ``C`` candidates of one request.

Operators change these at run time (Python API or the HTTP control endpoints); each change is
written to the store first and then published as a new immutable snapshot, so it takes effect
on the next request and survives a restart. The request path reads the snapshot without a
lock: :meth:`TrafficControl.blocked` is two ``searchsorted`` over sorted id arrays.

Several processes may share one store (``adrank serve`` processes on one ``--state`` file): at
most every ``refresh_s`` seconds a read asks the store for its change counter
(:meth:`TrafficStore.version`, no table read) and reloads everything only when another process
wrote, so a kill switch or cap set through one process binds in all of them within
``refresh_s`` (plus one reload).

An ad-load cap bounds the share of a feed's slots that may hold ads. A cap is set for a
region, a placement, or a (region, placement) pair; the cap of a request is the smallest of
those that apply (1.0 where none does).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from adrank.sqlite_files import data_version, open_database

ANY = ""  # the stored scope of "every region" / "every placement"
DEFAULT_REFRESH_S = 0.5  # other processes' changes are seen within this (plus one reload)
MAX_REFRESH_S = 60.0


@dataclass(frozen=True)
class AdLoadCap:
    max_ad_share: float
    region: str | None = None  # None: every region
    placement: str | None = None  # None: every placement

    def __post_init__(self) -> None:
        if not (isinstance(self.max_ad_share, (int, float)) and 0 <= self.max_ad_share <= 1):
            raise ValueError(f"max_ad_share must be a number in [0, 1], got {self.max_ad_share!r}")
        if self.region is None and self.placement is None:
            raise ValueError("an ad-load cap needs a region, a placement, or both")
        for name in ("region", "placement"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and 0 < len(value) <= 64):
                raise ValueError(f"{name} must be a string of 1 to 64 characters, got {value!r}")


@dataclass(frozen=True)
class TrafficSnapshot:
    """What the request path reads: sorted killed ids and the caps, immutable."""

    killed_advertisers: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    killed_campaigns: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    caps: dict[tuple[str | None, str | None], AdLoadCap] = field(default_factory=dict)


class TrafficStore(Protocol):
    """Persistent kill switches (id -> reason) and ad-load caps."""

    def load(self) -> tuple[dict[int, str], dict[int, str], list[AdLoadCap]]: ...

    def version(self) -> int:
        """A change counter: differs from the value this handle read before if and only if
        another handle (another process) wrote since; cheap enough to poll every refresh."""
        ...

    def set_kill(self, scope: str, entity_id: int, reason: str | None) -> None:
        """Kills ``entity_id`` of ``scope`` (advertiser | campaign); ``reason=None`` revives it."""
        ...

    def set_cap(self, region: str | None, placement: str | None, share: float | None) -> None:
        """Sets the cap of a scope; ``share=None`` removes it."""
        ...


def state_of_rows(
    kills: Iterable[tuple[str, int, str]], caps: Iterable[tuple[str, str, float]]
) -> tuple[dict[int, str], dict[int, str], list[AdLoadCap]]:
    """A store's rows as :meth:`TrafficStore.load` returns them: ``kills`` as
    ``(scope, entity_id, reason)``, ``caps`` as ``(region, placement, max_ad_share)`` with ''
    for a scope the cap leaves open."""
    killed: dict[str, dict[int, str]] = {"advertiser": {}, "campaign": {}}
    for scope, entity_id, reason in kills:
        killed[scope][int(entity_id)] = reason
    return (
        killed["advertiser"],
        killed["campaign"],
        [AdLoadCap(share, region or None, placement or None) for region, placement, share in caps],
    )


class SQLiteTrafficStore:
    """Traffic control in SQLite: may share the pacing store's file (its own tables)."""

    def __init__(self, path: str | Path) -> None:
        self._db = open_database(path)
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(
                "CREATE TABLE IF NOT EXISTS kill_switches (scope TEXT NOT NULL, "
                "entity_id INTEGER NOT NULL, reason TEXT NOT NULL, "
                "PRIMARY KEY (scope, entity_id)) WITHOUT ROWID;"
                "CREATE TABLE IF NOT EXISTS ad_load_caps (region TEXT NOT NULL, "
                "placement TEXT NOT NULL, max_ad_share REAL NOT NULL, "
                "PRIMARY KEY (region, placement)) WITHOUT ROWID;"
            )

    def version(self) -> int:
        with self._lock:
            return data_version(self._db)

    def load(self) -> tuple[dict[int, str], dict[int, str], list[AdLoadCap]]:
        with self._lock:
            kills = self._db.execute(
                "SELECT scope, entity_id, reason FROM kill_switches"
            ).fetchall()
            caps = self._db.execute("SELECT region, placement, max_ad_share FROM ad_load_caps")
            caps = caps.fetchall()
        return state_of_rows(kills, caps)

    def set_kill(self, scope: str, entity_id: int, reason: str | None) -> None:
        with self._lock:
            if reason is None:
                self._db.execute(
                    "DELETE FROM kill_switches WHERE scope = ? AND entity_id = ?",
                    (scope, entity_id),
                )
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO kill_switches VALUES (?, ?, ?)",
                    (scope, entity_id, reason),
                )

    def set_cap(self, region: str | None, placement: str | None, share: float | None) -> None:
        key = (region or ANY, placement or ANY)
        with self._lock:
            if share is None:
                self._db.execute("DELETE FROM ad_load_caps WHERE region = ? AND placement = ?", key)
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO ad_load_caps VALUES (?, ?, ?)", (*key, share)
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()


class TrafficControl:
    """Kill switches and ad-load caps over ``store``, loaded from it at construction.

    ``refresh_s``: wall-clock seconds between checks for other processes' changes (0: every
    read).
    """

    def __init__(self, store: TrafficStore, refresh_s: float = DEFAULT_REFRESH_S) -> None:
        if isinstance(refresh_s, bool) or not isinstance(refresh_s, (int, float)):
            raise ValueError(f"refresh_s must be a number, got {refresh_s!r}")
        if not (math.isfinite(refresh_s) and 0 <= refresh_s <= MAX_REFRESH_S):
            raise ValueError(f"refresh_s must be in [0, {MAX_REFRESH_S}] seconds, got {refresh_s}")
        self.store = store
        self.refresh_s = float(refresh_s)
        self._lock = threading.Lock()
        with self._lock:
            self._reload()

    # -- the request path ----------------------------------------------------------------------

    def blocked(self, advertiser_ids: np.ndarray, campaign_ids: np.ndarray) -> np.ndarray:
        """True where the candidate's advertiser or campaign is killed (bool [C])."""
        snapshot = self.snapshot
        advertisers = np.asarray(advertiser_ids, dtype=np.int64)
        campaigns = np.asarray(campaign_ids, dtype=np.int64)
        if advertisers.shape != campaigns.shape:
            raise ValueError(
                f"advertiser_ids and campaign_ids must have the same shape, "
                f"got {advertisers.shape} and {campaigns.shape}"
            )
        return _member(advertisers, snapshot.killed_advertisers) | _member(
            campaigns, snapshot.killed_campaigns
        )

    def ad_load_cap(self, placement: str | None, region: str | None) -> float:
        """The largest share of feed slots that may hold ads for this placement and region."""
        caps = self.snapshot.caps
        shares = [
            caps[scope].max_ad_share
            for scope in ((region, None), (None, placement), (region, placement))
            if scope != (None, None) and scope in caps
        ]
        return min(shares, default=1.0)

    @property
    def snapshot(self) -> TrafficSnapshot:
        """The current kill switches and caps (reloaded first if a refresh is due and another
        process changed them)."""
        if time.monotonic() >= self._next_refresh and self._lock.acquire(blocking=False):
            try:  # a thread that finds the lock taken reads the snapshot as it is
                self._reload_if_changed()
            finally:
                self._lock.release()
        return self._snapshot

    # -- operator changes ------------------------------------------------------------------------

    def kill_advertiser(self, advertiser_id: int, reason: str = "") -> None:
        self._set_kill("advertiser", advertiser_id, reason)

    def revive_advertiser(self, advertiser_id: int) -> None:
        self._set_kill("advertiser", advertiser_id, None)

    def kill_campaign(self, campaign_id: int, reason: str = "") -> None:
        self._set_kill("campaign", campaign_id, reason)

    def revive_campaign(self, campaign_id: int) -> None:
        self._set_kill("campaign", campaign_id, None)

    def set_ad_load_cap(
        self, max_ad_share: float, region: str | None = None, placement: str | None = None
    ) -> None:
        cap = AdLoadCap(max_ad_share, region, placement)
        with self._lock:
            self.store.set_cap(region, placement, float(max_ad_share))
            self._caps[(region, placement)] = cap
            self._publish()

    def clear_ad_load_cap(self, region: str | None = None, placement: str | None = None) -> bool:
        """Removes a cap; False if there was none for that scope."""
        with self._lock:
            if (region, placement) not in self._caps:
                return False
            self.store.set_cap(region, placement, None)
            del self._caps[(region, placement)]
            self._publish()
            return True

    def kill_switches(self) -> dict[str, dict[int, str]]:
        """Killed ids with their reasons: ``{"advertisers": {...}, "campaigns": {...}}``."""
        with self._lock:
            self._reload_if_changed()
            return {"advertisers": dict(self._advertisers), "campaigns": dict(self._campaigns)}

    def ad_load_caps(self) -> list[AdLoadCap]:
        with self._lock:
            self._reload_if_changed()
            return list(self._caps.values())

    def _set_kill(self, scope: str, entity_id: int, reason: str | None) -> None:
        if isinstance(entity_id, bool) or not isinstance(entity_id, (int, np.integer)):
            raise ValueError(f"{scope}_id must be an integer, got {entity_id!r}")
        if not -(2**63) <= int(entity_id) < 2**63:
            raise ValueError(f"{scope}_id must fit in int64, got {entity_id}")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
            raise ValueError("reason must be a string of at most 500 characters")
        table = self._advertisers if scope == "advertiser" else self._campaigns
        with self._lock:
            self.store.set_kill(scope, int(entity_id), reason)  # durable before it is visible
            if reason is None:
                table.pop(int(entity_id), None)
            else:
                table[int(entity_id)] = reason
            self._publish()

    # -- internals (called with the lock held) ------------------------------------------------

    def _reload_if_changed(self) -> None:
        if time.monotonic() < self._next_refresh:
            return
        if self.store.version() != self._version:
            self._reload()
        else:
            self._next_refresh = time.monotonic() + self.refresh_s

    def _reload(self) -> None:
        self._version = self.store.version()  # before reading: a write after it is seen later
        self._next_refresh = time.monotonic() + self.refresh_s
        self._advertisers, self._campaigns, caps = self.store.load()
        self._caps = {(c.region, c.placement): c for c in caps}
        self._publish()

    def _publish(self) -> None:
        self._snapshot = TrafficSnapshot(
            killed_advertisers=np.array(sorted(self._advertisers), dtype=np.int64),
            killed_campaigns=np.array(sorted(self._campaigns), dtype=np.int64),
            caps=dict(self._caps),
        )


def _member(ids: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if len(sorted_set) == 0:
        return np.zeros(ids.shape, dtype=bool)
    rows = np.minimum(np.searchsorted(sorted_set, ids), len(sorted_set) - 1)
    return sorted_set[rows] == ids


__all__ = ["AdLoadCap", "SQLiteTrafficStore", "TrafficControl", "TrafficSnapshot", "TrafficStore"]
