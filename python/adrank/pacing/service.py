"""The pacing object the ranker and the HTTP API hold: events in, multipliers out.

Glossary: ``C`` candidates of one request; ``N`` campaigns with a budget.

:meth:`PacingService.multipliers` is on the request path: one ``searchsorted`` over an
immutable snapshot, no lock and no Python per candidate. The controller step (every
``update_interval_s``) and the event writes run under a lock and swap in a new snapshot, so a
request sees either the old multipliers or the new ones, never a mix.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from adrank.pacing.controller import (
    PacingConfig,
    controller_step,
    initial_state,
    multipliers_of,
)
from adrank.pacing.events import RecordResult, SpendEvent, as_events
from adrank.pacing.store import ControllerState, PacingStore


@dataclass(frozen=True)
class CampaignPacing:
    """One campaign's pacing at a moment, for operators and reports."""

    campaign_id: int
    daily_budget: float | None  # None: no budget, not paced
    spend: float
    target_spend: float  # budget * F(now): where the target curve is
    multiplier: float
    exhausted: bool


@dataclass(frozen=True)
class _Snapshot:
    campaign_id: np.ndarray  # int64 [N], sorted
    multiplier: np.ndarray  # float64 [N]


class PacingService:
    """Budgets, spend and the controller of every campaign, kept in ``store``.

    The day's state is loaded from the store at the first call that needs it, so a service
    restarted mid-day on the same store resumes where the previous one stopped.
    """

    def __init__(self, store: PacingStore, config: PacingConfig | None = None) -> None:
        self.store = store
        self.config = config or PacingConfig()
        self._lock = threading.Lock()
        self._day: int | None = None
        empty = np.empty(0, dtype=np.int64)
        self._budget = np.empty(0)
        self._spend = np.empty(0)
        self._state = ControllerState(empty, np.empty(0), np.empty(0), np.empty(0), 0.0)
        self._snapshot = _Snapshot(empty, np.empty(0))

    # -- writes -------------------------------------------------------------------------------

    def set_budget(self, campaign_id: int, daily_budget: float, now: float) -> None:
        """Sets a campaign's daily budget (from today on); 0 stops the campaign."""
        if isinstance(campaign_id, bool) or not isinstance(campaign_id, (int, np.integer)):
            raise ValueError(f"campaign_id must be an integer, got {campaign_id!r}")
        if not (np.isfinite(daily_budget) and daily_budget >= 0):
            raise ValueError(f"daily_budget must be a finite number >= 0, got {daily_budget}")
        with self._lock:
            self.store.set_budget(int(campaign_id), float(daily_budget))
            self._load_day(int(self.config.day_of(now)), now, keep_state=True)

    def record_events(self, events: Iterable[SpendEvent | dict]) -> RecordResult:
        """Stores a batch of spend events atomically; repeats of a known event id are ignored.

        Raises ValueError (naming the bad event) before storing anything if one is malformed.
        A campaign whose spend reaches its budget gets multiplier 0 before this returns.
        """
        checked = as_events(events)
        days = self.config.day_of(np.array([e.timestamp for e in checked], dtype=np.float64))
        with self._lock:
            recorded = self.store.record(checked, days.tolist())
            if self._day is not None and recorded.accepted:
                today = recorded.day == self._day
                rows = np.searchsorted(self._state.campaign_id, recorded.campaign_id[today])
                rows = np.minimum(rows, max(len(self._spend) - 1, 0))
                known = (
                    self._state.campaign_id[rows] == recorded.campaign_id[today]
                    if len(self._spend)
                    else np.zeros(len(rows), dtype=bool)
                )
                np.add.at(self._spend, rows[known], recorded.cost[today][known])
                self._publish()
        return RecordResult(accepted=recorded.accepted, duplicates=recorded.duplicates)

    # -- reads --------------------------------------------------------------------------------

    def multipliers(self, campaign_ids: np.ndarray, now: float) -> np.ndarray:
        """The pacing multiplier of each candidate's campaign (float64 [C], in [0, 1]).

        ``campaign_ids`` is int64 [C] (repeats welcome); ``now`` unix seconds. Campaigns with
        no budget get 1.0; campaigns whose budget is spent get 0.0.
        """
        self.update(now)
        snapshot = self._snapshot
        ids = np.asarray(campaign_ids, dtype=np.int64)
        if len(snapshot.campaign_id) == 0:
            return np.ones(ids.shape)
        rows = np.minimum(np.searchsorted(snapshot.campaign_id, ids), len(snapshot.campaign_id) - 1)
        return np.where(snapshot.campaign_id[rows] == ids, snapshot.multiplier[rows], 1.0)

    def update(self, now: float) -> bool:
        """Runs the controller if a step is due at ``now``; True if it ran (or a day began)."""
        day = int(self.config.day_of(now))
        if day == self._day and now - self._state.updated_at < self.config.update_interval_s:
            return False
        with self._lock:
            if day != self._day:
                self._load_day(day, now, keep_state=False)
                return True
            if now - self._state.updated_at < self.config.update_interval_s:
                return False  # another thread stepped while this one waited
            self._state = controller_step(self.config, self._state, self._budget, self._spend, now)
            self.store.save_controller_state(day, self._state)
            self._publish()
            return True

    def status(self, campaign_id: int, now: float) -> CampaignPacing:
        self.update(now)
        with self._lock:
            ids = self._state.campaign_id
            row = int(np.searchsorted(ids, campaign_id))
            target_share = self.config.target_share(now)
            if row < len(ids) and ids[row] == campaign_id:
                budget, spend = float(self._budget[row]), float(self._spend[row])
                multiplier = float(self._snapshot.multiplier[row])
                return CampaignPacing(
                    campaign_id, budget, spend, budget * target_share, multiplier, spend >= budget
                )
        spend_ids, spends = self.store.spend(int(self.config.day_of(now)))
        spend = float(spends[spend_ids == campaign_id].sum())
        return CampaignPacing(campaign_id, None, spend, 0.0, 1.0, False)

    # -- internals (called with the lock held) ------------------------------------------------

    def _load_day(self, day: int, now: float, keep_state: bool) -> None:
        """Reads budgets and the day's spend and controller state from the store."""
        campaign_id, budget = self.store.budgets()
        spend_ids, spends = self.store.spend(day)
        spend = np.zeros(len(campaign_id))
        if len(spend_ids) and len(campaign_id):
            rows = np.minimum(np.searchsorted(spend_ids, campaign_id), len(spend_ids) - 1)
            spend = np.where(spend_ids[rows] == campaign_id, spends[rows], 0.0)
        fresh = initial_state(self.config, campaign_id, spend, now)
        previous = self._state if keep_state and day == self._day else None
        if previous is None:
            previous = self.store.load_controller_state(day)
        self._state = _carry_over(fresh, previous)
        self._day, self._budget, self._spend = day, budget, spend
        self._publish()

    def _publish(self) -> None:
        multiplier = multipliers_of(self.config, self._state, self._budget, self._spend)
        self._snapshot = _Snapshot(self._state.campaign_id, multiplier)


def _carry_over(fresh: ControllerState, previous: ControllerState | None) -> ControllerState:
    """``fresh`` with the rows of campaigns ``previous`` already had taken from it."""
    if previous is None or len(previous.campaign_id) == 0 or len(fresh.campaign_id) == 0:
        return fresh
    ids = fresh.campaign_id
    rows = np.minimum(np.searchsorted(previous.campaign_id, ids), len(previous.campaign_id) - 1)
    known = previous.campaign_id[rows] == ids

    def merged(name: str) -> np.ndarray:
        return np.where(known, getattr(previous, name)[rows], getattr(fresh, name))

    return ControllerState(
        campaign_id=ids,
        log_multiplier=merged("log_multiplier"),
        last_error=merged("last_error"),
        spend_at_update=merged("spend_at_update"),
        updated_at=previous.updated_at,
    )
