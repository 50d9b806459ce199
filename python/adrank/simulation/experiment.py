"""The experiment ``adrank simulate`` runs: a pilot to measure demand, then the day paced and not.

Every run ranks through the real :class:`adrank.orchestrator.ranker.Ranker` over the exported
model (run in process, :class:`adrank.orchestrator.model.TorchScriptModel`), with pacing and the
kill switches wired in as in serving: ``pacing=`` reads :meth:`PacingService.multipliers` at the
simulated time, ``killed=`` is :meth:`TrafficControl.blocked`.

1. Pilot: a share of the day's requests with no budgets (every multiplier 1), scaled up: the
   spend each campaign would reach if nothing held it back (its *demand*).
2. Budgets: most campaigns get 30-80 % of their demand (enough demand: pacing must spread
   them); every fourth gets 150 % (not enough demand: it should run unthrottled all day).
   Campaigns that spent nothing in the pilot get no budget.
3. The same day (same requests, same random draws) with pacing on, then with pacing off
   (budget cap only; a sweep may leave it out).

Events reach pacing with the world's :class:`~adrank.simulation.delays.EventDelays`, and
pacing is told those delays and each campaign's largest possible charge (its bid), as a
deployment would be.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker
from adrank.pacing import PacingConfig, PacingService, SQLitePacingStore
from adrank.simulation.delays import PROMPT, EventDelays
from adrank.simulation.replay import DayResult, simulate_day
from adrank.simulation.world import DAY_START, SimClock, SyntheticWorld
from adrank.traffic import SQLiteTrafficStore, TrafficControl


@dataclass(frozen=True)
class Experiment:
    world: SyntheticWorld
    demand: np.ndarray  # float64 [N]: pilot spend, scaled to the day
    budgets: np.ndarray  # float64 [N], inf where a campaign has no budget
    paced: DayResult
    unpaced: DayResult | None  # None: not run
    config: PacingConfig
    pilot: DayResult | None = None
    delays: EventDelays = PROMPT

    @property
    def largest_charge(self) -> np.ndarray:
        """The largest single charge of each campaign over the runs (float64 [N])."""
        runs = [r for r in (self.pilot, self.paced, self.unpaced) if r is not None]
        return np.max([r.largest_charge for r in runs], axis=0)

    @property
    def budgeted(self) -> np.ndarray:
        return np.isfinite(self.budgets)

    @property
    def enough_demand(self) -> np.ndarray:
        return self.budgeted & (self.demand > self.budgets)


@dataclass
class DayRun:
    """One day's services around one Ranker: what a test needs to reach into."""

    clock: SimClock
    pacing: PacingService
    traffic: TrafficControl
    ranker: Ranker

    def simulate(self, world: SyntheticWorld, requests: int, seed: int, **replay) -> DayResult:
        return simulate_day(
            world, self.ranker.rank, self.pacing, self.clock, requests, seed, **replay
        )


def day_run(
    world: SyntheticWorld,
    model: TorchScriptModel,
    config: PacingConfig,
    budgets: np.ndarray,
    seed: int = 0,
    max_charges: np.ndarray | None = None,
) -> DayRun:
    """A fresh pacing service (budgets set where finite, with ``max_charges`` [N] where given
    and finite), kill switches and a Ranker over them."""
    clock = SimClock(DAY_START)
    pacing = PacingService(SQLitePacingStore(":memory:"), config, seed=seed)
    charges = np.full(len(budgets), np.nan) if max_charges is None else max_charges
    for campaign, budget, charge in zip(world.campaign_ids.tolist(), budgets, charges, strict=True):
        if np.isfinite(budget):
            ceiling = float(charge) if np.isfinite(charge) else None
            pacing.set_budget(campaign, float(budget), DAY_START, max_charge=ceiling)
    traffic = TrafficControl(SQLiteTrafficStore(":memory:"))
    ranker = Ranker.from_export(
        world.artifacts_dir,
        world.catalog,
        model,
        pacing=lambda campaigns: pacing.multipliers(campaigns, clock()),
        killed=traffic.blocked,
    )
    return DayRun(clock, pacing, traffic, ranker)


def run_experiment(
    world: SyntheticWorld,
    requests: int = 30_000,
    seed: int = 0,
    candidates: int = 100,
    pilot_share: float = 0.2,
    config: PacingConfig | None = None,
    delays: EventDelays = PROMPT,
    unpaced: bool = True,
) -> Experiment:
    """The experiment of the module docstring; ``config`` defaults to ``delays.pacing_config()``."""
    config = config or delays.pacing_config()
    model = TorchScriptModel(world.version_dir)
    n = len(world.campaign_ids)
    replay = {"candidates": candidates, "delays": delays}
    unbudgeted = np.full(n, np.inf)
    pilot = day_run(world, model, config, unbudgeted, seed + 1).simulate(
        world, int(requests * pilot_share), seed + 1, **replay
    )
    demand = pilot.spend / pilot_share
    ratio = np.random.default_rng(seed).uniform(0.3, 0.8, n)
    ratio[3::4] = 1.5
    budgets = np.where(demand > 0, np.round(demand * ratio, 2), np.inf)
    charges = world.max_charges
    paced = day_run(world, model, config, budgets, seed + 2, charges).simulate(
        world, requests, seed + 2, **replay
    )
    off = None
    if unpaced:
        cap_only = dataclasses.replace(config, enabled=False)
        off = day_run(world, model, cap_only, budgets, seed + 2, charges).simulate(
            world, requests, seed + 2, **replay
        )
    return Experiment(world, demand, budgets, paced, off, config, pilot, delays)
