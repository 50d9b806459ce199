"""``adrank simulate``: a synthetic day through the Ranker with pacing on and off, and a report.

Builds (or reuses) a workspace sized for the simulation (:func:`simulation_world`: a synthetic
log, the ranker trained on it and exported), then replays the day through
:class:`adrank.orchestrator.ranker.Ranker` over that model, run in process.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "Replay a synthetic day of ad traffic with pacing on and off; write a report with plots."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="simulation-report", help="report directory")
    parser.add_argument(
        "--workspace", type=Path, default=Path("artifacts/simulate"), help="model workspace"
    )
    parser.add_argument("--rows", type=int, default=50_000, help="impressions to train on")
    parser.add_argument("--requests", type=int, default=30_000, help="requests in the day")
    parser.add_argument("--campaigns", type=int, default=12, help="number of campaigns")
    parser.add_argument("--candidates", type=int, default=100, help="candidates per request")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from adrank.simulation import make_world, run_experiment, simulation_world
    from adrank.simulation.report import summary, write_report
    from adrank.workspace import prepare_workspace

    if args.requests < 500 or args.campaigns < 2 or args.candidates < 1 or args.rows < 1000:
        raise SystemExit(
            "--requests must be >= 500, --rows >= 1000, --campaigns >= 2 and --candidates >= 1"
        )
    start = time.perf_counter()
    workspace = prepare_workspace(
        args.workspace,
        rows=args.rows,
        seed=args.seed,
        world=simulation_world(args.campaigns),
        repository=args.workspace / "repository",
    )
    world = make_world(workspace, seed=args.seed)
    built = time.perf_counter()
    experiment = run_experiment(world, args.requests, args.seed, args.candidates)
    report = write_report(experiment, args.out)
    numbers = summary(experiment)
    enough = experiment.enough_demand[experiment.budgeted]
    print(
        f"workspace ready in {built - start:.1f} s; simulated {args.requests} requests "
        f"(+{int(args.requests * 0.2)} pilot) x 2 runs through the Ranker in "
        f"{time.perf_counter() - built:.1f} s"
    )
    print(
        f"pacing on:  worst overspend {numbers['paced_overspend'].max():.2%}, lowest spend "
        f"(enough demand) {numbers['paced_utilization'][enough].min(initial=float('inf')):.1%}"
    )
    from adrank.simulation.report import MIN_CHARGES

    sizable = enough & (numbers["charges_in_budget"] >= MIN_CHARGES)
    print(
        f"            lowest spend among those whose budget holds >= {MIN_CHARGES} charges: "
        f"{numbers['paced_utilization'][sizable].min(initial=float('inf')):.1%} "
        f"({sizable.sum()} of {enough.sum()})"
    )
    print(
        f"pacing off: worst overspend {numbers['unpaced_overspend'].max():.2%}, lowest spend "
        f"(enough demand) {numbers['unpaced_utilization'][enough].min(initial=float('inf')):.1%}"
    )
    print(f"report: {report}")
    return 0
