"""STAND-IN RANKER: scoring from the catalog, scoring and pricing modules, no model.

This is the one place the simulation ranks. It stands in for ``adrank.Ranker`` until that
lands: swap it by passing ``Ranker.rank`` as the ``rank`` callable of
:func:`adrank.simulation.simulate_day` (the Ranker must read pacing multipliers and the
kill switches the same way, see ``rank`` below). Predicted rates are the world's true rates
with per-request noise, i.e. a calibrated model.
"""

from __future__ import annotations

import numpy as np

from adrank.orchestrator.pricing import gsp_prices
from adrank.orchestrator.request import RankRequest, RankResponse
from adrank.orchestrator.scoring import ScoringConfig, bid_to_ecpm_factor, ecpm, own_bid
from adrank.pacing import PacingService
from adrank.simulation.world import SimClock, SyntheticWorld
from adrank.traffic import TrafficControl


class StandInRanker:
    def __init__(
        self,
        world: SyntheticWorld,
        pacing: PacingService,
        traffic: TrafficControl,
        clock: SimClock,
        seed: int = 0,
        scoring: ScoringConfig | None = None,
    ) -> None:
        self.world, self.pacing, self.traffic, self.clock = world, pacing, traffic, clock
        self.scoring = scoring or ScoringConfig()
        self.rng = np.random.default_rng(seed)

    def rank(self, request: RankRequest) -> RankResponse:
        catalog = self.world.catalog
        rows, known = catalog.lookup(request.candidates)
        noise = self.rng.lognormal(0.0, 0.3, size=(2, len(rows)))
        p_ctr = np.minimum(self.world.base_ctr[rows] * noise[0], 1.0)
        p_cvr = np.minimum(self.world.base_cvr[rows] * noise[1], 1.0)
        p_neg = np.full(len(rows), 0.001)
        campaign, advertiser = catalog.campaign_id[rows], catalog.advertiser_id[rows]
        # The integration points: pacing multipliers and kill switches, vectorized per request.
        pacing = self.pacing.multipliers(campaign, self.clock())
        blocked = self.traffic.blocked(advertiser, campaign)

        objective, bid, cpa = catalog.objective[rows], catalog.bid[rows], catalog.target_cpa[rows]
        score = ecpm(self.scoring, objective, bid, cpa, pacing, p_ctr, p_cvr, p_neg)
        eligible = (score >= self.scoring.reserve_ecpm) & (pacing > 0) & ~blocked
        eligible &= catalog.active[rows]
        candidates = np.flatnonzero(eligible)
        order = candidates[np.argsort(-score[candidates], kind="stable")]
        chosen = order[: request.k]
        runner_up = float(score[order[request.k]]) if len(order) > request.k else None
        factor = bid_to_ecpm_factor(objective[chosen], p_ctr[chosen], p_cvr[chosen], pacing[chosen])
        penalty = self.scoring.neg_penalty * p_neg[chosen] * 1000.0
        price = gsp_prices(
            score[chosen],
            runner_up,
            own_bid(objective[chosen], bid[chosen], cpa[chosen]),
            factor,
            penalty,
            self.scoring.reserve_ecpm,
        )
        return RankResponse(
            request_id=request.request_id,
            model_version="stand-in",
            creative_id=catalog.creative_id[rows][chosen],
            campaign_id=campaign[chosen],
            advertiser_id=advertiser[chosen],
            p_ctr=p_ctr[chosen],
            p_cvr=p_cvr[chosen],
            p_neg=p_neg[chosen],
            ecpm=score[chosen],
            price=price,
            timings_ms={},
            unknown_candidates=int((~known).sum()),
        )
