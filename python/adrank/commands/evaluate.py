"""``adrank evaluate CHECKPOINT DATA``: score a trained ranker on a log, reading it batch by
batch (memory holds the scores, not the log).

On the log it was trained on (same file, same rows), only the held-out rows saved by
``adrank train`` are scored, unless ``--all-rows``; on any other log, every row.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

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
    from adrank.data.log_errors import BadRowBudget, LogError
    from adrank.models import load_checkpoint
    from adrank.training.evaluation import evaluate_scores, format_evaluation, score_log
    from adrank.training.heldout import load_heldout

    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    model, schema, _ = load_checkpoint(args.checkpoint)
    reader = open_log_from(args, args.data)
    heldout = None if args.all_rows else load_heldout(args.checkpoint)
    # The training log (same file) is scored on its held-out rows only.
    same_log = heldout is not None and heldout.data == str(reader.path.resolve())
    rows = np.sort(heldout.rows) if same_log else None
    scores, log_rows = score_log(
        model, reader, schema, rows=rows, by=args.by, budget=BadRowBudget(args.skip_bad_rows)
    )
    scope = "every row"
    if same_log:
        if heldout.num_rows >= 0 and log_rows != heldout.num_rows:
            raise LogError(
                reader.path,
                f"has {log_rows:,} rows, but {heldout.num_rows:,} when {args.checkpoint.name} "
                "was trained: its held-out rows no longer apply (pass --all-rows)",
            )
        scope = f"the held-out rows saved with {args.checkpoint.name}"
    result = evaluate_scores(scores, by_name=args.by, resamples=args.bootstrap, seed=args.seed)
    result["scope"] = scope
    result["log_rows"] = log_rows
    if args.json:
        print(json.dumps(_finite(result), indent=2))
    else:
        print(f"{reader.path}: {scope}")
        print(format_evaluation(result))
    return 0
