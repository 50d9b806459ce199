"""Writes hash_vectors.json: known answers for adrank's two hash functions.

Generated once from the independent `xxhash` and `mmh3` packages and committed. The tests
compare adrank against the committed file, so a changed hash fails CI even where those
packages are not installed: training data and serving depend on these values never moving.

    python tests/data/make_hash_vectors.py   # rewrites the file; review the diff
"""

from __future__ import annotations

import json
from pathlib import Path

import mmh3
import xxhash

# Every XXH3 length class: 0, 1-3, 4-8, 9-16, 17-128, 129-240, and the long path's stripes
# and blocks (a block is 1024 bytes), with and without a partial last stripe.
LENGTHS = [*range(301), 511, 512, 1023, 1024, 1025, 2048, 4096 + 63]
XXH3_SEEDS = [0, 1, 0x9E3779B97F4A7C15, 2**64 - 1]
MURMUR_SEEDS = [0, 1, 2**32 - 1]


def message(length: int) -> bytes:
    """Deterministic bytes covering all 256 values, NUL and high bytes included."""
    return bytes((i * 167 + length * 13 + 5) % 256 for i in range(length))


def main() -> None:
    vectors = [
        {
            "length": n,
            "xxh3_64": {str(s): xxhash.xxh3_64_intdigest(message(n), s) for s in XXH3_SEEDS},
            "murmur3_32": {str(s): mmh3.hash(message(n), s, signed=False) for s in MURMUR_SEEDS},
        }
        for n in LENGTHS
    ]
    out = Path(__file__).with_name("hash_vectors.json")
    out.write_text(
        json.dumps(
            {"message": "bytes((i*167 + length*13 + 5) % 256)", "vectors": vectors}, indent=1
        )
        + "\n"
    )
    print(f"wrote {len(vectors)} vectors to {out}")


if __name__ == "__main__":
    main()
