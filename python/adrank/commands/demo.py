"""``adrank demo``: the main job of the README's first command.

Until the end-to-end ranking demo lands, it shows feature hashing on a small batch of ad
requests: raw columns in, the bucket ids the embedding tables would read out.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from adrank import ops

HELP = "Run the demo: hash a batch of ad requests' features with adrank's kernels."

CREATIVE_IDS = np.array([9001, 9002, 9003, 9004], dtype=np.int64)
ADVERTISERS = ["brand_a", "brand_b", None, "brand_a"]  # None: a missing cell in the log
COUNTRIES = ["US", "DE", "JP", "US"]
WATCH_SECONDS = np.array([3.5, 12.0, np.nan, 45.0])
WATCH_BOUNDARIES = [5.0, 15.0, 30.0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-buckets", type=int, default=1 << 20, help="buckets per field")


def run(args: argparse.Namespace) -> int:
    n = args.num_buckets
    creative = ops.hash_ids(CREATIVE_IDS, slot=0, num_buckets=n)
    advertiser = ops.hash_strings(ADVERTISERS, slot=1, num_buckets=n)
    country = ops.hash_strings(COUNTRIES, slot=2, num_buckets=n)
    cross = ops.hash_cross([advertiser, country], slot=3, num_buckets=n)
    watch = ops.bucketize(WATCH_SECONDS, WATCH_BOUNDARIES)

    print(f"adrank feature hashing: {len(CREATIVE_IDS)} candidates, {n} buckets per field\n")
    header = f"{'creative':>9} {'advertiser':>11} {'country':>8} {'adv x country':>14} {'watch':>6}"
    print(header)
    print("-" * len(header))
    for i in range(len(CREATIVE_IDS)):
        print(f"{creative[i]:>9} {advertiser[i]:>11} {country[i]:>8} {cross[i]:>14} {watch[i]:>6}")
    print(f"\nmissing advertiser -> bucket {ops.missing_bucket(1, n)} (fixed per slot)")

    # The same call at serving scale: 40 fields x 1,000 candidates in one keyed jagged batch.
    fields, candidates = 40, 1000
    values = [f"v{i % 5000}" for i in range(fields * candidates)]
    lengths = np.ones(fields * candidates, dtype=np.int64)
    start = time.perf_counter()
    ops.hash_jagged(values, lengths, slots=list(range(fields)), num_buckets=n)
    elapsed = time.perf_counter() - start
    print(f"{fields} fields x {candidates} candidates hashed in one call: {elapsed * 1e3:.2f} ms")
    return 0
