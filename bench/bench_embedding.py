"""Embedding lookup against torch, in one run.

Groups (items = ids looked up):
- ``{dtype} {mode} R=.. D=.. t=..``: 4096 bags of 1 to 50 uniform ids; adrank's
  ``embedding_bag`` against ``torch.nn.functional.embedding_bag`` (fp32, fp16) or
  ``torch.ops.quantized.embedding_bag_byte_rowwise_offsets`` (int8), both on the same memory.
- ``gather R=.. D=.. t=..``: the random-read ceiling, ``torch.index_select`` of the same fp32
  rows (role "ceiling": shown, not a baseline).
- ``serving 1000x26``: 1,000 candidates x 26 fields of 1 to 3 ids; one
  ``embedding_bag_collection`` call against a loop of 26 torch calls and a stack.
- ``fixed cost``: one bag of one id; one request's 26 fields of one id each (a prepared
  ``EmbeddingBagCollection``, the ``embedding_bag_collection`` function, a loop of torch calls).
- ``peer grid``: every contender (adrank, torch, FBGEMM's op called directly, FBGEMM's module,
  torchrec's ``EmbeddingBagCollection``) interleaved in rounds per cell, one thread, printed as
  one table of medians and ratios with the page size each table got (``embedding_peers.py``).
  FBGEMM and torchrec are optional: absent, they are left out.

Run: ``.venv/bin/python -m pytest bench/bench_embedding.py --benchmark-only``.
``ADRANK_BENCH_BIG=1`` adds the 1e7-row tables (~7 GB, several minutes);
``ADRANK_BENCH_ROWS=100000`` sets the table sizes of the pytest-benchmark groups directly.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import adrank
from adrank import EmbeddingTable, ops
from adrank.embedding_table import huge_page_bytes
from embedding_peers import HEADER, report_line, run_grid

NUM_BAGS = 4096
BIG = os.environ.get("ADRANK_BENCH_BIG") == "1"
ROW_COUNTS = [
    int(r)
    for r in os.environ.get(
        "ADRANK_BENCH_ROWS", "100000,1000000,10000000" if BIG else "100000,1000000"
    ).split(",")
]
DIMS = [16, 64, 128]
THREADS = [1, 2]
CASES = [
    (rows, dim, dtype, mode)
    for rows in ROW_COUNTS
    for dim in DIMS
    for dtype, modes in [
        ("float32", ["sum", "mean", "max"]),
        ("float16", ["sum"]),
        ("int8", ["sum"]),
    ]
    for mode in modes
]

_tables: dict[tuple, tuple] = {}


def tables_for(rows: int, dim: int, dtype: str) -> tuple[EmbeddingTable, torch.Tensor]:
    """(adrank table, torch weight over the same bytes); only the latest one is kept."""
    key = (rows, dim, dtype)
    if key not in _tables:
        _tables.clear()
        rng = np.random.default_rng(0)
        values = np.empty((rows, dim), np.float32)
        for begin in range(0, rows, 1 << 20):
            chunk = values[begin : begin + (1 << 20)]
            chunk[...] = rng.random(chunk.shape, dtype=np.float32) - np.float32(0.5)
        if dtype == "int8":
            packed = torch.ops.quantized.embedding_bag_byte_prepack(torch.from_numpy(values))
            del values
            table = EmbeddingTable.from_rowwise(packed.numpy())
            del packed
        else:
            table = EmbeddingTable(values, dtype)
            del values
        # torch reads the table's own aligned memory, so both sides see the same layout.
        weight = as_tensor(table.data)
        _tables[key] = (table, weight)
    return _tables[key]


def as_tensor(storage: np.ndarray) -> torch.Tensor:
    """A tensor over a table's read-only storage (torch warns about read-only memory; it only
    reads it here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(storage)


def bags(rows: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 51, NUM_BAGS)
    indices = rng.integers(0, rows, int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return indices, offsets


@pytest.fixture(params=THREADS, ids=lambda t: f"t{t}")
def threads(request):
    adrank.set_num_threads(request.param)
    torch.set_num_threads(request.param)
    yield request.param
    adrank.set_num_threads(1)
    torch.set_num_threads(1)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[2]}-{c[3]}-R{c[0]}-D{c[1]}")
@pytest.mark.parametrize("side", ["adrank", "torch"])
def test_embedding_bag(benchmark, case, side, threads):
    rows, dim, dtype, mode = case
    table, weight = tables_for(rows, dim, dtype)
    indices, offsets = bags(rows)
    benchmark.group = f"{dtype} {mode} R={rows:.0e} D={dim} t={threads}"
    # Both sides read the same memory; record whether its huge pages were granted.
    benchmark.extra_info.update(
        role="adrank" if side == "adrank" else "baseline",
        items=len(indices),
        huge_page_bytes=huge_page_bytes(table.data),
    )
    if side == "adrank":
        out = np.empty((NUM_BAGS, dim), np.float32)
        benchmark(ops.embedding_bag, table, indices, offsets, mode, out=out)
        return
    idx, off = torch.from_numpy(indices), torch.from_numpy(offsets)
    if dtype == "int8":
        run = torch.ops.quantized.embedding_bag_byte_rowwise_offsets
        result = benchmark(run, weight, idx, off, mode=0).numpy()
    else:
        result = benchmark(F.embedding_bag, idx, weight, off, mode=mode).float().numpy()
    expected = ops.embedding_bag(table, indices, offsets, mode)
    np.testing.assert_allclose(result, expected, rtol=1e-2, atol=5e-2)


@pytest.mark.parametrize("side", ["adrank prepared", "adrank function", "torch"])
def test_request_fields(benchmark, side):
    """One request's own fields: 26 fields of one id each, the fixed cost of a many-field call.
    A serving process prepares an EmbeddingBagCollection once; the function converts per call."""
    keys, tables, _, _ = serving_batch(rows=1000)
    values = np.random.default_rng(4).integers(0, 1000, len(keys))
    lengths = np.ones(len(keys), np.int64)
    out = np.empty((1, len(keys), 16), np.float32)
    benchmark.group = "fixed cost: 1 request x 26 fields of 1 id"
    benchmark.extra_info.update(role="baseline" if side == "torch" else "adrank", items=len(keys))
    expected = ops.embedding_bag_collection(keys, values, lengths, tables)
    if side == "adrank prepared":
        prepared = ops.EmbeddingBagCollection(keys, tables)
        benchmark(prepared, values, lengths, out=out)
    elif side == "adrank function":
        benchmark(ops.embedding_bag_collection, keys, values, lengths, tables, out=out)
    else:
        weights = [as_tensor(tables[key].data) for key in keys]
        ids = [torch.from_numpy(values[f : f + 1]) for f in range(len(keys))]
        start = torch.zeros(1, dtype=torch.int64)

        def torch_loop():
            pooled = [F.embedding_bag(i, w, start) for i, w in zip(ids, weights, strict=True)]
            return torch.stack(pooled, dim=1)

        out = benchmark(torch_loop).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("rows", ROW_COUNTS)
def test_random_read_ceiling(benchmark, rows, dim, threads):
    _, weight = tables_for(rows, dim, "float32")
    indices, _ = bags(rows)
    idx = torch.from_numpy(indices)
    out = torch.empty((len(indices), dim))
    benchmark.group = f"gather R={rows:.0e} D={dim} t={threads}"
    benchmark.extra_info.update(role="ceiling", items=len(indices))
    benchmark(torch.index_select, weight, 0, idx, out=out)


def serving_batch(num_fields: int = 26, candidates: int = 1000, rows: int = 100_000):
    rng = np.random.default_rng(2)
    keys = [f"field{f}" for f in range(num_fields)]
    tables = {key: EmbeddingTable(rng.random((rows, 16), dtype=np.float32) - 0.5) for key in keys}
    lengths = rng.integers(1, 4, (num_fields, candidates))
    values = np.concatenate([rng.integers(0, rows, n) for n in lengths.sum(axis=1)])
    return keys, tables, values, lengths


@pytest.mark.parametrize("side", ["adrank", "torch"])
def test_serving_shaped(benchmark, side, threads):
    keys, tables, values, lengths = serving_batch()
    benchmark.group = f"serving 1000x26 t={threads}"
    benchmark.extra_info.update(
        role="adrank" if side == "adrank" else "baseline", items=len(values)
    )
    if side == "adrank":
        out = np.empty((lengths.shape[1], len(keys), 16), np.float32)
        benchmark(ops.embedding_bag_collection, keys, values, lengths, tables, out=out)
        return
    weights = [as_tensor(tables[key].data) for key in keys]
    ends = np.cumsum(lengths.sum(axis=1))
    per_field = []
    for f in range(len(keys)):
        ids = torch.from_numpy(values[ends[f] - lengths[f].sum() : ends[f]])
        starts = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths[f])[:-1]]))
        per_field.append((ids, starts))

    def torch_loop():
        pooled = [
            F.embedding_bag(i, w, o, mode="sum")
            for (i, o), w in zip(per_field, weights, strict=True)
        ]
        return torch.stack(pooled, dim=1)

    result = benchmark(torch_loop).numpy()
    expected = ops.embedding_bag_collection(keys, values, lengths, tables)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("side", ["adrank", "adrank native", "torch"])
def test_fixed_cost(benchmark, side):
    rows = np.random.default_rng(3).random((1000, 16), dtype=np.float32)
    table = EmbeddingTable(rows)
    indices, offsets = np.array([5], np.int64), np.array([0], np.int64)
    out = np.empty((1, 16), np.float32)
    benchmark.group = "fixed cost: 1 bag of 1 id"
    benchmark.extra_info.update(role="baseline" if side == "torch" else "adrank", items=1)
    if side == "adrank":
        benchmark(ops.embedding_bag, table, indices, offsets, out=out)
    elif side == "adrank native":
        from adrank import _native

        native = table._native
        benchmark(
            _native.embedding_bag,
            native,
            indices,
            offsets,
            _native.PoolingMode.sum,
            None,
            False,
            -1,
            out,
        )
    else:
        benchmark(
            F.embedding_bag,
            torch.from_numpy(indices),
            torch.from_numpy(rows),
            torch.from_numpy(offsets),
        )


def test_peer_grid(benchmark):
    """The whole peer grid, timed once (its own rounds are inside): see embedding_peers.py."""
    _tables.clear()  # free the other groups' tables first
    lines = []
    benchmark.group = "embedding peer grid"
    benchmark.extra_info.update(role="grid")
    benchmark.pedantic(
        lambda: lines.extend(report_line(cell) for cell in run_grid(big=BIG, rounds=9)),
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info["report"] = [*HEADER, *lines]
