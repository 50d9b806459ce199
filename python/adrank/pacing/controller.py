"""The pacing controller: one feedback loop per campaign, all campaigns in one vectorized step.

Glossary: ``N`` campaigns (columns [N], sorted by campaign id); ``B`` daily budget; ``S(t)``
spend recorded so far today; ``F(t)`` the share of the day's traffic expected before ``t``
(:class:`~adrank.pacing.curve.TrafficCurve`); ``m`` the multiplier scoring applies to the
campaign's value (``ecpm = value * m - penalty``), ``u = log m``.

Every ``update_interval_s`` (at the first request after it is due), for every campaign::

    plan   = (B - S(t0)) * (F(t) - F(t0)) / (1 - F(t0))      spend the remaining budget along
                                                             the remaining expected traffic
    spent  = S(t) - S(t0)                                    what was recorded since then
    e      = clip((plan - spent) / plan, -1, 1)              > 0: behind plan, < 0: ahead
    u      = clip(u + ki * e + kp * (e - e_prev), log(min_multiplier), 0)
    m      = exp(u), and 0 once S >= B (also applied the moment a batch of events crosses B)

The plan re-spreads whatever is left over what is left of the day's traffic, so a campaign
behind its target curve ``B * F(t)`` is asked to catch up and one ahead slows down; the PI step
in log space (velocity form) moves the multiplier toward the value that spends the plan. ``u``
is clipped at 0, so a campaign without enough demand sits at m = 1 without winding up.
A campaign without a budget is not paced (m = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from adrank.pacing.curve import TrafficCurve
from adrank.pacing.store import ControllerState

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class PacingConfig:
    """Settings of the pacing controller (defaults tuned on ``adrank simulate``).

    ``enabled``: False keeps only the budget cap (m = 1 until the budget is spent, then 0);
    ``update_interval_s``: seconds between controller steps (60);
    ``kp``, ``ki``: proportional and integral gains of the step in log space (0.2, 0.25);
    ``initial_multiplier``: m at the start of a campaign day (0.5: start cautiously);
    ``min_multiplier``: the floor of m while budget remains (0.001);
    ``day_offset_s``: seconds after UTC midnight at which a campaign day starts (0);
    ``curve``: the expected traffic through the day.
    """

    enabled: bool = True
    update_interval_s: float = 60.0
    kp: float = 0.2
    ki: float = 0.25
    initial_multiplier: float = 0.5
    min_multiplier: float = 0.001
    day_offset_s: float = 0.0
    curve: TrafficCurve = field(default_factory=TrafficCurve)

    def __post_init__(self) -> None:
        checks = {
            "update_interval_s": 0 < self.update_interval_s <= 3600,
            "kp": 0 <= self.kp <= 5,
            "ki": 0 < self.ki <= 5,
            "initial_multiplier": 0 < self.initial_multiplier <= 1,
            "min_multiplier": 0 < self.min_multiplier <= 1,
            "day_offset_s": 0 <= self.day_offset_s < SECONDS_PER_DAY,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
                raise ValueError(f"pacing setting {name} is out of range, got {value!r}")

    def day_of(self, timestamp: float | np.ndarray) -> np.ndarray:
        """Integer index of the campaign day holding ``timestamp`` (unix seconds)."""
        return np.floor_divide(np.asarray(timestamp) - self.day_offset_s, SECONDS_PER_DAY).astype(
            np.int64
        )

    def day_fraction(self, timestamp: float) -> float:
        """How far into its campaign day ``timestamp`` is, in [0, 1)."""
        return ((timestamp - self.day_offset_s) % SECONDS_PER_DAY) / SECONDS_PER_DAY

    def day_start(self, day: int) -> float:
        return day * SECONDS_PER_DAY + self.day_offset_s

    def target_share(self, timestamp: float) -> float:
        """Share of the daily budget the target curve has spent by ``timestamp``."""
        return float(self.curve.cumulative(self.day_fraction(timestamp)))


def initial_state(
    config: PacingConfig, campaign_id: np.ndarray, spend: np.ndarray, now: float
) -> ControllerState:
    """The state at the start of a campaign day (or for campaigns added mid-day)."""
    n = len(campaign_id)
    return ControllerState(
        campaign_id=campaign_id,
        log_multiplier=np.full(n, math.log(config.initial_multiplier)),
        last_error=np.zeros(n),
        spend_at_update=spend.astype(np.float64, copy=True),
        updated_at=float(now),
    )


def controller_step(
    config: PacingConfig,
    state: ControllerState,
    budget: np.ndarray,
    spend: np.ndarray,
    now: float,
) -> ControllerState:
    """One step of every campaign's controller at ``now`` (see the module docstring).

    ``state``, ``budget`` and ``spend`` are aligned columns [N] of the same campaign day, and
    ``now`` is in that day, at or after ``state.updated_at``.
    """
    share_then = config.curve.cumulative(config.day_fraction(state.updated_at))
    share_now = config.curve.cumulative(config.day_fraction(now))
    remaining_then = np.maximum(budget - state.spend_at_update, 0.0)
    plan = remaining_then * (share_now - share_then) / max(1.0 - share_then, 1e-9)
    spent = spend - state.spend_at_update
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.where(plan > 0, np.clip((plan - spent) / plan, -1.0, 1.0), 0.0)
    step = config.ki * error + config.kp * (error - state.last_error)
    log_multiplier = np.clip(state.log_multiplier + step, math.log(config.min_multiplier), 0.0)
    return ControllerState(
        campaign_id=state.campaign_id,
        log_multiplier=log_multiplier,
        last_error=error,
        spend_at_update=spend.astype(np.float64, copy=True),
        updated_at=float(now),
    )


def multipliers_of(
    config: PacingConfig, state: ControllerState, budget: np.ndarray, spend: np.ndarray
) -> np.ndarray:
    """The multiplier of each campaign (float64 [N]): 0 where the budget is spent."""
    paced = np.exp(state.log_multiplier) if config.enabled else np.ones(len(budget))
    return np.where(spend < budget, paced, 0.0)
