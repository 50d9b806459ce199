"""Off-policy estimators' coverage, bias and variance in the simulated world: the larger sweep
behind tests/test_experiment_off_policy.py (a script, not a timed benchmark).

    .venv/bin/python bench/ope_coverage.py [--requests 3000] [--seeds 100] [--out ope.md]
    .venv/bin/python bench/ope_coverage.py --slate [--k 3] [--requests 3000] [--seeds 100]

Logging: epsilon-greedy (epsilon 0.3, pool 4, max revenue loss 0.6) over the real Ranker in a
world of 12 campaigns; targets: the greedy ranking (no exploration), a lower and a higher
negative-feedback penalty. See adrank.simulation.off_policy for the method.

With ``--slate``: ``k`` slots per request under a position-based click model, logged by
softmax exploration (temperature 0.5, pool 6, no revenue bound, so that every slot can take
every pool creative) and by epsilon-greedy (epsilon 0.4, pool 6); a per-advertiser cap of 20
so that the cap does not keep the target's creatives out of the pool; the same targets;
estimators slate IPS, IP, SNIP and PI. See adrank.simulation.slate_off_policy.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from adrank.experiments.exploration import EpsilonGreedy, SoftmaxExploration
from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker, SelectionConfig
from adrank.orchestrator.scoring import ScoringConfig
from adrank.simulation import make_world, simulation_world
from adrank.simulation.off_policy import coverage, coverage_markdown, log_contexts, online_value
from adrank.simulation.slate_off_policy import (
    log_slates,
    online_slate_value,
    slate_coverage,
    slate_markdown,
)
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
    parser.add_argument("--out", type=Path, help="default: ope-coverage.md (ope-slate.md)")
    parser.add_argument("--slate", action="store_true", help="k-slot slates, slate estimators")
    parser.add_argument("--k", type=int, default=3, help="slots per request with --slate")
    args = parser.parse_args()
    args.out = args.out or Path("ope-slate.md" if args.slate else "ope-coverage.md")
    workspace = prepare_workspace(
        args.workspace,
        rows=20_000,
        world=simulation_world(args.campaigns),
        repository=args.workspace / "repository",
        say=lambda _: None,
    )
    world = make_world(workspace, seed=1)
    if args.slate:
        slates(world, args)
        return
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


def slates(world, args: argparse.Namespace) -> None:
    ranker = Ranker.from_export(
        world.artifacts_dir,
        world.catalog,
        TorchScriptModel(world.version_dir),
        selection_config=SelectionConfig(max_per_advertiser=20),
    )
    policies = (
        SoftmaxExploration(0.5, pool=6, max_revenue_loss=1.0),
        EpsilonGreedy(0.4, pool=6, max_revenue_loss=1.0),
    )
    sections = [
        f"# Slate off-policy estimators in the simulated world\n\n{args.requests} logged "
        f"requests of {args.k} slots (100 candidates each), {args.seeds} seeds.\n"
    ]
    for logging in policies:
        for name, target in TARGETS.items():
            start = time.perf_counter()
            logged = log_slates(
                world, ranker, logging, target, args.requests, k=args.k, candidates=100
            )
            rows = slate_coverage(logged, range(args.seeds), n_boot=500)
            online = online_slate_value(
                world, ranker, target, args.requests * 5, k=args.k, seed=99, candidates=100
            )
            truth = logged.truth()
            sections.append(
                f"## Logging {logging}; target: {name}\n\n{slate_markdown(rows, logged)}\n"
                f"Online run ({args.requests * 5} fresh requests): clicks "
                f"{online['clicks']:.5f} (truth {truth['clicks']:.5f}), revenue "
                f"{online['revenue']:.5f} (truth at the logged prices {truth['revenue']:.5f}).\n"
            )
            print(sections[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)
    args.out.write_text("\n".join(sections))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
