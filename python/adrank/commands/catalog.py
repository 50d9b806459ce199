"""``adrank catalog build DATA``: a serving catalog (Parquet) from a log's creative columns."""

from __future__ import annotations

import argparse
from pathlib import Path

from adrank.commands.train import add_log_arguments, open_log_from

HELP = "build a serving catalog from a log: one row per creative, its creative-side columns"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="write a catalog Parquet from a log")
    build.add_argument("data", type=Path, help="the log")
    add_log_arguments(build)
    build.add_argument("--schema", type=Path, required=True, help="the model's feature schema")
    build.add_argument("--creative-id", required=True, metavar="COLUMN", help="integer ids")
    build.add_argument("--advertiser-id", metavar="COLUMN", help="default: the creative id")
    build.add_argument("--campaign-id", metavar="COLUMN", help="default: the creative id")
    build.add_argument("--category", metavar="COLUMN", help="integer ids; default: 0")
    build.add_argument("--bid", metavar="COLUMN", help="default: --default-bid")
    build.add_argument("--target-cpa", metavar="COLUMN", help="for OCPM; default: 0")
    build.add_argument("--objective", default="CPC", help="CPM, CPC or OCPM (default CPC)")
    build.add_argument("--default-bid", type=float, default=1.0)
    build.add_argument("--out", type=Path, default=Path("catalog.parquet"))


def run(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from adrank.data.log_catalog import CatalogColumns, build_catalog
    from adrank.data.log_errors import BadRowBudget
    from adrank.features import load_schema

    columns = CatalogColumns(
        creative_id=args.creative_id,
        advertiser_id=args.advertiser_id,
        campaign_id=args.campaign_id,
        category=args.category,
        bid=args.bid,
        target_cpa=args.target_cpa,
        objective=args.objective,
        default_bid=args.default_bid,
    )
    reader = open_log_from(args, args.data)
    table = build_catalog(
        reader, load_schema(args.schema), columns, budget=BadRowBudget(args.skip_bad_rows)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.out)
    print(f"{args.out}: {table.num_rows:,} creatives, columns {', '.join(table.column_names)}")
    return 0
