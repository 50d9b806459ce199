"""The synthetic world of a simulated day: campaigns, creatives, their true rates, a clock.

Glossary: ``R`` creatives; ``N`` campaigns.

Rates are high for an ads system (CTR 2-5 %) so that a day of a few hundred thousand requests
gives each campaign enough billable events for its spend curve to mean something.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adrank.orchestrator.catalog import ALL_REGIONS, Catalog
from adrank.orchestrator.scoring import Objective
from adrank.pacing import TrafficCurve

DAY_START = 1_735_689_600.0  # 2025-01-01 00:00 UTC


class SimClock:
    """Simulated unix seconds; the stand-in ranker and the replay share one."""

    def __init__(self, now: float = DAY_START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class SyntheticWorld:
    catalog: Catalog
    base_ctr: np.ndarray  # float64 [R], in catalog row order
    base_cvr: np.ndarray  # float64 [R]
    traffic: TrafficCurve  # the day's true traffic (differs from the controller's expectation)

    @property
    def campaign_ids(self) -> np.ndarray:
        return np.unique(self.catalog.campaign_id)


def make_world(
    num_campaigns: int = 12, creatives_per_campaign: int = 3, seed: int = 0
) -> SyntheticWorld:
    """Campaigns of every objective with bids whose eCPMs overlap, so they compete."""
    rng = np.random.default_rng(seed)
    campaigns = np.arange(1, num_campaigns + 1, dtype=np.int64)
    objective = np.array([int(o) for o in Objective])[np.arange(num_campaigns) % 3]
    ctr = rng.uniform(0.02, 0.05, num_campaigns)
    cvr = rng.uniform(0.05, 0.15, num_campaigns)
    target_ecpm = rng.uniform(3.0, 10.0, num_campaigns)
    bid = np.select(
        [objective == Objective.CPM, objective == Objective.CPC],
        [target_ecpm, target_ecpm / (ctr * 1000)],
        default=0.0,
    )
    target_cpa = np.where(objective == Objective.OCPM, target_ecpm / (ctr * cvr * 1000), 0.0)

    per = creatives_per_campaign
    rows = num_campaigns * per
    owner = np.repeat(np.arange(num_campaigns), per)
    catalog = Catalog(
        creative_id=np.arange(1000, 1000 + rows, dtype=np.int64),
        advertiser_id=(campaigns[owner] + 1) // 2,  # two campaigns per advertiser
        campaign_id=campaigns[owner],
        category=owner % 5,
        objective=objective[owner].astype(np.int8),
        bid=bid[owner],
        target_cpa=target_cpa[owner],
        region_mask=np.full(rows, ALL_REGIONS, dtype=np.uint64),
        active=np.ones(rows, dtype=bool),
        regions=(),
        version="synthetic",
    )
    # The true day deviates from the expected curve by up to +-15 % an hour.
    expected = np.asarray(TrafficCurve().hourly_weights)
    traffic = TrafficCurve(tuple(expected * rng.uniform(0.85, 1.15, 24)))
    return SyntheticWorld(
        catalog=catalog,
        base_ctr=ctr[owner] * rng.uniform(0.8, 1.2, rows),
        base_cvr=cvr[owner] * rng.uniform(0.8, 1.2, rows),
        traffic=traffic,
    )
