"""Pacing's bounds over many worlds: seeds x campaign counts x event-delay distributions.

Glossary: a *world* is one (campaign count, seed, :class:`EventDelays`) triple: its own
workspace (synthetic log, model trained and exported, catalog) built from the count and the
seed, and one day replayed with pacing on (the experiment of
:mod:`adrank.simulation.experiment`, without the pacing-off run).

The sweep reports, over every world, the worst overspend of any budgeted campaign (the bound
pacing promises: at most :data:`OVERSPEND_TARGET` of the budget, whatever the budget's size, the
campaign's objective or the events' delays) and the lowest share of budget spent among the
campaigns with enough demand whose budget holds at least :data:`MIN_CHARGES` of their largest
charges (below that no controller can meet both targets; see :mod:`adrank.simulation.report`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adrank.orchestrator.scoring import Objective
from adrank.simulation.delays import DELAYS
from adrank.simulation.experiment import run_experiment
from adrank.simulation.report import MIN_CHARGES, summary
from adrank.simulation.world import make_world, simulation_world


@dataclass(frozen=True)
class WorldOutcome:
    """One world's figures with pacing on; ``worst_*`` name the campaign that overspent most,
    ``lowest_*`` the sizable one (enough demand, >= MIN_CHARGES charges) that spent least."""

    campaigns: int
    seed: int
    delays: str
    budgeted: int
    sizable: int
    worst_overspend: float
    worst_campaign: int
    worst_objective: str
    worst_budget: float
    worst_charges: float
    lowest_spend: float  # inf when no campaign is sizable
    lowest_campaign: int
    seconds: float


@dataclass(frozen=True)
class SweepResult:
    worlds: list[WorldOutcome]

    @property
    def worst(self) -> WorldOutcome:
        return max(self.worlds, key=lambda w: w.worst_overspend)

    @property
    def lowest(self) -> WorldOutcome:
        return min(self.worlds, key=lambda w: w.lowest_spend)

    def markdown(self) -> str:
        worst, lowest = self.worst, self.lowest
        lines = [
            "# adrank simulate --sweep: pacing's bounds over many worlds",
            "",
            f"{len(self.worlds)} worlds (campaign counts x seeds x event delays), pacing on.",
            f"- worst overspend: **{worst.worst_overspend:.2%}** of budget (campaign "
            f"{worst.worst_campaign}, {worst.worst_objective}, budget {worst.worst_budget:.2f} = "
            f"{worst.worst_charges:.1f} largest charges; {worst.campaigns} campaigns, seed "
            f"{worst.seed}, {worst.delays} delays)",
            f"- lowest spend among budgets of >= {MIN_CHARGES} charges with enough demand: "
            f"**{lowest.lowest_spend:.1%}** (campaign {lowest.lowest_campaign}; "
            f"{lowest.campaigns} campaigns, seed {lowest.seed}, {lowest.delays} delays)",
            "",
            "| campaigns | seed | delays | budgeted | sizable | worst overspend | campaign | "
            "objective | budget | charges | lowest spend (sizable) | seconds |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for w in self.worlds:
            lines.append(
                f"| {w.campaigns} | {w.seed} | {w.delays} | {w.budgeted} | {w.sizable} | "
                f"{w.worst_overspend:.2%} | {w.worst_campaign} | {w.worst_objective} | "
                f"{w.worst_budget:.2f} | {w.worst_charges:.1f} | {w.lowest_spend:.1%} | "
                f"{w.seconds:.0f} |"
            )
        return "\n".join(lines) + "\n"


def run_sweep(
    root: str | Path,
    campaign_counts: Sequence[int] = (12, 80),
    seeds: Sequence[int] = (1, 2),
    delays: Sequence[str] = tuple(DELAYS),
    requests: int = 10_000,
    rows: int = 20_000,
    candidates: int = 100,
    say: Callable[[str], None] = print,
) -> SweepResult:
    """Every world of the grid; workspaces are built (or reused) under ``root``."""
    from adrank.workspace import prepare_workspace

    unknown = sorted(set(delays) - set(DELAYS))
    if unknown:
        raise ValueError(f"delays must be among {sorted(DELAYS)}, got {unknown}")
    outcomes = []
    for campaigns in campaign_counts:
        for seed in seeds:
            folder = Path(root) / f"campaigns{campaigns}-seed{seed}"
            workspace = prepare_workspace(
                folder,
                rows=rows,
                seed=seed,
                world=simulation_world(campaigns),
                repository=folder / "repository",
                say=lambda _: None,
            )
            world = make_world(workspace, seed=seed)
            for name in delays:
                start = time.perf_counter()
                experiment = run_experiment(
                    world, requests, seed, candidates, delays=DELAYS[name], unpaced=False
                )
                outcome = _outcome(experiment, campaigns, seed, name, start)
                say(
                    f"{campaigns} campaigns, seed {seed}, {name} delays: worst overspend "
                    f"{outcome.worst_overspend:.2%}, lowest spend (>= {MIN_CHARGES} charges) "
                    f"{outcome.lowest_spend:.1%} ({outcome.seconds:.0f} s)"
                )
                outcomes.append(outcome)
    return SweepResult(outcomes)


def _outcome(experiment, campaigns: int, seed: int, delays: str, start: float) -> WorldOutcome:
    numbers = summary(experiment)
    budgeted = experiment.budgeted
    ids = experiment.world.campaign_ids[budgeted]
    catalog = experiment.world.catalog
    objective = dict(zip(catalog.campaign_id.tolist(), catalog.objective.tolist(), strict=False))
    overspend = numbers["paced_overspend"]
    enough = experiment.enough_demand[budgeted]
    sizable = enough & (numbers["charges_in_budget"] >= MIN_CHARGES)
    utilization = np.where(sizable, numbers["paced_utilization"], np.inf)
    worst = int(np.argmax(overspend)) if len(ids) else 0
    lowest = int(np.argmin(utilization)) if len(ids) else 0
    return WorldOutcome(
        campaigns=campaigns,
        seed=seed,
        delays=delays,
        budgeted=int(budgeted.sum()),
        sizable=int(sizable.sum()),
        worst_overspend=float(overspend.max(initial=0.0)),
        worst_campaign=int(ids[worst]) if len(ids) else -1,
        worst_objective=Objective(objective[int(ids[worst])]).name if len(ids) else "-",
        worst_budget=float(experiment.budgets[budgeted][worst]) if len(ids) else 0.0,
        worst_charges=float(numbers["charges_in_budget"][worst]) if len(ids) else 0.0,
        lowest_spend=float(utilization.min(initial=np.inf)),
        lowest_campaign=int(ids[lowest]) if sizable.any() else -1,
        seconds=time.perf_counter() - start,
    )
