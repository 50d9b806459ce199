"""Training at log scale: a generated log of 20 million rows, written to Parquet, trained by
streaming (``adrank train --stream``), against the in-memory path on 2 million rows.

Glossary: *peak RSS* is the process's maximum resident memory (GNU time's ``%M``); *rows/s* counts
training rows over the whole command (reading, hashing, training, the held-out pass).

    python bench/log_scale_training.py --rows 20000000 --in-memory-rows 2000000 --out /tmp/scale

Each run is a separate ``adrank train`` process so that its peak RSS is its own. The log is
AliExpress-like (``adrank.data.layouts``; six id columns, eight numbers, click and
conversion), drawn in parts of one world and written one Parquet file per part.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def write_log(directory: Path, rows: int, part_rows: int) -> None:
    import pyarrow.parquet as pq

    from adrank.data.layouts import generate_layout

    directory.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, rows, part_rows)):
        path = directory / f"part-{part:04d}.parquet"
        if path.exists():
            continue
        table, _ = generate_layout("aliexpress", min(part_rows, rows - start), seed=0, part=part)
        pq.write_table(table.drop(["search_id"]), path)


def run_train(args: list[str], scratch: Path) -> dict:
    """One ``adrank train`` process under GNU time: wall seconds, its own peak RSS (MiB)."""
    peak_file = scratch / "peak_kib.txt"
    started = time.perf_counter()
    child = subprocess.run(
        [
            *("/usr/bin/time", "-f", "%M", "-o", str(peak_file)),
            *(sys.executable, "-m", "adrank.cli", "train", *args),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if child.returncode:
        raise RuntimeError(child.stderr)
    peak = int(peak_file.read_text().split()[-1]) / 1024
    return {"seconds": seconds, "peak_rss_mib": peak, "stdout": child.stdout}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--in-memory-rows", type=int, default=2_000_000)
    parser.add_argument("--part-rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/adrank-scale"))
    parser.add_argument("--batch-size", type=int, default=1024)
    options = parser.parse_args()
    big, small = options.out / "log", options.out / "log-small"
    write_log(big, options.rows, options.part_rows)
    write_log(small, options.in_memory_rows, options.part_rows)
    schema = options.out / "schema.toml"
    subprocess.run(
        [sys.executable, "-m", "adrank.cli", "schema", "infer", str(small), "--out", str(schema)],
        check=True,
    )
    common = ["--schema", str(schema), "--batch-size", str(options.batch_size), "--no-progress"]
    results = {}
    for name, data, rows, extra in (
        ("stream_small", small, options.in_memory_rows, ["--stream"]),
        ("in_memory_small", small, options.in_memory_rows, []),
        ("stream_big", big, options.rows, ["--stream"]),
    ):
        out = options.out / f"{name}.pt"
        result = run_train(["--data", str(data), "--out", str(out), *common, *extra], options.out)
        result["rows"] = rows
        result["train_rows_per_s"] = rows * 0.8 / result["seconds"]
        results[name] = result
        print(name, json.dumps({k: v for k, v in result.items() if k != "stdout"}))
        print(result["stdout"])
    (options.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
