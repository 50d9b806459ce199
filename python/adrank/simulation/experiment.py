"""The experiment ``adrank simulate`` runs: a pilot to measure demand, then the day paced and not.

1. Pilot: a share of the day's requests with no budgets (every multiplier 1), scaled up: the
   spend each campaign would reach if nothing held it back (its *demand*).
2. Budgets: most campaigns get 30-80 % of their demand (enough demand: pacing must spread
   them); every fourth gets 150 % (not enough demand: it should run unthrottled all day).
3. The same day (same requests, same random draws) with pacing on, then with pacing off
   (budget cap only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adrank.pacing import PacingConfig, PacingService, SQLitePacingStore
from adrank.simulation.replay import DayResult, simulate_day
from adrank.simulation.standin import StandInRanker
from adrank.simulation.world import DAY_START, SimClock, SyntheticWorld, make_world
from adrank.traffic import SQLiteTrafficStore, TrafficControl


@dataclass(frozen=True)
class Experiment:
    world: SyntheticWorld
    demand: np.ndarray  # float64 [N]: pilot spend, scaled to the day
    budgets: np.ndarray  # float64 [N]
    paced: DayResult
    unpaced: DayResult
    config: PacingConfig

    @property
    def enough_demand(self) -> np.ndarray:
        return self.demand > self.budgets


def _run(world, config, budgets, requests, seed) -> DayResult:
    clock = SimClock(DAY_START)
    pacing = PacingService(SQLitePacingStore(":memory:"), config)
    for campaign, budget in zip(world.campaign_ids.tolist(), budgets, strict=True):
        if np.isfinite(budget):
            pacing.set_budget(campaign, float(budget), DAY_START)
    traffic = TrafficControl(SQLiteTrafficStore(":memory:"))
    ranker = StandInRanker(world, pacing, traffic, clock, seed=seed)
    return simulate_day(world, ranker.rank, pacing, clock, requests, seed=seed)


def run_experiment(
    requests: int = 200_000,
    campaigns: int = 12,
    seed: int = 0,
    pilot_share: float = 0.2,
    config: PacingConfig | None = None,
) -> Experiment:
    config = config or PacingConfig()
    world = make_world(campaigns, seed=seed)
    n = len(world.campaign_ids)
    pilot = _run(world, config, np.full(n, np.inf), int(requests * pilot_share), seed + 1)
    demand = pilot.spend / pilot_share
    ratio = np.random.default_rng(seed).uniform(0.3, 0.8, n)
    ratio[3::4] = 1.5
    budgets = np.round(demand * ratio, 2)
    paced = _run(world, config, budgets, requests, seed + 2)
    unpaced = _run(world, PacingConfig(enabled=False), budgets, requests, seed + 2)
    return Experiment(world, demand, budgets, paced, unpaced, config)
