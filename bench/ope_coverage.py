"""Off-policy estimators' coverage, bias and variance in the simulated world: the larger sweep
behind tests/test_experiment_off_policy.py (a script, not a timed benchmark).

    .venv/bin/python bench/ope_coverage.py [--requests 3000] [--seeds 100] [--out ope.md]

Logging: epsilon-greedy (epsilon 0.3, pool 4, max revenue loss 0.6) over the real Ranker in a
world of 12 campaigns; targets: the greedy ranking (no exploration), a lower and a higher
negative-feedback penalty. See adrank.simulation.off_policy for the method.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from adrank.experiments.exploration import EpsilonGreedy
from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker
from adrank.orchestrator.scoring import ScoringConfig
from adrank.simulation import make_world, simulation_world
from adrank.simulation.off_policy import coverage, coverage_markdown, log_contexts, online_value
from adrank.workspace import prepare_workspace

TARGETS = {
    "greedy (same scoring, no exploration)": None,
    "neg_penalty 0.6": ScoringConfig(reserve_ecpm=0.5, neg_penalty=0.6),
    "neg_penalty 0.0": ScoringConfig(reserve_ecpm=0.5, neg_penalty=0.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--campaigns", type=int, default=12)
    parser.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "ope-ws")
    parser.add_argument("--out", type=Path, default=Path("ope-coverage.md"))
    args = parser.parse_args()
    workspace = prepare_workspace(
        args.workspace,
        rows=20_000,
        world=simulation_world(args.campaigns),
        repository=args.workspace / "repository",
        say=lambda _: None,
    )
    world = make_world(workspace, seed=1)
    ranker = Ranker.from_export(
        world.artifacts_dir, world.catalog, TorchScriptModel(world.version_dir)
    )
    logging = EpsilonGreedy(0.3, pool=4, max_revenue_loss=0.6)
    sections = [
        f"# Off-policy estimators in the simulated world\n\n{args.requests} logged requests, "
        f"{args.seeds} seeds, logging {logging}.\n"
    ]
    for name, target in TARGETS.items():
        start = time.perf_counter()
        contexts = log_contexts(world, ranker, logging, target, args.requests, seed=0)
        rows = coverage(contexts, range(args.seeds), n_boot=500)
        online = online_value(world, ranker, target, args.requests * 5, seed=99)
        truth = contexts.truth()
        sections.append(
            f"## Target: {name}\n\n{coverage_markdown(rows, contexts)}\nOnline run "
            f"({args.requests * 5} fresh requests): clicks {online['clicks']:.5f} "
            f"(truth {truth['clicks']:.5f}), revenue {online['revenue']:.5f}.\n"
        )
        print(sections[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)
    args.out.write_text("\n".join(sections))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
