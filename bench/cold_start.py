"""Cold start over several seeds of the simulated day: the larger run behind
tests/test_cold_start.py and ``adrank simulate --cold-start`` (a script, not a timed benchmark).

    .venv/bin/python bench/cold_start.py [--requests 20000] [--seeds 0,1,2] [--out cold-start.md]

Each seed draws its own new creatives, true multipliers and requests in one world of 12
campaigns (a workspace trained once); see adrank.simulation.cold_start for the arms and the
measures. The summary gives each arm's regret against the oracle and the new creatives it
brought to a good estimate, summed over the seeds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from adrank.experiments.cold_start import ColdStartConfig
from adrank.simulation import make_world, simulation_world
from adrank.simulation.cold_start import run_cold_start
from adrank.workspace import prepare_workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--campaigns", type=int, default=12)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "cs-ws")
    parser.add_argument("--out", type=Path, default=Path("cold-start.md"))
    args = parser.parse_args()
    workspace = prepare_workspace(
        args.workspace,
        rows=50_000,
        world=simulation_world(args.campaigns),
        repository=args.workspace / "repository",
        say=lambda _: None,
    )
    world = make_world(workspace, seed=0)
    config = ColdStartConfig()
    sections = [f"# Cold start\n\n{args.requests} requests a day, {config}.\n"]
    regret: dict[str, list[float]] = {}
    reached: dict[str, list[int]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        start = time.perf_counter()
        report = run_cold_start(
            world, args.requests, seed, config=config, candidates=args.candidates
        )
        oracle = report.arms["oracle"].revenue
        for name, arm in report.arms.items():
            regret.setdefault(name, []).append((oracle - arm.revenue) / oracle)
            misjudged = arm.good_estimate_at[report.new.misjudged]
            reached.setdefault(name, []).append(int((misjudged >= 0).sum()))
        misjudged = int(report.new.misjudged.sum())
        sections.append(
            f"## seed {seed} ({len(report.new)} new creatives, {misjudged} misjudged; "
            f"{time.perf_counter() - start:.0f} s)\n\n{report.table()}\n"
        )
        print(sections[-1], flush=True)
    lines = ["## summary\n", "| arm | mean regret | misjudged new creatives with a good estimate |"]
    lines.append("| --- | ---: | ---: |")
    for name in regret:
        lines.append(f"| {name} | {np.mean(regret[name]):.2%} | {sum(reached[name])} |")
    sections.append("\n".join(lines) + "\n")
    print(sections[-1])
    args.out.write_text("\n".join(sections))
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
