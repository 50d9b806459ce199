"""Replays one synthetic day through a ``rank`` callable (the Ranker) and bills what it shows.

Glossary: ``N`` campaigns; ``M`` = 1440 minutes of the day.

Each minute brings Poisson(requests * share of the minute in the world's traffic curve)
requests, each with a random user and ``candidates`` random creatives
(:meth:`SyntheticWorld.request`). Each request ranks ``k`` ads, the mixed feed
(:func:`adrank.allocation.build_feed`) decides which are shown, and each shown ad is billed: CPM
per impression (price / 1000), CPC per click, oCPM per impression at ``price * p_ctr * p_cvr``
(oCPM bids per conversion and pays per impression); the shown ads are told to pacing at once
(:meth:`PacingService.record_served`), as a serving process knows what it served. The model's
predicted rates are taken as the truth: clicks are drawn with probability ``p_ctr`` and
conversions with ``p_cvr``, as if the model were calibrated, so the day's demand is what the
ranker believes it to be. Spend events carry the impression's time and reach pacing late, as
they do in production, each kind by its own lag (:class:`adrank.simulation.delays.EventDelays`;
by default impressions at the end of their minute, clicks up to 2 minutes later, conversions an
exponential 5 minutes later), so batches arrive out of order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from adrank.allocation import AllocationRules, build_feed
from adrank.orchestrator.request import RankRequest, RankResponse
from adrank.orchestrator.scoring import Objective
from adrank.pacing import PacingService, SpendEvent
from adrank.simulation.delays import PROMPT, EventDelays
from adrank.simulation.world import DAY_START, SimClock, SyntheticWorld

MINUTES = 1440
FEED_RULES = AllocationRules(first_ad_position=1, min_gap=2, max_ad_share=0.25, exchange_rate=200)
FEED_LENGTH = 8


@dataclass(frozen=True)
class DayResult:
    campaign_ids: np.ndarray  # int64 [N]
    minute_spend: np.ndarray  # float64 [N, M]: spend billed for impressions of each minute
    minute_participation: np.ndarray  # float64 [N, M]: pacing's participation at each minute
    largest_charge: np.ndarray  # float64 [N]: the largest single charge of the day
    requests: int
    impressions: int

    @property
    def spend(self) -> np.ndarray:
        return self.minute_spend.sum(axis=1)


def simulate_day(
    world: SyntheticWorld,
    rank: Callable[[RankRequest], RankResponse],
    pacing: PacingService,
    clock: SimClock,
    requests: int,
    seed: int = 0,
    k: int = 3,
    candidates: int = 100,
    delays: EventDelays = PROMPT,
) -> DayResult:
    """Runs the day; every event ends up recorded in ``pacing`` (late ones after midnight)."""
    rng = np.random.default_rng(seed)
    campaign_ids = world.campaign_ids
    objective_of = dict(
        zip(world.catalog.campaign_id.tolist(), world.catalog.objective.tolist(), strict=False)
    )
    cpm, cpc, ocpm = int(Objective.CPM), int(Objective.CPC), int(Objective.OCPM)
    minute_spend = np.zeros((len(campaign_ids), MINUTES))
    minute_participation = np.zeros((len(campaign_ids), MINUTES))
    largest = np.zeros(len(campaign_ids))
    shares = np.diff(world.traffic.cumulative(np.arange(MINUTES + 1) / MINUTES))
    pending: dict[int, list[SpendEvent]] = defaultdict(list)
    served = impressions = 0
    for minute in range(MINUTES):
        start = DAY_START + minute * 60.0
        arrivals = rng.poisson(requests * shares[minute])
        minute_participation[:, minute] = pacing.participation(campaign_ids, start)
        for j in range(arrivals):
            clock.now = start + 60.0 * j / arrivals
            response = rank(world.request(rng, f"r{served}", clock.now, candidates, k))
            served += 1
            organic = np.sort(rng.exponential(1.0, FEED_LENGTH))[::-1]
            feed = build_feed(organic, response.ecpm, FEED_RULES)
            pacing.record_served(response.campaign_id[feed.placed_ads], clock.now)
            for ad in feed.placed_ads.tolist():
                impressions += 1
                campaign = int(response.campaign_id[ad])
                row = int(np.searchsorted(campaign_ids, campaign))
                price, p_ctr, p_cvr = (
                    float(response.price[ad]),
                    float(response.p_ctr[ad]),
                    float(response.p_cvr[ad]),
                )
                objective = objective_of[campaign]
                clicked = rng.random() < p_ctr
                converted = clicked and rng.random() < p_cvr
                costs = {
                    "impression": price / 1000.0 if objective == cpm else 0.0,
                    "click": price if objective == cpc else 0.0,
                    "conversion": 0.0,
                }
                if objective == ocpm:
                    costs["impression"] = price * p_ctr * p_cvr
                event_id = f"{response.request_id}-{ad}"
                pending[minute + delays.impression.draw(rng)].append(
                    SpendEvent(
                        f"{event_id}-i", campaign, "impression", costs["impression"], clock.now
                    )
                )
                minute_spend[row, minute] += costs["impression"]
                largest[row] = max(largest[row], costs["impression"])
                if clicked:
                    late = minute + delays.click.draw(rng)
                    pending[late].append(
                        SpendEvent(f"{event_id}-c", campaign, "click", costs["click"], clock.now)
                    )
                    minute_spend[row, minute] += costs["click"]
                    largest[row] = max(largest[row], costs["click"])
                if converted:
                    late = minute + delays.conversion.draw(rng)
                    pending[late].append(
                        SpendEvent(f"{event_id}-v", campaign, "conversion", 0.0, clock.now)
                    )
        if pending.get(minute):
            pacing.record_events(pending.pop(minute))
    for late in sorted(pending):  # what was still in flight at midnight
        pacing.record_events(pending.pop(late))
    return DayResult(campaign_ids, minute_spend, minute_participation, largest, served, impressions)
