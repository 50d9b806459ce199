"""Where spend, budgets and controller state live: the :class:`PacingStore` interface.

Glossary: ``N`` campaigns; a *day* is the integer index of a campaign day (see
:meth:`adrank.pacing.controller.PacingConfig.day_of`).

A store must make :meth:`PacingStore.record` atomic and idempotent: a batch is stored whole
or not at all, and an event id seen before (in any earlier batch, or earlier in the same
batch) adds nothing. Spend is kept per (campaign, day of the event's timestamp), so events that
arrive late or out of order count toward the day they happened. :class:`SQLitePacingStore`
is the default implementation; another store (Redis, a SQL server) implements the same methods.
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

    ``campaign_id``, ``day`` and ``cost`` are columns [G], one row per (campaign, day) group of
    the newly stored events; repeats of known ids are in ``duplicates`` and nowhere else.
    """

    accepted: int
    duplicates: int
    campaign_id: np.ndarray
    day: np.ndarray
    cost: np.ndarray


@dataclass(frozen=True)
class ControllerState:
    """The pacing controller's memory for one day, as columns [N] sorted by campaign id.

    ``log_multiplier``: the controller's output, log of the multiplier (<= 0);
    ``last_error``: the relative spend error at the last update (for the P term);
    ``spend_at_update``: the campaign's recorded spend at the last update;
    ``updated_at``: unix seconds of the last update (one value for all campaigns).
    """

    campaign_id: np.ndarray
    log_multiplier: np.ndarray
    last_error: np.ndarray
    spend_at_update: np.ndarray
    updated_at: float


class PacingStore(Protocol):
    """Persistent pacing data: budgets, spend per campaign day, events seen, controller state."""

    def set_budget(self, campaign_id: int, daily_budget: float) -> None: ...

    def budgets(self) -> tuple[np.ndarray, np.ndarray]:
        """``(campaign_id [N] int64 sorted, daily_budget [N] float64)``."""
        ...

    def record(self, events: Sequence[SpendEvent], days: Sequence[int]) -> RecordedSpend:
        """Stores the events not seen before (``days[i]`` is event i's day), atomically."""
        ...

    def spend(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """``(campaign_id [N] int64 sorted, spend [N] float64)`` of ``day``'s events."""
        ...

    def event_counts(self, day: int) -> dict[int, tuple[int, int, int]]:
        """Impressions, clicks and conversions per campaign on ``day``."""
        ...

    def save_controller_state(self, day: int, state: ControllerState) -> None: ...

    def load_controller_state(self, day: int) -> ControllerState | None: ...

    def close(self) -> None: ...
