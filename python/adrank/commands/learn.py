"""``adrank learn DATA --out OUT --fields a,b --label click``: train online as impressions arrive.

Reads each new Parquet file of the growing directory DATA (name order; see
``adrank.online.stream`` for how writers make a file appear whole), trains the factorization
machine of ``adrank.online.learner`` on it in batches, and writes a publication to OUT after
every file (``adrank.online.publish``: snapshots first, then deltas a serving process applies in
place with ``DeltaFollower``). ``--once`` trains on what is there and stops; otherwise it polls
until ``--idle-exit`` seconds pass without a new file (0: forever).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "train embeddings online from a growing Parquet directory; publish deltas for serving"


def _fields(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected column names separated by commas, got {text!r}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="a directory that Parquet files are added to")
    parser.add_argument("--out", type=Path, required=True, help="where publications go")
    parser.add_argument("--fields", type=_fields, required=True, help="int64 id columns: a,b,c")
    parser.add_argument("--label", required=True, help="the 0/1 label column")
    parser.add_argument("--dim", type=int, default=8, help="factor dim of each id")
    parser.add_argument("--memory-mib", type=int, default=64, help="memory limit per field table")
    parser.add_argument("--admit-threshold", type=int, default=1, help="sightings before a row")
    parser.add_argument("--ttl", type=int, default=0, help="seconds unseen before expiry (0: off)")
    parser.add_argument("--lr", type=float, default=0.05, help="Adagrad learning rate")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--once", action="store_true", help="train on the files there, then stop")
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--idle-exit", type=float, default=0.0, help="stop after this idle time")


def run(args: argparse.Namespace) -> int:
    from adrank.online import FMLearner, LearnerConfig, ParquetDirectory, Publisher

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.memory_mib < 1:
        raise ValueError(f"--memory-mib must be >= 1, got {args.memory_mib}")
    config = LearnerConfig(
        fields=args.fields,
        label=args.label,
        dim=args.dim,
        memory_limit_bytes=args.memory_mib << 20,
        admit_threshold=args.admit_threshold,
        ttl=args.ttl,
        lr=args.lr,
    )
    learner = FMLearner(config)
    source = ParquetDirectory(args.data)
    publisher = Publisher(learner, args.out)
    publisher.publish()
    columns = [*config.fields, config.label]
    idle_since = time.monotonic()
    while True:
        files = source.new_files()
        for path in files:
            table = source.read(path, columns)
            if table is None:
                continue
            data = {c: table.column(c).to_numpy() for c in columns}
            losses = []
            now = int(time.time())
            for start in range(0, table.num_rows, args.batch_size):
                batch = {f: data[f][start : start + args.batch_size] for f in config.fields}
                labels = data[config.label][start : start + args.batch_size]
                losses.append(learner.step(batch, labels, now))
            folder = publisher.publish(source_time=path.stat().st_mtime)
            loss = sum(losses) / len(losses) if losses else float("nan")
            print(f"{path.name}: {table.num_rows} rows, log loss {loss:.4f} -> {folder.name}")
            idle_since = time.monotonic()
        if args.once:
            return 0
        if args.idle_exit and time.monotonic() - idle_since > args.idle_exit:
            return 0
        if not files:
            time.sleep(args.poll_seconds)
