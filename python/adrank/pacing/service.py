"""The pacing object the ranker and the HTTP API hold: events in, multipliers out.

Glossary: ``C`` candidates of one request; ``N`` campaigns with a budget.

:meth:`PacingService.multipliers` is on the request path: one ``searchsorted`` over an
immutable snapshot and one hash per candidate, no lock and no Python per candidate. It draws
the throttle: a campaign with participation ``p`` gets multiplier 1 in a share ``p`` of calls
and 0 (do not serve) in the others, the same for all of its candidates within one call. The
controller step (every ``update_interval_s``) and the event writes run under a lock and swap in
a new snapshot, so a request sees either the old participations or the new ones, never a mix.

Several processes may share one store (``adrank serve`` processes on one ``--state`` file). Each
one asks the store for its change counter (:meth:`PacingStore.version`) at most every
``refresh_s`` seconds of wall time, on the request path, and reloads budgets, spend and the
controller state only when another process wrote: a budget set or spend recorded through one
process drives every process's decisions within ``refresh_s`` (plus one reload). The controller
step is a compare-and-set on the store: the first process to step wins, the others adopt its
state, so all of them throttle by one controller fed by the spend of all of them.
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from adrank.pacing.controller import (
    SECONDS_PER_DAY,
    Owed,
    PacingConfig,
    controller_step,
    initial_state,
    participation_of,
)
from adrank.pacing.events import RecordResult, SpendEvent, as_events
from adrank.pacing.store import ControllerState, PacingStore

DEFAULT_REFRESH_S = 0.5  # other processes' writes are seen within this (plus one reload)
MAX_REFRESH_S = 60.0


@dataclass(frozen=True)
class CampaignPacing:
    """One campaign's pacing at a moment, for operators and reports."""

    campaign_id: int
    daily_budget: float | None  # None: no budget, not paced
    spend: float
    target_spend: float  # budget * F(now): where the target curve is
    multiplier: float  # participation: the share of requests it enters (0 once exhausted)
    exhausted: bool


@dataclass(frozen=True)
class _Snapshot:
    campaign_id: np.ndarray  # int64 [N], sorted
    participation: np.ndarray  # float64 [N]


class PacingService:
    """Budgets, spend and the controller of every campaign, kept in ``store``.

    The day's state is loaded from the store at the first call that needs it, so a service
    restarted mid-day on the same store resumes where the previous one stopped. ``seed`` seeds
    the throttle's draws (reproducible simulations). ``refresh_s``: wall-clock seconds between
    checks for other processes' writes (0: every call).
    """

    def __init__(
        self,
        store: PacingStore,
        config: PacingConfig | None = None,
        seed: int = 0,
        refresh_s: float = DEFAULT_REFRESH_S,
    ) -> None:
        if isinstance(refresh_s, bool) or not isinstance(refresh_s, (int, float)):
            raise ValueError(f"refresh_s must be a number, got {refresh_s!r}")
        if not (math.isfinite(refresh_s) and 0 <= refresh_s <= MAX_REFRESH_S):
            raise ValueError(f"refresh_s must be in [0, {MAX_REFRESH_S}] seconds, got {refresh_s}")
        self.store = store
        self.config = config or PacingConfig()
        self.refresh_s = float(refresh_s)
        self._lock = threading.Lock()
        self._version: int | None = None  # the store's change counter when last loaded
        self._next_refresh = -math.inf  # time.monotonic() of the next check for others' writes
        self._stored_at: float | None = None  # updated_at of the stored step self._state is
        self._day: int | None = None
        self._quiet = (np.inf, -np.inf)  # [from, until): same day, no step due (unix seconds)
        self._draws = itertools.count(int(seed) * 1_000_003)
        empty = np.empty(0, dtype=np.int64)
        self._budget = np.empty(0)
        self._spend = np.empty(0)
        self._owed = Owed.nothing(0)  # what may be owed beyond the recorded spend
        # [unix seconds, campaign ids, their rows] of ads served here, until their events are due
        self._served: collections.deque[list] = collections.deque()
        self._now = -math.inf  # the latest time asked about: open impressions are counted at it
        columns = [np.empty(0)] * len(ControllerState.COLUMNS)
        self._state = ControllerState(empty, *columns, updated_at=0.0)
        self._snapshot = _Snapshot(empty, np.empty(0))

    # -- writes -------------------------------------------------------------------------------

    def set_budget(
        self, campaign_id: int, daily_budget: float, now: float, max_charge: float | None = None
    ) -> None:
        """Sets a campaign's daily budget (from today on); 0 stops the campaign.

        ``max_charge``: the most one of its events can cost (a CPC campaign's bid per click, a
        CPM campaign's bid / 1000), when known: the reserve then holds even before the largest
        charges have been seen, so a budget of a few charges is not overspent either.
        """
        if isinstance(campaign_id, bool) or not isinstance(campaign_id, (int, np.integer)):
            raise ValueError(f"campaign_id must be an integer, got {campaign_id!r}")
        if not (np.isfinite(daily_budget) and daily_budget >= 0):
            raise ValueError(f"daily_budget must be a finite number >= 0, got {daily_budget}")
        if max_charge is not None and not (np.isfinite(max_charge) and max_charge > 0):
            raise ValueError(f"max_charge must be a finite number > 0, got {max_charge}")
        with self._lock:
            self._now = max(self._now, now)
            charge = None if max_charge is None else float(max_charge)
            self.store.set_budget(int(campaign_id), float(daily_budget), charge)
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
                owed = self._owed
                np.maximum.at(owed.largest, rows[known], recorded.largest[today][known])
                np.add.at(owed.impressions, rows[known], recorded.impressions[today][known])
                np.add.at(owed.later, rows[known], recorded.later[today][known])
                np.add.at(owed.charges, rows[known], recorded.charges[today][known])
                self._count_open()
                self._count_served()
                self._publish()
        return RecordResult(accepted=recorded.accepted, duplicates=recorded.duplicates)

    def record_served(self, campaign_ids: np.ndarray, now: float) -> None:
        """Counts ads of ``campaign_ids`` (int64 [K], repeats welcome) just served at ``now``.

        Until their events are due (``report_delay_s``), the reserve holds back what they may
        cost, so a burst of wins closes a campaign before any event reports it. Only this
        process's ads are known here; other processes' arrive as events.
        """
        ids = np.asarray(campaign_ids, dtype=np.int64).ravel()
        if ids.size == 0 or not self.config.enabled:
            return
        with self._lock:
            if self._day is None:
                return
            self._now = max(self._now, now)
            rows = self._rows_of(ids)
            self._served.append([float(now), ids, rows])
            np.add.at(self._owed.served, rows, 1.0)
            self._count_served()
            self._publish()

    # -- reads --------------------------------------------------------------------------------

    def multipliers(self, campaign_ids: np.ndarray, now: float) -> np.ndarray:
        """Whether each candidate's campaign takes part in this request (float64 [C], 0 or 1).

        ``campaign_ids`` is int64 [C] (repeats welcome: a campaign's candidates share one
        draw); ``now`` unix seconds. Each call is one request: a campaign with participation
        ``p`` gets 1.0 with probability ``p``, else 0.0 (do not serve). Campaigns with no budget
        always get 1.0; campaigns whose budget is spent always get 0.0.
        """
        ids = np.asarray(campaign_ids, dtype=np.int64)
        participation = self.participation(ids, now)
        draw = _uniform(ids, next(self._draws))
        return (draw < participation).astype(np.float64)

    def participation(self, campaign_ids: np.ndarray, now: float) -> np.ndarray:
        """The share of requests each campaign takes part in (float64 [C], in [0, 1])."""
        self.update(now)
        snapshot = self._snapshot
        ids = np.asarray(campaign_ids, dtype=np.int64)
        if len(snapshot.campaign_id) == 0:
            return np.ones(ids.shape)
        rows = np.minimum(np.searchsorted(snapshot.campaign_id, ids), len(snapshot.campaign_id) - 1)
        return np.where(snapshot.campaign_id[rows] == ids, snapshot.participation[rows], 1.0)

    def update(self, now: float) -> bool:
        """Runs the controller if a step is due at ``now``; True if it ran (or a day began).

        At most every ``refresh_s`` it also checks the store for other processes' writes.
        """
        self._now = max(self._now, now)  # a race may lose a newer time for a moment: harmless
        if time.monotonic() >= self._next_refresh:
            self._refresh(now)
        if self._quiet[0] <= now < self._quiet[1]:
            return False  # the request path: no step due, still the same day
        day = int(self.config.day_of(now))
        with self._lock:
            if day != self._day:
                self._load_day(day, now, keep_state=False)
                return True
            self._reload_if_changed(now)  # step from the latest spend and state
            if now - self._state.updated_at < self.config.update_interval_s:
                self._schedule()
                return False  # another thread or process stepped while this one waited
            served = self._snapshot.participation  # 0 where the reserve closed it
            state = controller_step(
                self.config, self._state, self._budget, self._spend, now, served
            )
            if self.store.save_controller_state(day, state, self._stored_at):
                self._state, self._stored_at = state, state.updated_at
                self._count_open()  # impressions past their window owe nothing any more
                self._count_served()
                self._publish()
            else:  # another process stepped first: adopt its step
                self._load_day(day, now, keep_state=True)
            return True

    def _refresh(self, now: float) -> None:
        """Reloads from the store if another process wrote since the last check."""
        if not self._lock.acquire(blocking=False):
            return  # another thread is refreshing or writing: this request uses the snapshot
        try:
            if time.monotonic() >= self._next_refresh and self._day is not None:
                self._reload_if_changed(now)
        finally:
            self._lock.release()

    def status(self, campaign_id: int, now: float) -> CampaignPacing:
        self.update(now)
        with self._lock:
            ids = self._state.campaign_id
            row = int(np.searchsorted(ids, campaign_id))
            target_share = self.config.target_share(now)
            if row < len(ids) and ids[row] == campaign_id:
                budget, spend = float(self._budget[row]), float(self._spend[row])
                multiplier = float(self._snapshot.participation[row])
                return CampaignPacing(
                    campaign_id, budget, spend, budget * target_share, multiplier, multiplier == 0
                )
        spend_ids, spends = self.store.spend(int(self.config.day_of(now)))
        spend = float(spends[spend_ids == campaign_id].sum())
        return CampaignPacing(campaign_id, None, spend, 0.0, 1.0, False)

    # -- internals (called with the lock held) ------------------------------------------------

    def _reload_if_changed(self, now: float) -> None:
        self._next_refresh = time.monotonic() + self.refresh_s
        if self.store.version() != self._version:
            self._load_day(self._day, now, keep_state=True)

    def _load_day(self, day: int, now: float, keep_state: bool) -> None:
        """Reads budgets, the day's spend and largest charges, and controller state.

        With ``keep_state``, the controller state held here is kept unless the store holds a
        later step (another process's).
        """
        self._version = self.store.version()  # before reading: a write after it is seen later
        self._next_refresh = time.monotonic() + self.refresh_s
        campaign_id, budget = self.store.budgets()
        spend = _aligned(campaign_id, *self.store.spend(day))
        counted, counts = self.store.charge_counts(day)
        owed = Owed(
            largest=_aligned(campaign_id, *self.store.largest_charges(day)),
            max_charge=_aligned(campaign_id, *self.store.max_charges()),
            impressions=_aligned(campaign_id, counted, counts[:, 0]),
            later=_aligned(campaign_id, counted, counts[:, 1]),
            charges=_aligned(campaign_id, counted, counts[:, 2]),
            open=np.zeros(len(campaign_id)),
            served=np.zeros(len(campaign_id)),
        )
        fresh = initial_state(self.config, campaign_id, spend, now)
        stored = self.store.load_controller_state(day)
        previous, stored_at = None, None
        if keep_state and day == self._day:
            previous, stored_at = self._state, self._stored_at
        if stored is not None and (previous is None or stored.updated_at > previous.updated_at):
            previous, stored_at = stored, stored.updated_at
        self._state, self._stored_at = _carry_over(fresh, previous), stored_at
        self._day, self._budget, self._spend, self._owed = day, budget, spend, owed
        self._count_open()
        self._count_served(rebuild=True)
        self._publish()

    def _count_served(self, rebuild: bool = False) -> None:
        """Keeps ``_owed.served``: ads served here within ``report_delay_s`` of ``_now``, per
        campaign. Incremental (expired batches are subtracted); ``rebuild`` recounts all
        after the campaign set changed."""
        counts, ids = self._owed.served, self._state.campaign_id
        if rebuild:
            counts[:] = 0.0
            for batch in self._served:
                batch[2] = self._rows_of(batch[1])
                np.add.at(counts, batch[2], 1.0)
        since = self._now - self.config.report_delay_s
        while self._served and self._served[0][0] < since:
            np.subtract.at(counts, self._served.popleft()[2], 1.0)
        if len(ids) == 0:
            counts[:] = 0.0

    def _rows_of(self, campaign_ids: np.ndarray) -> np.ndarray:
        """Rows of ``campaign_ids`` in the state's columns (the unknown ones dropped)."""
        ids = self._state.campaign_id
        if len(ids) == 0:
            return np.empty(0, dtype=np.int64)
        rows = np.minimum(np.searchsorted(ids, campaign_ids), len(ids) - 1)
        return rows[ids[rows] == campaign_ids]

    def _count_open(self) -> None:
        """Counts today's impressions still inside their attribution window at ``_now``."""
        since = self._now - self.config.attribution_window_s
        ids, counts = self.store.open_impressions(self._day, since)
        self._owed.open[:] = _aligned(self._state.campaign_id, ids, counts)

    def _publish(self) -> None:
        participation = participation_of(
            self.config, self._state, self._budget, self._spend, self._owed, self._now
        )
        self._snapshot = _Snapshot(self._state.campaign_id, participation)
        self._schedule()

    def _schedule(self) -> None:
        day_start = self.config.day_start(self._day)
        next_step = self._state.updated_at + self.config.update_interval_s
        self._quiet = (day_start, min(next_step, day_start + SECONDS_PER_DAY))


def _aligned(campaign_id: np.ndarray, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` (of sorted ``ids``) at ``campaign_id`` [N] (sorted), 0 where absent."""
    if len(ids) == 0 or len(campaign_id) == 0:
        return np.zeros(len(campaign_id))
    rows = np.minimum(np.searchsorted(ids, campaign_id), len(ids) - 1)
    return np.where(ids[rows] == campaign_id, values[rows], 0.0)


def _carry_over(fresh: ControllerState, previous: ControllerState | None) -> ControllerState:
    """``fresh`` with the rows of campaigns ``previous`` already had taken from it."""
    if previous is None or len(previous.campaign_id) == 0 or len(fresh.campaign_id) == 0:
        return fresh
    ids = fresh.campaign_id
    rows = np.minimum(np.searchsorted(previous.campaign_id, ids), len(previous.campaign_id) - 1)
    known = previous.campaign_id[rows] == ids
    merged = [
        np.where(known, getattr(previous, name)[rows], getattr(fresh, name))
        for name in ControllerState.COLUMNS
    ]
    return ControllerState(ids, *merged, updated_at=previous.updated_at)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _uniform(campaign_ids: np.ndarray, draw: int) -> np.ndarray:
    """One uniform number in [0, 1) per campaign for draw number ``draw`` (splitmix64 hash).

    Equal campaign ids get equal numbers within a draw; different draws are independent.
    """
    key = np.uint64(draw * 0x94D049BB133111EB % 2**64)  # Python ints: no overflow warning
    z = campaign_ids.astype(np.uint64) * _GOLDEN + key
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
