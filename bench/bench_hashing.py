"""Feature hashing: adrank against what a user would otherwise pick, in one run.

1M short strings (8 to 24 bytes) and 1M int64 ids, one thread. Baselines: scikit-learn's
FeatureHasher(input_type="string"), mmh3.hash in a Python loop, pandas.util.hash_array.

    make bench    # or: .venv/bin/python -m pytest bench/bench_hashing.py --benchmark-only
"""

from __future__ import annotations

import mmh3
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.feature_extraction import FeatureHasher

import adrank
from adrank import ops

N = 1_000_000
NUM_BUCKETS = 2**20
STRINGS_GROUP = "hash 1M strings (8-24 bytes)"
IDS_GROUP = "hash 1M int64 ids"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    previous = adrank.get_num_threads()
    adrank.set_num_threads(1)
    yield
    adrank.set_num_threads(previous)


@pytest.fixture(scope="module")
def strings() -> list[str]:
    rng = np.random.default_rng(0)
    lengths = rng.integers(8, 25, N)
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789_", dtype=np.uint8)
    chars = alphabet[rng.integers(0, len(alphabet), int(lengths.sum()))].tobytes().decode()
    ends = np.cumsum(lengths)
    return [chars[e - n : e] for e, n in zip(ends.tolist(), lengths.tolist(), strict=True)]


@pytest.fixture(scope="module")
def ids() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 2**62, N, dtype=np.int64)


def _run(benchmark, fn, role: str, group: str, rounds: int = 5):
    benchmark.group = group
    benchmark.extra_info.update(role=role, items=N)
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)


def test_adrank_strings_from_list(benchmark, strings) -> None:
    out = _run(
        benchmark, lambda: ops.hash_strings(strings, 1, NUM_BUCKETS), "adrank", STRINGS_GROUP
    )
    assert out.shape == (N,)
    assert 0 <= out.min() <= out.max() < NUM_BUCKETS


def test_adrank_strings_from_arrow(benchmark, strings) -> None:
    column = pa.array(strings)
    out = _run(benchmark, lambda: ops.hash_strings(column, 1, NUM_BUCKETS), "adrank", STRINGS_GROUP)
    np.testing.assert_array_equal(out, ops.hash_strings(strings, 1, NUM_BUCKETS))


def test_adrank_sklearn_mode_from_list(benchmark, strings) -> None:
    indices, _ = _run(
        benchmark, lambda: ops.hash_sklearn(strings, NUM_BUCKETS), "adrank", STRINGS_GROUP
    )
    expected = FeatureHasher(NUM_BUCKETS, input_type="string").transform(
        [[s] for s in strings[:1000]]
    )
    np.testing.assert_array_equal(indices[:1000], expected.indices)


def test_sklearn_feature_hasher(benchmark, strings) -> None:
    hasher = FeatureHasher(NUM_BUCKETS, input_type="string")
    rows = [[s] for s in strings]  # FeatureHasher takes one iterable of features per sample
    out = _run(benchmark, lambda: hasher.transform(rows), "baseline", STRINGS_GROUP, rounds=2)
    assert out.shape == (N, NUM_BUCKETS)


def test_mmh3_python_loop(benchmark, strings) -> None:
    def hash_loop() -> np.ndarray:
        return np.fromiter(
            (mmh3.hash(s, 1, signed=False) % NUM_BUCKETS for s in strings), np.int64, count=N
        )

    out = _run(benchmark, hash_loop, "baseline", STRINGS_GROUP, rounds=2)
    assert out.max() < NUM_BUCKETS


def test_pandas_hash_array_strings(benchmark, strings) -> None:
    column = np.array(strings, dtype=object)
    out = _run(
        benchmark, lambda: pd.util.hash_array(column) % NUM_BUCKETS, "baseline", STRINGS_GROUP
    )
    assert out.shape == (N,)


def test_adrank_ids(benchmark, ids) -> None:
    out = _run(benchmark, lambda: ops.hash_ids(ids, 1, NUM_BUCKETS), "adrank", IDS_GROUP, rounds=20)
    assert 0 <= out.min() <= out.max() < NUM_BUCKETS


def test_pandas_hash_array_ids(benchmark, ids) -> None:
    out = _run(
        benchmark, lambda: pd.util.hash_array(ids) % NUM_BUCKETS, "baseline", IDS_GROUP, rounds=20
    )
    assert out.shape == (N,)


def test_numpy_multiply_shift_ids(benchmark, ids) -> None:
    """The cheapest thing a user could write: one multiply and a shift, no real hash."""

    def multiply_shift() -> np.ndarray:
        return ((ids.view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(44)).astype(
            np.int64
        )

    out = _run(benchmark, multiply_shift, "baseline", IDS_GROUP, rounds=20)
    assert out.max() < NUM_BUCKETS
