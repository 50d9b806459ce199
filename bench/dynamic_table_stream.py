"""Stream distinct ids through a dynamic embedding table with a memory limit; report throughput.

Glossary: ``insert`` an observe() of ids the table has not seen (admit-all: each one gets a row,
evicting the least recently written once the limit is reached); ``update`` apply_adagrad on
present ids; ``lookup`` rows of random ids (about half present); ``bag`` embedding_bag sum over
bags of 20 ids; ``concurrent`` lookups in a second thread while this one inserts.

The memory limit is checked after every batch (memory_bytes and peak_memory_bytes never above
it). Figures are one thread each, batches of --batch ids (the Python call is amortized).

Run: ``.venv/bin/python bench/dynamic_table_stream.py`` (10 million ids, dim 16, 256 MiB);
``--ids 1000000`` for a quick run.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from adrank.dynamic_table import DynamicEmbeddingTable, DynamicTableConfig


def rate(items: int, seconds: float) -> str:
    return f"{items / seconds / 1e6:6.2f} M/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--memory-mib", type=int, default=256)
    parser.add_argument("--batch", type=int, default=65_536)
    args = parser.parse_args()

    limit = args.memory_mib << 20
    table = DynamicEmbeddingTable(
        DynamicTableConfig(dim=args.dim, memory_limit_bytes=limit, init_scale=0.01)
    )
    print(f"dim {args.dim}, limit {args.memory_mib} MiB -> max_rows {table.max_rows:,}")

    start = time.perf_counter()
    for first in range(0, args.ids, args.batch):
        ids = np.arange(first, min(first + args.batch, args.ids), dtype=np.int64)
        table.observe(ids, now=first)
        assert table.memory_bytes <= limit
    insert_s = time.perf_counter() - start
    stats = table.stats()
    assert table.peak_memory_bytes <= limit
    print(
        f"insert  {args.ids:>11,} distinct ids  {rate(args.ids, insert_s)}  "
        f"rows {stats['rows']:,}  evicted {stats['evicted']:,}  rebuilds {stats['rebuilds']}  "
        f"memory {table.memory_bytes / 2**20:.1f} MiB  peak {table.peak_memory_bytes / 2**20:.1f}"
        f" MiB  (limit {args.memory_mib} MiB)"
    )

    rng = np.random.default_rng(0)
    low = max(0, args.ids - 2 * table.max_rows)  # about half the ids drawn are present
    probes = [rng.integers(low, args.ids, size=args.batch) for _ in range(40)]
    grads = rng.standard_normal((args.batch, args.dim)).astype(np.float32)

    start = time.perf_counter()
    hits = 0
    for ids in probes:
        _, found = table.lookup(ids, return_found=True)
        hits += int(found.sum())
    lookup_s = time.perf_counter() - start
    total = len(probes) * args.batch
    print(f"lookup  {total:>11,} ids  {rate(total, lookup_s)}  hit rate {hits / total:.2f}")

    offsets = np.arange(0, args.batch, 20, dtype=np.int64)
    start = time.perf_counter()
    for ids in probes:
        table.embedding_bag(ids, offsets, "sum")
    bag_s = time.perf_counter() - start
    print(f"bag     {total:>11,} ids  {rate(total, bag_s)}  (sum, 20 ids a bag)")

    start = time.perf_counter()
    updated = 0
    for ids in probes:
        updated += table.apply_adagrad(ids, grads, now=args.ids, lr=0.01)
    update_s = time.perf_counter() - start
    print(f"update  {total:>11,} ids  {rate(total, update_s)}  ({updated:,} present, Adagrad)")

    # Lookups in a second thread while this one inserts fresh ids.
    stop = threading.Event()
    looked = [0]

    def read() -> None:
        i = 0
        while not stop.is_set():
            table.lookup(probes[i % len(probes)])
            looked[0] += args.batch
            i += 1

    reader = threading.Thread(target=read)
    reader.start()
    start = time.perf_counter()
    inserted = 0
    for first in range(args.ids, args.ids + args.ids // 10, args.batch):
        table.observe(np.arange(first, first + args.batch, dtype=np.int64), now=first)
        inserted += args.batch
    both_s = time.perf_counter() - start
    stop.set()
    reader.join()
    assert table.peak_memory_bytes <= limit
    print(
        f"concurrent  insert {rate(inserted, both_s)} while a reader looks up "
        f"{rate(looked[0], both_s)}  (peak memory {table.peak_memory_bytes / 2**20:.1f} MiB)"
    )


if __name__ == "__main__":
    main()
