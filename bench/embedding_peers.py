"""Embedding lookup against its peers, interleaved in rounds within one process.

Glossary:
- contender: one way to compute a cell's pooled output (adrank, torch, FBGEMM's op called
  directly, FBGEMM's module, torchrec's ``EmbeddingBagCollection`` with a ``KeyedJaggedTensor``).
- cell: one shape of the grid (dtype, rows, dim; or a serving shape).
- round: every contender runs ``reps`` calls, in an order that rotates from round to round, so a
  burst of load from another process on this shared machine hits all of them alike.
- ratio: a peer's median time over adrank's (default call, fresh output), above 1 = adrank ahead.

Times are per call, the median over rounds of the thread's CPU time (``time.thread_time``):
everything runs on one thread, and CPU time does not count the time another process held the
core, which wall time on a shared machine does. Wall medians are kept beside them.

FBGEMM (``fbgemm-gpu-cpu``) and torchrec are optional: a peer whose package is missing is
left out of the grid, and every other contender still runs. Every peer's output is checked
against adrank's before it is timed.

Run the grid alone: ``.venv/bin/python bench/embedding_peers.py`` (``--big`` adds the 1e7-row
cells, which need ~7 GB; ``--rounds``, ``--cells`` to pick). ``make bench`` runs the default
grid through ``bench_embedding.py::test_peer_grid`` (``ADRANK_BENCH_BIG=1`` for the big cells).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

import adrank
from adrank import EmbeddingTable, ops
from adrank.embedding_table import aligned_empty, huge_page_bytes

NUM_BAGS = 4096
MAX_BAG = 50
SERVING_FIELDS = 26
SERVING_ROWS = 100_000
SERVING_DIM = 16
CANDIDATES = 1000
MULTI_HOT_FIELDS = 6  # of the 26 serving fields, these get 1 to 20 ids; the rest one each
PEERS = ("torch", "fbgemm op", "fbgemm module", "torchrec")


def fbgemm_available() -> bool:
    try:
        import fbgemm_gpu  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def torchrec_available() -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchrec  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


@dataclass
class Cell:
    name: str
    items: int
    contenders: dict[str, Callable[[], object]] = field(default_factory=dict)
    pages: dict[str, str] = field(default_factory=dict)
    cpu_us: dict[str, float] = field(default_factory=dict)
    wall_us: dict[str, float] = field(default_factory=dict)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over read-only memory (torch warns; the peers only read it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def page_note(array: np.ndarray) -> str:
    granted = huge_page_bytes(array)
    if granted is None:
        return "?"
    return f"2M x{granted >> 21}" if granted else "4K"


def random_rows(rows: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.empty((rows, dim), np.float32)
    for begin in range(0, rows, 1 << 20):
        chunk = values[begin : begin + (1 << 20)]
        chunk[...] = rng.random(chunk.shape, dtype=np.float32) - np.float32(0.5)
    return values


def make_table(rows: int, dim: int, dtype: str, seed: int = 0) -> EmbeddingTable:
    values = random_rows(rows, dim, seed)
    if dtype == "int8":
        packed = torch.ops.quantized.embedding_bag_byte_prepack(torch.from_numpy(values))
        del values
        return EmbeddingTable.from_rowwise(packed.numpy())
    return EmbeddingTable(values, dtype)


# --- FBGEMM's inference table-batched embedding (EmbeddingSpMDM on CPU) ---------------------


def fbgemm_module(tables: list[EmbeddingTable]):
    """An ``IntNBitTableBatchedEmbeddingBagsCodegen`` over the tables, fp32 output. fp32 and
    fp16 rows have adrank's layout, so a single table is shared, not copied; int8 rows carry
    fp16 scale and bias in front (FBGEMM's layout), so they are copied."""
    from fbgemm_gpu.split_embedding_configs import SparseType
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import (
        EmbeddingLocation,
        PoolingMode,
    )
    from fbgemm_gpu.split_table_batched_embeddings_ops_inference import (
        IntNBitTableBatchedEmbeddingBagsCodegen,
    )

    kinds = {
        "float32": SparseType.FP32,
        "float16": SparseType.FP16,
        "int8_rowwise": SparseType.INT8,
    }
    specs = [
        (f"t{t}", table.num_rows, table.dim, kinds[table.dtype], EmbeddingLocation.HOST)
        for t, table in enumerate(tables)
    ]
    module = IntNBitTableBatchedEmbeddingBagsCodegen(
        specs, device="cpu", output_dtype=SparseType.FP32, pooling_mode=PoolingMode.SUM
    )
    module.initialize_weights()  # zeros, never touched where the table is replaced
    if len(tables) == 1 and tables[0].dtype != "int8_rowwise":
        module.weights_host = as_tensor(tables[0].data.view(np.uint8).reshape(-1))
        return module, [tables[0].data]
    # A copy in memory that asks for huge pages as adrank's tables do, so that both sides read
    # rows through the same page size.
    storage = aligned_empty((module.weights_host.numel(),), np.uint8)
    module.weights_host = torch.from_numpy(storage)
    for (weights, scale_bias), table in zip(module.split_embedding_weights(), tables, strict=True):
        if table.dtype == "int8_rowwise":
            rows = torch.from_numpy(table.data)
            weights.copy_(rows[:, : table.dim])
            affine = rows[:, table.dim :].contiguous().view(torch.float32)  # [R, 2] scale, bias
            scale_bias.copy_(affine.to(torch.float16).view(torch.uint8))
        else:
            weights.copy_(as_tensor(table.data.view(np.uint8)))
    return module, [storage]


def fbgemm_direct(module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The module's one op, called with its prepared tensors: no bounds check, no Python."""
    op = torch.ops.fbgemm.int_nbit_split_embedding_codegen_lookup_function
    m = module
    empty_locations = torch.empty(0, dtype=torch.int32)

    def lookup(indices: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return op(
            dev_weights=m.weights_host,
            uvm_weights=m.weights_uvm,
            weights_placements=m.weights_placements,
            weights_offsets=m.weights_offsets,
            weights_tys=m.weights_tys,
            D_offsets=m.D_offsets,
            total_D=m.total_D,
            max_int2_D=m.max_int2_D,
            max_int4_D=m.max_int4_D,
            max_int8_D=m.max_int8_D,
            max_float16_D=m.max_float16_D,
            max_float32_D=m.max_float32_D,
            indices=indices,
            offsets=offsets,
            pooling_mode=int(m.pooling_mode),
            indice_weights=None,
            output_dtype=m.output_dtype,
            lxu_cache_weights=m.lxu_cache_weights,
            lxu_cache_locations=empty_locations,
            row_alignment=m.row_alignment,
            max_float8_D=m.max_float8_D,
            fp8_exponent_bits=m.fp8_exponent_bits,
            fp8_exponent_bias=m.fp8_exponent_bias,
        )

    return lookup


# --- torchrec ---------------------------------------------------------------------------------


def torchrec_collection(keys: list[str], tables: list[EmbeddingTable]):
    """torchrec's (unsharded) ``EmbeddingBagCollection`` over the tables' own memory."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
        from torchrec.modules.embedding_modules import EmbeddingBagCollection

    configs = [
        EmbeddingBagConfig(
            name=f"t_{key}",
            embedding_dim=table.dim,
            num_embeddings=table.num_rows,
            feature_names=[key],
            pooling=PoolingType.SUM,
        )
        for key, table in zip(keys, tables, strict=True)
    ]
    collection = EmbeddingBagCollection(tables=configs, device=torch.device("meta"))
    for key, table in zip(keys, tables, strict=True):
        weight = torch.nn.Parameter(as_tensor(table.data), requires_grad=False)
        collection.embedding_bags[f"t_{key}"].weight = weight
    return collection


def keyed_jagged(keys: list[str], values: torch.Tensor, lengths: torch.Tensor):
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    return KeyedJaggedTensor(keys=keys, values=values, lengths=lengths)


# --- cells ------------------------------------------------------------------------------------


def random_bags(rows: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, MAX_BAG + 1, NUM_BAGS)
    indices = rng.integers(0, rows, int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return indices, offsets


def check(name: str, result: object, expected: np.ndarray, dtype: str) -> None:
    got = result.to_dict() if hasattr(result, "to_dict") else result
    if isinstance(got, dict):  # torchrec's KeyedTensor: field by field
        got = torch.stack(list(got.values()), dim=1)
    array = got.float().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    # FBGEMM keeps int8 scale and bias in fp16; fp16 tables may be summed in fp16 by torch.
    tolerance = 1e-4 if dtype == "float32" else 3e-2
    np.testing.assert_allclose(
        array.reshape(expected.shape), expected, rtol=tolerance, atol=tolerance, err_msg=name
    )


def single_table_cell(dtype: str, rows: int, dim: int, peers: set[str]) -> Cell:
    table = make_table(rows, dim, dtype)
    indices, offsets = random_bags(rows)
    cell = Cell(f"{dtype} R={rows:.0e} D={dim}", items=len(indices))
    cell.pages["adrank"] = page_note(table.data)
    out = np.empty((NUM_BAGS, dim), np.float32)
    cell.contenders["adrank"] = lambda: ops.embedding_bag(table, indices, offsets)
    cell.contenders["adrank out="] = lambda: ops.embedding_bag(table, indices, offsets, out=out)
    expected = ops.embedding_bag(table, indices, offsets)
    idx, off = torch.from_numpy(indices), torch.from_numpy(offsets)
    weight = as_tensor(table.data)
    if "torch" in peers:
        if dtype == "int8":
            quantized = torch.ops.quantized.embedding_bag_byte_rowwise_offsets
            cell.contenders["torch"] = lambda: quantized(weight, idx, off, mode=0)
        else:
            cell.contenders["torch"] = lambda: F.embedding_bag(idx, weight, off, mode="sum")
    if "fbgemm op" in peers or "fbgemm module" in peers:
        module, storage = fbgemm_module([table])
        cell.pages["fbgemm"] = page_note(storage[0])
        idx32, off32 = idx.int(), torch.cat([off, torch.tensor([len(indices)])]).int()
        if "fbgemm op" in peers:
            direct = fbgemm_direct(module)
            cell.contenders["fbgemm op"] = lambda: direct(idx32, off32)
        if "fbgemm module" in peers:
            cell.contenders["fbgemm module"] = lambda: module(idx32, off32)
    if "torchrec" in peers and dtype != "int8":
        collection = torchrec_collection(["f"], [table])
        lengths = torch.from_numpy(np.diff(np.append(offsets, len(indices))))

        def torchrec_call():
            return collection(keyed_jagged(["f"], idx, lengths)).values()

        cell.contenders["torchrec"] = torchrec_call
    for name, run in cell.contenders.items():
        check(f"{cell.name} {name}", run(), expected, dtype)
    return cell


def serving_lengths(mixed: bool, rng: np.random.Generator) -> np.ndarray:
    lengths = np.ones((SERVING_FIELDS, CANDIDATES), np.int64)
    if mixed:
        lengths[:MULTI_HOT_FIELDS] = rng.integers(1, 21, (MULTI_HOT_FIELDS, CANDIDATES))
    return lengths


def serving_cell(dtype: str, mixed: bool, peers: set[str]) -> Cell:
    rng = np.random.default_rng(2)
    keys = [f"field{f}" for f in range(SERVING_FIELDS)]
    tables = [make_table(SERVING_ROWS, SERVING_DIM, dtype, seed=f) for f in range(len(keys))]
    lengths = serving_lengths(mixed, rng)
    values = rng.integers(0, SERVING_ROWS, int(lengths.sum()))
    shape = "6/26 fields 1-20 ids" if mixed else "one-hot"
    cell = Cell(f"serving {dtype} 26x1e5 D16 {shape}", items=len(values))
    cell.pages["adrank"] = page_note(tables[0].data)
    prepared = ops.EmbeddingBagCollection(keys, dict(zip(keys, tables, strict=True)))
    out = np.empty((CANDIDATES, SERVING_FIELDS, SERVING_DIM), np.float32)
    cell.contenders["adrank"] = lambda: prepared(values, lengths)
    cell.contenders["adrank out="] = lambda: prepared(values, lengths, out=out)
    expected = prepared(values, lengths)
    ends = np.cumsum(lengths.sum(axis=1))
    if "torch" in peers:
        per_field = []
        for f, table in enumerate(tables):
            ids = torch.from_numpy(values[ends[f] - lengths[f].sum() : ends[f]])
            starts = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths[f])[:-1]]))
            per_field.append((ids, starts, as_tensor(table.data)))
        if dtype == "int8":
            quantized = torch.ops.quantized.embedding_bag_byte_rowwise_offsets

            def torch_loop():
                return torch.stack([quantized(w, i, o, mode=0) for i, o, w in per_field], dim=1)
        else:

            def torch_loop():
                return torch.stack(
                    [F.embedding_bag(i, w, o, mode="sum") for i, o, w in per_field], dim=1
                )

        cell.contenders["torch"] = torch_loop
    tensor_values = torch.from_numpy(values)
    flat_lengths = torch.from_numpy(lengths.reshape(-1))
    if "fbgemm op" in peers or "fbgemm module" in peers:
        module, storage = fbgemm_module(tables)
        cell.pages["fbgemm"] = page_note(storage[0])
        idx32 = tensor_values.int()
        off32 = torch.cat([torch.zeros(1, dtype=torch.int64), flat_lengths.cumsum(0)]).int()
        if "fbgemm op" in peers:
            direct = fbgemm_direct(module)
            cell.contenders["fbgemm op"] = lambda: direct(idx32, off32)
        if "fbgemm module" in peers:
            cell.contenders["fbgemm module"] = lambda: module(idx32, off32)
    if "torchrec" in peers and dtype != "int8":
        collection = torchrec_collection(keys, tables)

        def torchrec_call():
            return collection(keyed_jagged(keys, tensor_values, flat_lengths)).values()

        cell.contenders["torchrec"] = torchrec_call
    for name, run in cell.contenders.items():
        check(f"{cell.name} {name}", run(), expected, dtype)
    return cell


def fixed_cost_cell(peers: set[str]) -> Cell:
    """One bag of one id: the fixed cost of a call."""
    table = make_table(1000, 16, "float32")
    indices, offsets = np.array([5], np.int64), np.array([0], np.int64)
    cell = Cell("fixed cost: 1 bag of 1 id, D16", items=1)
    out = np.empty((1, 16), np.float32)
    cell.contenders["adrank"] = lambda: ops.embedding_bag(table, indices, offsets)
    cell.contenders["adrank out="] = lambda: ops.embedding_bag(table, indices, offsets, out=out)
    expected = ops.embedding_bag(table, indices, offsets)
    idx, off = torch.from_numpy(indices), torch.from_numpy(offsets)
    weight = as_tensor(table.data)
    if "torch" in peers:
        cell.contenders["torch"] = lambda: F.embedding_bag(idx, weight, off, mode="sum")
    if "fbgemm op" in peers or "fbgemm module" in peers:
        module, _ = fbgemm_module([table])
        idx32, off32 = idx.int(), torch.tensor([0, 1], dtype=torch.int32)
        if "fbgemm op" in peers:
            direct = fbgemm_direct(module)
            cell.contenders["fbgemm op"] = lambda: direct(idx32, off32)
        if "fbgemm module" in peers:
            cell.contenders["fbgemm module"] = lambda: module(idx32, off32)
    for name, run in cell.contenders.items():
        check(f"{cell.name} {name}", run(), expected, "float32")
    return cell


# --- timing -----------------------------------------------------------------------------------


def calls_per_round(run: Callable[[], object], budget_s: float = 0.02) -> int:
    """Calls that take about ``budget_s``: small calls are timed in batches."""
    start = time.perf_counter()
    run()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, min(10_000, int(budget_s / once)))


def time_cell(cell: Cell, rounds: int) -> None:
    names = list(cell.contenders)
    reps = {name: calls_per_round(cell.contenders[name]) for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            run, n = cell.contenders[name], reps[name]
            c0, w0 = time.thread_time(), time.perf_counter()
            for _ in range(n):
                run()
            cpu[name].append((time.thread_time() - c0) / n)
            wall[name].append((time.perf_counter() - w0) / n)
    for name in names:
        cell.cpu_us[name] = statistics.median(cpu[name]) * 1e6
        cell.wall_us[name] = statistics.median(wall[name]) * 1e6


def available_peers() -> set[str]:
    peers = {"torch"}
    if fbgemm_available():
        peers |= {"fbgemm op", "fbgemm module"}
    if torchrec_available():
        peers.add("torchrec")
    return peers


def grid_cells(big: bool) -> list[tuple[str, Callable[[set[str]], Cell]]]:
    rows = [1_000_000, 10_000_000] if big else [1_000_000]
    cells: list[tuple[str, Callable[[set[str]], Cell]]] = []
    for dtype in ("float32", "float16", "int8"):
        for r in rows:
            for dim in (16, 64, 128):
                cells.append(
                    (
                        f"{dtype} R={r:.0e} D={dim}",
                        lambda p, d=dtype, r=r, dim=dim: single_table_cell(d, r, dim, p),
                    )
                )
    for dtype in ("float32", "int8"):
        for mixed in (False, True):
            cells.append(
                (
                    f"serving {dtype} {'mixed' if mixed else 'one-hot'}",
                    lambda p, d=dtype, m=mixed: serving_cell(d, m, p),
                )
            )
    cells.append(("fixed cost", fixed_cost_cell))
    return cells


def run_grid(big: bool = False, rounds: int = 15, only: str | None = None) -> Iterator[Cell]:
    """Every cell built, checked and timed in turn (one table set in memory at a time)."""
    adrank.set_num_threads(1)
    torch.set_num_threads(1)
    peers = available_peers()
    for name, build in grid_cells(big):
        if only and only not in name:
            continue
        cell = build(peers)
        time_cell(cell, rounds)
        cell.contenders.clear()  # drop the tables before the next cell
        yield cell


HEADER = [
    "embedding lookup, one thread, median CPU us per call over interleaved rounds;",
    "ratio = peer / adrank (default call, fresh output): > 1 means adrank is faster",
    f"{'cell':<44}{'adrank':>9}{'out=':>8}" + "".join(f"{peer:>15}" for peer in PEERS) + "  pages",
]


def report_line(cell: Cell) -> str:
    """One row of the grid: medians and each peer's ratio to adrank's default call."""
    base = cell.cpu_us["adrank"]
    row = f"{cell.name:<44}{base:>9.1f}{cell.cpu_us['adrank out=']:>8.1f}"
    for peer in PEERS:
        if peer in cell.cpu_us:
            row += f"{cell.cpu_us[peer]:>8.1f} {cell.cpu_us[peer] / base:>5.2f}x"
        else:
            row += f"{'-':>15}"
    pages = ", ".join(f"{k} {v}" for k, v in cell.pages.items())
    return row + f"  {pages}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--big", action="store_true", help="add the 1e7-row cells (~7 GB)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--cells", default=None, help="only cells whose name contains this")
    args = parser.parse_args()
    print(f"adrank SIMD: {adrank.get_simd()}; peers: {sorted(available_peers())}")
    print("\n".join(HEADER))
    for cell in run_grid(args.big, args.rounds, args.cells):
        print(report_line(cell), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
