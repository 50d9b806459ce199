"""``adrank check DATA``: the data-quality gates on a log (types, nulls, labels, duplicate ids,
timestamps, conversions after their click and inside the attribution window, drift against a
reference log); exit status 1 when a rule of error severity broke, 0 otherwise."""

from __future__ import annotations

import argparse
from pathlib import Path

from adrank.commands.train import add_log_arguments, open_log_from

HELP = "check a log's data quality (types, nulls, labels, ids, times, drift) before training"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="the log to check")
    add_log_arguments(parser)
    add_quality_arguments(parser)
    parser.add_argument("--schema", type=Path, help="feature schema (default: adrank's)")
    parser.add_argument("--plot", type=Path, help="also draw the report (PSI, findings) as PNG")


def add_quality_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``adrank check`` and ``adrank train`` share."""
    parser.add_argument(
        "--reference", type=Path, help="a reference log to measure drift (PSI) against"
    )
    parser.add_argument(
        "--quality-settings", type=Path, help="TOML of quality thresholds ([quality] table)"
    )


def quality_report(args: argparse.Namespace, reader, schema):
    """The report of the gates on the log ``reader`` reads."""
    from adrank.quality import check_frame, load_settings

    settings = load_settings(args.quality_settings)
    reference = None
    if args.reference is not None:
        reference = open_log_from(args, args.reference).read()
    return check_frame(reader.read(), schema, settings, reference)


def run(args: argparse.Namespace) -> int:
    from adrank.features import load_schema

    reader = open_log_from(args, args.data)
    report = quality_report(args, reader, load_schema(args.schema))
    print(report.format())
    if args.plot is not None:
        print(f"plot: {report.plot(args.plot)}")
    return 1 if report.errors else 0
