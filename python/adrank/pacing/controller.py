"""The pacing controller: throttling, one feedback loop per campaign, all in one vectorized step.

Glossary: ``N`` campaigns (columns [N], sorted by campaign id); ``B`` daily budget; ``S(t)``
spend recorded so far today; ``F(t)`` the share of the day's traffic expected before ``t``
(:class:`~adrank.pacing.curve.TrafficCurve`); ``p`` the campaign's *participation*: the share of
requests it enters the auction in. Scoring's multiplier is 1 in those requests and 0 (not
eligible) in the others (:meth:`adrank.pacing.PacingService.multipliers` draws it).

Why throttling and not bid shading: scaling a bid down barely changes the win rate while the
campaign still outbids the field (the auction is flat near m = 1) and then drops it all at once,
so the spend a multiplier buys is neither proportional nor predictable. A campaign that enters
a share ``p`` of requests at its full bid spends ``p`` times what it would spend unthrottled,
whatever the auction looks like: the plant is linear, and its one unknown is the *demand*
``D``, what the campaign would spend per unit of traffic share at ``p = 1``.

Every ``update_interval_s`` (at the first request after it is due), for every campaign::

    spent     = S(t) - S(t0)                           recorded since the last step
    exposure  = p_served * (F(t) - F(t0))              traffic share it took part in (p_served:
                                                       p, or 0 while the reserve closed it)
    a         = 1 - exp(-(t - t0) / demand_window_s)
    D_spent   = (1 - a) * D_spent + a * spent          smoothed, so one quiet or busy
    D_exposed = (1 - a) * D_exposed + a * exposure     minute does not swing the estimate
    D         = D_spent / D_exposed                    demand per unit of traffic share
    T(t)      = B * F(t + lead_s)                      the target curve (times capped at
                                                       midnight): the traffic curve, lead_s
                                                       early, so the budget is gone by then
    h         = max(F(t + catch_up_s) - F(t), 1e-6)    traffic share of the next catch_up_s
    want      = (T(t + catch_up_s) - S(t)) / h         spend per unit of traffic share that
                                                       closes the gap to the target within
                                                       catch_up_s (the feedback)
    p         = clip(want / D, min_participation, min(1, max_increase * p))

With ``lead_s = 0``, ``want = B + (B * F(t) - S(t)) / h``: B per unit of traffic along the
curve, plus the gap spread over the horizon. The lead buys headroom: a campaign whose demand
only just covers its budget cannot catch up late in the day once it enters every request, so
it is kept a little ahead while it still can be. Near midnight the target is B and ``want``
becomes (B - S) / h: spend what remains over the traffic to come.

Corner cases: nothing exposed yet (``D_exposed <= 1e-12``): p is kept; ``want <= 0`` (ahead of
the target by more than the horizon's share): p = min_participation; exposed but nothing spent
(``D_spent = 0``): p grows by ``max_increase``; a ratio that is not a number (only from extreme
inputs): p is kept. A campaign without enough demand sits at p = 1; nothing winds up (no
integrator: D is measured, not accumulated).

A spent budget stops the campaign on every batch of events, not only at a step: it gets
multiplier 0 once ``S + reserve >= B``. The reserve covers every charge that may already be
owed but is not recorded yet, counted in charges and bounded the way a Poisson count is
(``bound(l) = ceil(l + 3 sqrt(l))``), so that it holds for a budget of a few charges too::

    c         = max(largest single charge seen today, max_charge)   max_charge: the most one
                                                        event may cost, when the budget says
    owed_open = open * (later + 1) / (impressions + 2)  charged clicks and conversions expected
                                                        from the impressions still inside their
                                                        attribution window (open), at the rate
                                                        seen today (a Beta(1, 1) prior)
    flight    = max(spend_rate, p * D * density(t)) * report_delay_s / mean charge
                                                        charges spent but not reported yet
    served    = ads this process served in the last report_delay_s (record_served): each may
                cost at once (at the day's rate of charged impressions) and later (as above)
    extra     = mean charge where c > 2 % of B, else 0
    reserve   = c * (min(open, bound(owed_open)) + max(1, bound(flight))
                     + min(served, bound(served * paid)) + min(served, bound(served * later)))
                + extra
    spend_rate = (1 - a) * spend_rate + a * spent / (t - t0)

A CPC campaign owes the clicks still to come from impressions already served, which land long
after a spend-rate estimate has decayed to nothing: ``open`` counts them. ``flight`` is the
recent spend rate, or, when a campaign has just been reopened at participation ``p`` (its past
rate 0), the rate its demand ``D`` spends at ``p`` along the traffic curve's density (share of
the day per second). ``served`` knows what the rate cannot: a burst of wins (competitors out of
budget in the evening, two ads of one campaign in one feed) is counted as it is served, before
any event reports it. At least one charge is always taken as in flight, and one more of the
mean size where one charge more than expected would overspend by more than 2 %: wins are rare
and bursty for a small campaign (two impressions in one minute after hours of none), which no
rate foresees.

With ``enabled=False`` only the cap is left: multiplier 1 until ``S >= B``, then 0. A campaign
without a budget is not paced (multiplier 1). Extreme but finite inputs (subnormal or huge
budgets) may overflow inside the step; the clip keeps every output in range, with no warning.
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

    ``enabled``: False keeps only the budget cap (multiplier 1 until the recorded spend reaches
    the budget, then 0; no throttling, no reserve); ``update_interval_s``: seconds between
    controller steps (60); ``initial_participation``: p of a campaign before its demand is
    measured (0.1: a cautious start, it doubles each step until spend shows up);
    ``min_participation``: the floor of p while budget remains (1e-4); ``max_increase``: the
    most p may grow in one step (2.0; it may fall at once); ``catch_up_s``: the time over which
    a gap to the target curve is closed (3600); ``demand_window_s``: time constant of the demand
    estimate (900); ``report_delay_s``: how late spend events typically arrive, for the reserve
    (120); ``day_offset_s``: seconds after UTC midnight at which a campaign day starts (0);
    ``lead_s``: how far ahead of the traffic curve the target runs (1800: the budget is
    planned to be gone half an hour before the day ends); ``attribution_window_s``: how long
    after an impression its clicks and conversions may still be charged (900); ``curve``: the
    expected traffic through the day.
    """

    enabled: bool = True
    update_interval_s: float = 60.0
    initial_participation: float = 0.1
    min_participation: float = 1e-4
    max_increase: float = 2.0
    catch_up_s: float = 3600.0
    demand_window_s: float = 900.0
    report_delay_s: float = 120.0
    day_offset_s: float = 0.0
    lead_s: float = 1800.0
    attribution_window_s: float = 900.0
    curve: TrafficCurve = field(default_factory=TrafficCurve)

    def __post_init__(self) -> None:
        checks = {
            "update_interval_s": 0 < self.update_interval_s <= 3600,
            "initial_participation": 0 < self.initial_participation <= 1,
            "min_participation": 0 < self.min_participation <= self.initial_participation,
            "max_increase": 1 < self.max_increase <= 100,
            "catch_up_s": 60 <= self.catch_up_s <= SECONDS_PER_DAY,
            "demand_window_s": 0 < self.demand_window_s <= SECONDS_PER_DAY,
            "report_delay_s": 0 <= self.report_delay_s <= 3600,
            "day_offset_s": 0 <= self.day_offset_s < SECONDS_PER_DAY,
            "lead_s": 0 <= self.lead_s <= 6 * 3600,
            "attribution_window_s": 0 <= self.attribution_window_s <= SECONDS_PER_DAY,
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
        return float(self.target_curve(self.day_fraction(timestamp)))

    def target_curve(self, day_fraction: float | np.ndarray) -> np.ndarray:
        """Share of the daily budget the target curve has spent at ``day_fraction`` of the day:
        ``F(day_fraction + lead_s)``, capped at 1."""
        ahead = np.minimum(np.asarray(day_fraction) + self.lead_s / SECONDS_PER_DAY, 1.0)
        return self.curve.cumulative(ahead)


def initial_state(
    config: PacingConfig, campaign_id: np.ndarray, spend: np.ndarray, now: float
) -> ControllerState:
    """The state at the start of a campaign day (or for campaigns added mid-day)."""
    n = len(campaign_id)
    return ControllerState(
        campaign_id=campaign_id,
        participation=np.full(n, float(config.initial_participation)),
        demand_spent=np.zeros(n),
        demand_exposed=np.zeros(n),
        spend_rate=np.zeros(n),
        spend_at_update=spend.astype(np.float64, copy=True),
        updated_at=float(now),
    )


MIN_EXPOSURE = 1e-12  # below this share of a day's traffic, demand is not measured yet
MIN_HORIZON = 1e-6  # the catch-up horizon's traffic share never goes below this


def controller_step(
    config: PacingConfig,
    state: ControllerState,
    budget: np.ndarray,
    spend: np.ndarray,
    now: float,
    served: np.ndarray | None = None,
) -> ControllerState:
    """One step of every campaign's controller at ``now`` (see the module docstring).

    ``state``, ``budget`` and ``spend`` are aligned columns [N] of the same campaign day
    (finite, >= 0), and ``now`` is in that day, at or after ``state.updated_at``. ``served``
    [N]: the participation actually applied since the last step (0 where the reserve closed
    the campaign; default: ``state.participation``), so that hours closed do not read as
    hours of no demand.
    """
    curve = config.curve
    day_then, day_now = config.day_fraction(state.updated_at), config.day_fraction(now)
    share_then, share_now = float(curve.cumulative(day_then)), float(curve.cumulative(day_now))
    elapsed = max(now - state.updated_at, 0.0)
    weight = -math.expm1(-elapsed / config.demand_window_s)
    ahead = min(day_now + config.catch_up_s / SECONDS_PER_DAY, 1.0)
    horizon = max(float(curve.cumulative(ahead)) - share_now, MIN_HORIZON)
    target_ahead = float(config.target_curve(ahead))
    p = state.participation
    ceiling = np.minimum(1.0, config.max_increase * p)
    with np.errstate(all="ignore"):  # huge or subnormal inputs: see the module docstring
        spent = np.maximum(spend - state.spend_at_update, 0.0)
        applied = p if served is None else served
        exposure = applied * max(share_now - share_then, 0.0)
        demand_spent = state.demand_spent + weight * (spent - state.demand_spent)
        demand_exposed = state.demand_exposed + weight * (exposure - state.demand_exposed)
        rate = spent / elapsed if elapsed > 0 else state.spend_rate
        spend_rate = state.spend_rate + weight * (rate - state.spend_rate)
        want = (budget * target_ahead - spend) / horizon
        # want / D = want * D_exposed / D_spent; D_spent = 0 (nothing spent): grow.
        wanted = np.where(demand_spent > 0, want * demand_exposed / demand_spent, np.inf)
    wanted = np.where(want > 0, wanted, 0.0)
    keep = (demand_exposed <= MIN_EXPOSURE) | np.isnan(wanted)  # not measured, or undefined
    participation = np.where(keep, p, np.clip(wanted, config.min_participation, ceiling))
    return ControllerState(
        campaign_id=state.campaign_id,
        participation=participation,
        demand_spent=demand_spent,
        demand_exposed=demand_exposed,
        spend_rate=spend_rate,
        spend_at_update=spend.astype(np.float64, copy=True),
        updated_at=float(now),
    )


@dataclass(frozen=True)
class Owed:
    """What each campaign may already owe beyond its recorded spend (columns [N], aligned with
    the controller state): the inputs of the reserve (see the module docstring)."""

    largest: np.ndarray  # largest single charge recorded today
    max_charge: np.ndarray  # the most one event may cost (0: unknown)
    impressions: np.ndarray  # impressions recorded today
    later: np.ndarray  # charged clicks and conversions recorded today
    charges: np.ndarray  # events that cost something, recorded today
    open: np.ndarray  # impressions still inside their attribution window
    served: np.ndarray  # ads this process served within report_delay_s (not reported yet)

    @classmethod
    def nothing(cls, n: int) -> Owed:
        return cls(*[np.zeros(n) for _ in range(7)])


SIGMAS = 3.0  # a count's upper bound: mean + 3 standard deviations of a Poisson count


def _bound(expected: np.ndarray) -> np.ndarray:
    return np.ceil(expected + SIGMAS * np.sqrt(expected))


ALLOWED_OVERSPEND = 0.02  # of budget: one charge past the reserve may land within it


def reserve_of(
    config: PacingConfig,
    state: ControllerState,
    budget: np.ndarray,
    spend: np.ndarray,
    owed: Owed,
    now: float,
) -> np.ndarray:
    """What each campaign may owe that is not recorded yet (float64 [N], see the docstring)."""
    charge = np.maximum(owed.largest, owed.max_charge)
    with np.errstate(all="ignore"):
        expected_open = owed.open * (owed.later + 1.0) / (owed.impressions + 2.0)
        demand = np.where(
            state.demand_exposed > MIN_EXPOSURE, state.demand_spent / state.demand_exposed, 0.0
        )
        density = float(config.curve.rate(config.day_fraction(now))) / SECONDS_PER_DAY
        rate = np.maximum(state.spend_rate, state.participation * demand * density)
        mean_charge = np.where(owed.charges > 0, spend / owed.charges, charge)
        flight = np.where(mean_charge > 0, rate * config.report_delay_s / mean_charge, 0.0)
        count = np.minimum(owed.open, _bound(expected_open)) + np.maximum(1.0, _bound(flight))
        # Served here, not reported yet: each may cost at once and bring a click later.
        served = owed.served
        paid_at_once = (owed.charges - owed.later + 1.0) / (owed.impressions + 2.0)
        later_rate = (owed.later + 1.0) / (owed.impressions + 2.0)
        count += np.minimum(served, _bound(served * paid_at_once))
        count += np.minimum(served, _bound(served * later_rate))
        extra = np.where(charge > ALLOWED_OVERSPEND * budget, mean_charge, 0.0)
        return charge * count + extra


def participation_of(
    config: PacingConfig,
    state: ControllerState,
    budget: np.ndarray,
    spend: np.ndarray,
    owed: Owed,
    now: float,
) -> np.ndarray:
    """The share of requests each campaign enters (float64 [N]): 0 once its budget is spent.

    Paced, "spent" means within the reserve of the budget (see the module docstring). With
    pacing off it means the recorded spend reached the budget.
    """
    if not config.enabled:
        return np.where(spend < budget, 1.0, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        open_ = spend + reserve_of(config, state, budget, spend, owed, now) < budget
    return np.where(open_, state.participation, 0.0)
