"""``adrank train``: train the multi-task ranker on a log and report held-out metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "train the multi-task ranker on a synthetic or Criteo log; report held-out metrics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--data", type=Path, help="a log: Parquet file or directory, or Criteo file"
    )
    source.add_argument(
        "--generate", type=int, metavar="ROWS", help="draw a synthetic log of ROWS rows (default)"
    )
    parser.add_argument(
        "--format", choices=("parquet", "criteo"), default="parquet", help="format of --data"
    )
    parser.add_argument("--schema", type=Path, help="feature schema (default: the format's own)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/ranker.pt"), help="checkpoint")
    parser.add_argument("--metrics-json", type=Path, help="also write the metrics here as JSON")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam, dense part")
    parser.add_argument("--embedding-lr", type=float, default=1e-1, help="Adagrad, tables")
    parser.add_argument("--holdout", type=float, default=0.2, help="held-out fraction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load(args: argparse.Namespace):
    from adrank.data import generate_log, read_criteo, read_log
    from adrank.features import criteo_schema_path, load_schema

    if args.data is not None and args.format == "criteo":
        return read_criteo(args.data), load_schema(args.schema or criteo_schema_path())
    if args.data is not None:
        return read_log(args.data), load_schema(args.schema)
    rows = args.generate or 200_000
    print(f"drawing a synthetic log of {rows:,} rows (seed {args.seed})")
    return generate_log(rows, seed=args.seed).impressions, load_schema(args.schema)


def run(args: argparse.Namespace) -> int:
    from adrank.models import save_checkpoint
    from adrank.training.loop import TrainConfig, train
    from adrank.training.report import format_report, oracle_for

    table, schema = _load(args)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        embedding_learning_rate=args.embedding_lr,
        holdout=args.holdout,
        seed=args.seed,
        threads=args.threads,
        progress=not args.no_progress,
    )
    result = train(table, schema, config=config)
    oracle = oracle_for(table, result.heldout_rows)
    print(format_report(result.metrics, oracle))
    save_checkpoint(args.out, result.model, metrics=result.metrics)
    print(f"checkpoint: {args.out}")
    if args.metrics_json:
        args.metrics_json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"heldout": result.metrics, "oracle_auc": oracle, "history": result.history}
        args.metrics_json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0
