"""``adrank simulate``: a synthetic day through the Ranker with pacing on and off, and a report.

Builds (or reuses) a workspace sized for the simulation (:func:`simulation_world`: a synthetic
log, the ranker trained on it and exported), then replays the day through
:class:`adrank.orchestrator.ranker.Ranker` over that model, run in process.

``--sweep`` runs many worlds instead (:mod:`adrank.simulation.sweep`: campaign counts x seeds x
event-delay distributions, pacing on) and reports the worst overspend and the lowest spend over
all of them; its defaults run in a few minutes.

``--cold-start`` runs the cold-start day instead (:mod:`adrank.simulation.cold_start`: new
creatives with click rates the model does not know, learned with and without exploration) and
prints its table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from adrank.experiments.cold_start import ColdStartConfig

HELP = "Replay a synthetic day of ad traffic with pacing on and off; write a report with plots."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="simulation-report", help="report directory")
    parser.add_argument(
        "--workspace", type=Path, default=Path("artifacts/simulate"), help="model workspace"
    )
    parser.add_argument(
        "--rows", type=int, help="impressions to train on (50,000; 20,000 with --sweep)"
    )
    parser.add_argument(
        "--requests", type=int, help="requests in the day (30,000; 10,000 with --sweep)"
    )
    parser.add_argument("--campaigns", type=int, default=12, help="number of campaigns")
    parser.add_argument("--candidates", type=int, default=100, help="candidates per request")
    parser.add_argument("--seed", type=int, default=0)
    ab = parser.add_argument_group("A/B: an experiment with known true effects and its report")
    ab.add_argument("--ab", action="store_true", help="run an A/B test (adrank.simulation.ab_test)")
    ab.add_argument(
        "--srm-drop", type=float, default=0.0, help="share of treatment users lost (plants SRM)"
    )
    cold = parser.add_argument_group("cold start: new creatives, with and without exploration")
    cold.add_argument(
        "--cold-start", action="store_true", help="run adrank.simulation.cold_start's arms"
    )
    cold.add_argument("--new-share", type=float, default=0.2, help="share of creatives new (0.2)")
    defaults = ColdStartConfig()
    cold.add_argument(
        "--min-impressions",
        type=int,
        default=defaults.min_impressions,
        help=f"exploration's exposure goal ({defaults.min_impressions})",
    )
    cold.add_argument(
        "--explore-share",
        type=float,
        default=defaults.traffic_share,
        help=f"share of requests that explore ({defaults.traffic_share})",
    )
    cold.add_argument(
        "--max-revenue-loss",
        type=float,
        default=defaults.max_revenue_loss,
        help=f"an exploring slot's bound ({defaults.max_revenue_loss})",
    )
    sweep = parser.add_argument_group("sweep: many worlds, pacing's bounds over all of them")
    sweep.add_argument("--sweep", action="store_true", help="run the sweep, not one day")
    sweep.add_argument("--seeds", default="1,2", help="comma-separated seeds (1,2)")
    sweep.add_argument(
        "--campaign-counts", default="12,80", help="comma-separated campaign counts (12,80)"
    )
    sweep.add_argument(
        "--delays",
        default="prompt,slow-reports,late-clicks",
        help="comma-separated event-delay distributions (adrank.simulation.delays)",
    )


def run(args: argparse.Namespace) -> int:
    from adrank.simulation import run_experiment
    from adrank.simulation.report import summary, write_report

    args.requests = args.requests or (10_000 if args.sweep else 30_000)
    args.rows = args.rows or (20_000 if args.sweep else 50_000)
    if args.requests < 500 or args.campaigns < 2 or args.candidates < 1 or args.rows < 1000:
        raise SystemExit(
            "--requests must be >= 500, --rows >= 1000, --campaigns >= 2 and --candidates >= 1"
        )
    if args.sweep:
        return _sweep(args)
    if args.ab:
        return _ab(args)
    if args.cold_start:
        return _cold_start(args)
    start = time.perf_counter()
    world = _world(args)
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


def _integers(text: str, flag: str, least: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise SystemExit(f"{flag} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < least:
        raise SystemExit(f"{flag} must be integers >= {least}, got {text!r}")
    return values


def _sweep(args: argparse.Namespace) -> int:
    from adrank.simulation.delays import DELAYS
    from adrank.simulation.sweep import run_sweep

    seeds = _integers(args.seeds, "--seeds", 0)
    counts = _integers(args.campaign_counts, "--campaign-counts", 2)
    delays = args.delays.split(",")
    if set(delays) - set(DELAYS):
        raise SystemExit(f"--delays must be among {','.join(DELAYS)}, got {args.delays!r}")
    start = time.perf_counter()
    result = run_sweep(
        args.workspace / "sweep", counts, seeds, delays, args.requests, args.rows, args.candidates
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.md").write_text(result.markdown())
    worst, lowest = result.worst, result.lowest
    print(f"{len(result.worlds)} worlds in {time.perf_counter() - start:.0f} s")
    print(
        f"worst overspend over the sweep: {worst.worst_overspend:.2%} (campaign "
        f"{worst.worst_campaign}, {worst.worst_objective}, budget {worst.worst_budget:.2f} = "
        f"{worst.worst_charges:.1f} charges; {worst.campaigns} campaigns, seed {worst.seed}, "
        f"{worst.delays})"
    )
    print(
        f"lowest spend over the sweep (budgets of >= 20 charges, enough demand): "
        f"{lowest.lowest_spend:.1%} ({lowest.campaigns} campaigns, seed {lowest.seed}, "
        f"{lowest.delays})"
    )
    print(f"report: {out / 'sweep.md'}")
    return 0


def _ab(args: argparse.Namespace) -> int:
    from adrank.simulation.ab_test import run_ab_test, write_ab_report

    if not 0.0 <= args.srm_drop < 1.0:
        raise SystemExit(f"--srm-drop must be in [0, 1), got {args.srm_drop}")
    world = _world(args)
    run = run_ab_test(world, args.out, args.requests, args.seed, args.candidates, args.srm_drop)
    report, path = write_ab_report(run)
    for metric, truth in run.true_deltas.items():
        d = report.deltas["treatment"].get(metric)
        if d is not None:
            verdict = "covers" if d.ci_low <= truth <= d.ci_high else "MISSES"
            print(
                f"{metric}: true delta {truth:+.5g}; measured {d.delta:+.5g} "
                f"[{d.ci_low:+.5g}, {d.ci_high:+.5g}] {verdict} the truth"
            )
    srm = report.sample_ratio
    print(f"sample-ratio check: p = {srm.p_value:.3g}" + (" MISMATCH" if srm.mismatch else ""))
    for key, (_, _, info) in report.cuped.items():
        print(f"CUPED {key}: variance reduction {info.variance_reduction:.1%}")
    print(f"report: {path}")
    return 0


def _cold_start(args: argparse.Namespace) -> int:
    from adrank.simulation.cold_start import run_cold_start

    try:
        config = ColdStartConfig(
            min_impressions=args.min_impressions,
            traffic_share=args.explore_share,
            max_revenue_loss=args.max_revenue_loss,
        )
    except (TypeError, ValueError) as error:
        raise SystemExit(f"adrank simulate --cold-start: {error}") from None
    if not 0.0 < args.new_share <= 1.0:
        raise SystemExit(f"--new-share must be in (0, 1], got {args.new_share}")
    world = _world(args)
    start = time.perf_counter()
    report = run_cold_start(
        world,
        args.requests,
        args.seed,
        config=config,
        new_share=args.new_share,
        candidates=args.candidates,
    )
    print(
        f"{args.requests} requests x {len(report.arms)} arms in {time.perf_counter() - start:.0f} "
        f"s; {len(report.new)} new creatives ({int(report.new.misjudged.sum())} misjudged by the "
        f"model by more than 20 %); {config}"
    )
    print(report.table())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cold_start.md").write_text(report.table() + "\n")
    print(f"report: {out / 'cold_start.md'}")
    return 0


def _world(args: argparse.Namespace) -> Any:
    """The simulated world of ``--workspace``, ``--rows``, ``--seed`` and ``--campaigns`` (its
    workspace trained and exported once, then reused)."""
    from adrank.simulation import make_world, simulation_world
    from adrank.workspace import prepare_workspace

    workspace = prepare_workspace(
        args.workspace,
        rows=args.rows,
        seed=args.seed,
        world=simulation_world(args.campaigns),
        repository=args.workspace / "repository",
    )
    return make_world(workspace, seed=args.seed)
