"""``adrank experiment report``: the A/B report of one experiment from the request log
(:mod:`adrank.experiments.request_log`) and its events (:mod:`adrank.experiments.report`).

Events are Parquet or CSV with ``request_id``, ``creative_id``, ``event`` (impression, click,
conversion, negative) and ``revenue``; budgets (optional) are Parquet or CSV with
``campaign_id`` and ``budget``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Experiments: the A/B report (per-arm metrics, deltas, SRM, CUPED, sequential test)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    report = actions.add_parser("report", help="write the A/B report of one experiment")
    report.add_argument("--log", type=Path, required=True, help="request log directory")
    report.add_argument("--events", type=Path, required=True, help="events (Parquet or CSV)")
    report.add_argument("--experiment", required=True, help="the experiment's name")
    report.add_argument(
        "--experiments", type=Path, help="the experiments' TOML (the arms' shares for SRM)"
    )
    report.add_argument("--control", help="the control arm (default: the first by name)")
    report.add_argument("--pre-log", type=Path, help="pre-period request log (CUPED)")
    report.add_argument("--pre-events", type=Path, help="pre-period events (CUPED)")
    report.add_argument("--budgets", type=Path, help="campaign budgets (Parquet or CSV)")
    report.add_argument("--out", type=Path, default=Path("experiment-report"))


def _table(path: Path):
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if not path.exists():
        raise SystemExit(f"{path} does not exist")
    return pcsv.read_csv(path) if path.suffix == ".csv" else pq.read_table(path)


def run(args: argparse.Namespace) -> int:
    from adrank.experiments.assignment import ExperimentSet
    from adrank.experiments.report import analyze, write_report
    from adrank.experiments.request_log import read_request_log

    if (args.pre_log is None) != (args.pre_events is None):
        raise SystemExit("give --pre-log and --pre-events together")
    shares, unit = None, "user_id"
    if args.experiments is not None:
        found = [
            e
            for e in ExperimentSet.from_toml(args.experiments).experiments
            if e.name == args.experiment
        ]
        if not found:
            raise SystemExit(f"--experiments has no experiment {args.experiment!r}")
        shares = {arm.name: arm.share for arm in found[0].arms}
        unit = found[0].unit
    pre = None
    if args.pre_log is not None:
        pre = (read_request_log(args.pre_log), _table(args.pre_events))
    budgets = None
    if args.budgets is not None:
        table = _table(args.budgets)
        budgets = dict(
            zip(
                table.column("campaign_id").to_pylist(),
                table.column("budget").to_pylist(),
                strict=True,
            )
        )
    try:
        report = analyze(
            read_request_log(args.log),
            _table(args.events),
            args.experiment,
            shares=shares,
            control=args.control,
            pre=pre,
            budgets=budgets,
            unit=unit,
        )
    except ValueError as error:
        raise SystemExit(str(error)) from error
    path = write_report(report, args.out)
    srm = report.sample_ratio
    print(
        f"{args.experiment}: arms {', '.join(report.arms)}; SRM p = {srm.p_value:.3g}"
        + (" -- SAMPLE-RATIO MISMATCH" if srm.mismatch else "")
    )
    for arm, deltas in report.deltas.items():
        for metric, d in deltas.items():
            print(f"  {arm} {metric}: {d.delta:+.5g} [{d.ci_low:+.5g}, {d.ci_high:+.5g}]")
    for key, (_, _, info) in report.cuped.items():
        print(f"  CUPED {key}: variance reduction {info.variance_reduction:.1%}")
    print(f"report: {path}")
    return 1 if srm.mismatch else 0
