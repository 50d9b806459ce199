"""``adrank evaluate CHECKPOINT DATA``: score a trained ranker on a log.

On the log it was trained on (same file, same rows), only the held-out rows saved by
``adrank train`` are scored, unless ``--all-rows``; on any other log, every row.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from adrank.commands.train import add_log_arguments, open_log_from

HELP = "score a trained ranker on a log: AUC, log loss, calibration, per slice, with intervals"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="from adrank train")
    parser.add_argument("data", type=Path, help="the log to score")
    add_log_arguments(parser)
    parser.add_argument("--by", metavar="COLUMN", help="also score each value of COLUMN")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--bootstrap", type=int, default=200, metavar="N", help="resamples (0: no intervals)"
    )
    parser.add_argument("--all-rows", action="store_true", help="score the training rows too")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")


def _finite(value):
    """JSON has no NaN: write null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    from adrank.data.log_errors import BadRowBudget
    from adrank.models import load_checkpoint
    from adrank.training.evaluation import evaluate_batch, format_evaluation
    from adrank.training.heldout import load_heldout
    from adrank.training.log_data import encode_log

    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    model, schema, _ = load_checkpoint(args.checkpoint)
    reader = open_log_from(args, args.data)
    extra = [args.by] if args.by else []
    encoded = encode_log(
        reader,
        schema,
        budget=BadRowBudget(args.skip_bad_rows),
        extra_columns=extra,
        need_labels=False,
    )
    batch, by = encoded.batch, encoded.extra.get(args.by) if args.by else None
    heldout = load_heldout(args.checkpoint)
    scope = "every row"
    if not args.all_rows and heldout is not None and heldout.matches(reader.path, len(batch)):
        batch = batch.take(heldout.rows)
        by = None if by is None else by[heldout.rows]
        scope = f"the held-out rows saved with {args.checkpoint.name}"
    result = evaluate_batch(
        model, batch, by=by, by_name=args.by, resamples=args.bootstrap, seed=args.seed
    )
    result["scope"] = scope
    result["skipped_bad_rows"] = len(encoded.skipped)
    if args.json:
        print(json.dumps(_finite(result), indent=2))
    else:
        print(f"{reader.path}: {scope}")
        print(format_evaluation(result))
    return 0
