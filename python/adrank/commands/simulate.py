"""``adrank simulate``: a synthetic day through the ranker with pacing on and off, and a report."""

from __future__ import annotations

import argparse
import time

HELP = "Replay a synthetic day of ad traffic with pacing on and off; write a report with plots."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="simulation-report", help="report directory")
    parser.add_argument("--requests", type=int, default=200_000, help="requests in the day")
    parser.add_argument("--campaigns", type=int, default=12, help="number of campaigns")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from adrank.simulation.experiment import run_experiment
    from adrank.simulation.report import summary, write_report

    if args.requests < 1000 or args.campaigns < 1:
        raise SystemExit("--requests must be >= 1000 and --campaigns >= 1")
    start = time.perf_counter()
    experiment = run_experiment(args.requests, args.campaigns, args.seed)
    report = write_report(experiment, args.out)
    numbers = summary(experiment)
    enough = experiment.enough_demand
    print(f"simulated {args.requests} requests x 2 runs in {time.perf_counter() - start:.1f} s")
    print(
        f"pacing on:  worst overspend {numbers['paced_overspend'].max():.2%}, lowest spend "
        f"(enough demand) {numbers['paced_utilization'][enough].min(initial=float('inf')):.1%}"
    )
    print(f"pacing off: worst overspend {numbers['unpaced_overspend'].max():.2%}")
    print(f"report: {report}")
    return 0
