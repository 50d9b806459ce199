"""``adrank learn DATA --out OUT --fields a,b --label click``: train online as impressions arrive.

Reads each new Parquet file of the growing directory DATA (name order; see
``adrank.online.stream`` for how writers make a file appear whole), trains the factorization
machine of ``adrank.online.learner`` on it in batches, and writes a publication to OUT after
each round that trained (``adrank.online.publish``: snapshots first, then deltas a serving
process applies in place with ``DeltaFollower``, and every ``--snapshot-every`` publications a
snapshot again, where a new follower starts), then expires rows past ``--ttl``.

Labels either sit in DATA (``--label`` names the 0/1 column), or, with ``--events EVENTS``, come
from a second growing directory of events (``event_id``, ``request_id``, ``kind``, ``time``)
joined to DATA's ``request_id`` and ``time`` under an attribution window
(``adrank.online.join``: late and duplicate events handled; ``--label`` is the event kind).

``--once`` trains on what is there (closing every window) and stops; otherwise it polls until
``--idle-exit`` seconds pass without a new file (0: forever).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

HELP = "train embeddings online from a growing Parquet directory; publish deltas for serving"
EVENT_COLUMNS = ["event_id", "request_id", "kind", "time"]


def _fields(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected column names separated by commas, got {text!r}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="a directory that Parquet files are added to")
    parser.add_argument("--out", type=Path, required=True, help="where publications go")
    parser.add_argument("--fields", type=_fields, required=True, help="int64 id columns: a,b,c")
    parser.add_argument("--label", required=True, help="the 0/1 label column (or event kind)")
    parser.add_argument("--events", type=Path, help="a growing directory of events to join")
    parser.add_argument("--window", type=float, default=3600.0, help="attribution window, s")
    parser.add_argument("--dim", type=int, default=8, help="factor dim of each id")
    parser.add_argument("--memory-mib", type=int, default=64, help="memory limit per field table")
    parser.add_argument("--admit-threshold", type=int, default=1, help="sightings before a row")
    parser.add_argument("--ttl", type=int, default=0, help="seconds unseen before expiry (0: off)")
    parser.add_argument("--lr", type=float, default=0.05, help="Adagrad learning rate")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--once", action="store_true", help="train on the files there, then stop")
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--idle-exit", type=float, default=0.0, help="stop after this idle time")
    parser.add_argument(
        "--snapshot-every",
        type=int,
        default=100,
        help="a snapshot publication every N (a new follower starts there; older windows are "
        "deleted); 0: only the first, nothing deleted",
    )


def _columns(table: Any, names: list[str]) -> dict[str, Any]:
    return {c: table.column(c).to_numpy(zero_copy_only=False) for c in names}


def run(args: argparse.Namespace) -> int:
    from adrank.online import FMLearner, LearnerConfig, ParquetDirectory, Publisher
    from adrank.online.join import LabelJoiner

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.memory_mib < 1:
        raise ValueError(f"--memory-mib must be >= 1, got {args.memory_mib}")
    if args.snapshot_every < 0:
        raise ValueError(f"--snapshot-every must be >= 0, got {args.snapshot_every}")
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
    impressions = ParquetDirectory(args.data)
    events = ParquetDirectory(args.events) if args.events else None
    joiner = LabelJoiner(config.fields, args.window, args.label) if events else None
    publisher = Publisher(learner, args.out, args.snapshot_every)
    publisher.publish()
    idle_since = time.monotonic()
    unpublished: list[str] = []  # files read since the last publication (joins may wait)
    landed = 0.0  # when the newest of them landed
    while True:
        batches: list[tuple[dict[str, Any], Any]] = []
        names = []
        for path in impressions.new_files():
            wanted = [*config.fields, *(["request_id", "time"] if joiner else [config.label])]
            table = impressions.read(path, wanted)
            if table is None:
                continue
            data = _columns(table, wanted)
            if joiner:
                joiner.add_impressions(list(data["request_id"]), data["time"], data)
            else:
                batches.append(({f: data[f] for f in config.fields}, data[config.label]))
            landed = max(landed, path.stat().st_mtime)
            names.append(path.name)
        for path in events.new_files() if events else []:
            table = events.read(path, EVENT_COLUMNS)
            if table is None:
                continue
            data = _columns(table, EVENT_COLUMNS)
            joiner.add_events(
                list(data["event_id"]), list(data["request_id"]), list(data["kind"]), data["time"]
            )
            landed = max(landed, path.stat().st_mtime)
            names.append(path.name)
        if joiner:
            features, labels = joiner.ready(flush=args.once)
            if len(labels):
                batches.append((features, labels))
        now = int(joiner.clock) if joiner and joiner.clock > float("-inf") else int(time.time())
        rows, losses = 0, []
        for features, labels in batches:
            for start in range(0, len(labels), args.batch_size):
                part = {f: features[f][start : start + args.batch_size] for f in config.fields}
                losses.append(learner.step(part, labels[start : start + args.batch_size], now))
            rows += len(labels)
        if rows:
            folder = publisher.publish(landed or None, sources=[*unpublished, *names])
            unpublished, landed = [], 0.0
            expired = learner.expire(now) if args.ttl else 0
            loss = sum(losses) / len(losses)
            print(
                f"{', '.join(names)}: {rows} rows, log loss {loss:.4f}, {expired} rows expired"
                f" -> {folder.name}",
                flush=True,
            )
        else:
            unpublished += names
        if names:
            idle_since = time.monotonic()
        if args.once:
            if joiner:
                stats = joiner.stats
                print(
                    f"joined {stats.emitted} impressions ({stats.positives} positive); events: "
                    f"{stats.duplicate_events} duplicate, {stats.late_events} late, "
                    f"{stats.unmatched_events} unmatched"
                )
            return 0
        if args.idle_exit and time.monotonic() - idle_since > args.idle_exit:
            return 0
        if not names:
            time.sleep(args.poll_seconds)
