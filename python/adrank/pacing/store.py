"""Where spend, budgets and controller state live: the :class:`PacingStore` interface.

Glossary: ``N`` campaigns; a *day* is the integer index of a campaign day (see
:meth:`adrank.pacing.controller.PacingConfig.day_of`).

A store must make :meth:`PacingStore.record` atomic and idempotent: a batch is stored whole
or not at all, and an event id seen before (in any earlier batch, or earlier in the same
batch) adds nothing. Spend is kept per (campaign, day of the event's timestamp), so events that
arrive late or out of order count toward the day they happened. :class:`SQLitePacingStore`
is the default implementation; another store (Redis, a SQL server) implements the same methods.

Several serving processes share one store. Each caches what it read and polls
:meth:`PacingStore.version` (cheap: no table read) at most every refresh interval, reloading
only when it changed; the controller step is a compare-and-set
(:meth:`PacingStore.save_controller_state`), so one process's step wins and the others adopt it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from adrank.pacing.events import SpendEvent


@dataclass(frozen=True)
class RecordedSpend:
    """What :meth:`PacingStore.record` stored: counts, and the new spend per (campaign, day).

    ``campaign_id``, ``day``, ``cost`` (their sum), ``largest`` (the largest single cost),
    ``impressions``, ``later`` (charged clicks and conversions) and ``charges`` (events that
    cost something) are columns [G], one row per
    (campaign, day) group of the newly stored events; repeats of known ids are in
    ``duplicates`` and nowhere else.
    """

    accepted: int
    duplicates: int
    campaign_id: np.ndarray
    day: np.ndarray
    cost: np.ndarray
    largest: np.ndarray
    impressions: np.ndarray
    later: np.ndarray
    charges: np.ndarray

    @classmethod
    def nothing(cls) -> RecordedSpend:
        """A batch that stored no event."""
        empty = np.empty(0, dtype=np.int64)
        return cls(0, 0, empty, empty, *[np.empty(0)] * 5)


def id_value_columns(rows: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """``(id, value)`` rows of a store's query as columns: int64 ids [N], float64 values [N]."""
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    values = np.array([r[1] for r in rows], dtype=np.float64)
    return ids, values


@dataclass(frozen=True)
class ControllerState:
    """The pacing controller's memory for one day, as columns [N] sorted by campaign id.

    ``participation``: the share of requests the campaign enters (the controller's output);
    ``demand_spent``, ``demand_exposed``: smoothed spend and traffic share taken part in per
    step, whose ratio estimates the campaign's demand;
    ``spend_rate``: smoothed recorded spend per second (for the in-flight reserve);
    ``spend_at_update``: the campaign's recorded spend at the last update;
    ``updated_at``: unix seconds of the last update (one value for all campaigns).
    """

    campaign_id: np.ndarray
    participation: np.ndarray
    demand_spent: np.ndarray
    demand_exposed: np.ndarray
    spend_rate: np.ndarray
    spend_at_update: np.ndarray
    updated_at: float

    COLUMNS = (
        "participation",
        "demand_spent",
        "demand_exposed",
        "spend_rate",
        "spend_at_update",
    )


class PacingStore(Protocol):
    """Persistent pacing data: budgets, spend per campaign day, events seen, controller state."""

    def set_budget(
        self, campaign_id: int, daily_budget: float, max_charge: float | None = None
    ) -> None:
        """Sets the budget, and the most one event of the campaign can cost (None: unknown)."""
        ...

    def max_charges(self) -> tuple[np.ndarray, np.ndarray]:
        """``(campaign_id [N] int64 sorted, max_charge [N] float64)``, 0 where unknown."""
        ...

    def budgets(self) -> tuple[np.ndarray, np.ndarray]:
        """``(campaign_id [N] int64 sorted, daily_budget [N] float64)``."""
        ...

    def record(self, events: Sequence[SpendEvent], days: Sequence[int]) -> RecordedSpend:
        """Stores the events not seen before (``days[i]`` is event i's day), atomically."""
        ...

    def spend(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """``(campaign_id [N] int64 sorted, spend [N] float64)`` of ``day``'s events."""
        ...

    def largest_charges(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """``(campaign_id [N] int64 sorted, largest single cost [N] float64)`` of ``day``."""
        ...

    def event_counts(self, day: int) -> dict[int, tuple[int, int, int]]:
        """Impressions, clicks and conversions per campaign on ``day``."""
        ...

    def charge_counts(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """``(campaign_id [N] int64 sorted, counts [N, 3] float64)`` of ``day``: impressions,
        later charges (clicks and conversions that cost something), and charges (events that
        cost something)."""
        ...

    def open_impressions(self, day: int, since: float) -> tuple[np.ndarray, np.ndarray]:
        """``(campaign_id [N] int64 sorted, count [N] float64)`` of ``day``'s impressions
        stamped at ``since`` or later (a store may count from a little earlier, as the SQLite
        one does from the start of that minute): those whose clicks may still come."""
        ...

    def version(self) -> int:
        """A change counter: differs from the value this handle read before if and only if
        another handle (another process) wrote since. Cheap enough to poll every refresh
        interval; a networked store returns a counter that its writes bump."""
        ...

    def save_controller_state(
        self, day: int, state: ControllerState, replaces: float | None
    ) -> bool:
        """Stores ``state`` as ``day``'s controller state if the stored one is still the one the
        step started from (its ``updated_at`` is ``replaces``; None: none stored yet). False,
        storing nothing, when another process stored a step first (compare and set)."""
        ...

    def load_controller_state(self, day: int) -> ControllerState | None: ...

    def close(self) -> None: ...
