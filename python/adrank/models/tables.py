"""Exported embedding tables: files, int8 row-wise quantization, and a reference lookup.

Glossary: ``R`` rows of a table; ``D`` its dim; ``B`` rows of a batch; ``E`` pooled width.

Files (one pair per table, both ``.npy`` so they memory-map with ``numpy.load(mmap_mode="r")``;
numpy pads the header so the data starts 64-byte aligned):

* ``<table>.fp32.npy``: float32 ``[R, D]``.
* ``<table>.int8.npy``: uint8 ``[R, D + 8]``, FBGEMM's fused 8-bit row-wise layout: per row
  ``D`` codes, then the fp32 ``scale`` and fp32 ``bias`` as 8 little-endian bytes;
  ``value = code * scale + bias`` with ``bias = min(row)``, ``scale = (max(row) - min(row)) /
  255``.

:func:`pooled_embeddings_ref` is the plain numpy lookup the split pipeline is checked with
until serving switches to adrank's own kernel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adrank.features.pipeline import FeatureBatch
from adrank.features.schema import FeatureSchema

__all__ = [
    "PRECISIONS",
    "dequantize_int8_rowwise",
    "load_tables",
    "pooled_embeddings_ref",
    "quantize_int8_rowwise",
    "table_path",
]

PRECISIONS = ("fp32", "int8")


def table_path(directory: str | Path, table: str, precision: str) -> Path:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return Path(directory) / f"{table}.{precision}.npy"


def quantize_int8_rowwise(table: np.ndarray) -> np.ndarray:
    """float32 ``[R, D]`` -> fused uint8 ``[R, D + 8]`` (codes, fp32 scale, fp32 bias)."""
    table = np.asarray(table, dtype=np.float32)
    if table.ndim != 2 or table.shape[1] < 1:
        raise ValueError(f"table must be 2-D with at least one column, got shape {table.shape}")
    if not np.isfinite(table).all():
        raise ValueError("table must hold finite numbers")
    rows, dim = table.shape
    low, high = table.min(axis=1), table.max(axis=1)
    scale = ((high - low) / np.float32(255.0)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1.0))
    codes = np.rint((table - low[:, None]) / safe[:, None])
    fused = np.empty((rows, dim + 8), dtype=np.uint8)
    fused[:, :dim] = np.clip(codes, 0, 255).astype(np.uint8)
    scale_bias = np.stack([scale, low.astype(np.float32)], axis=1).astype("<f4")
    fused[:, dim:] = scale_bias.view(np.uint8).reshape(rows, 8)
    return fused


def dequantize_int8_rowwise(fused: np.ndarray) -> np.ndarray:
    """Fused uint8 ``[R, D + 8]`` -> float32 ``[R, D]``: ``code * scale + bias`` per row."""
    fused = np.asarray(fused)
    if fused.dtype != np.uint8 or fused.ndim != 2 or fused.shape[1] < 8:
        raise ValueError(f"fused must be uint8 [R, D + 8], got {fused.dtype} {fused.shape}")
    dim = fused.shape[1] - 8
    scale_bias = np.ascontiguousarray(fused[:, dim:]).view("<f4").astype(np.float32)
    return fused[:, :dim].astype(np.float32) * scale_bias[:, :1] + scale_bias[:, 1:]


def load_tables(
    directory: str | Path, schema: FeatureSchema, precision: str = "fp32", *, mmap: bool = True
) -> dict[str, np.ndarray]:
    """The schema's tables from ``directory`` as float32 ``[R, D]`` arrays.

    fp32 tables are memory-mapped (read-only) when ``mmap``; int8 tables are dequantized.
    """
    tables = {}
    for name, spec in schema.tables.items():
        path = table_path(directory, name, precision)
        if not path.exists():
            raise FileNotFoundError(f"table {name!r} has no {precision} file at {str(path)!r}")
        array = np.load(path, mmap_mode="r" if mmap else None)
        if precision == "int8":
            array = dequantize_int8_rowwise(array)
        if array.shape != (spec.num_buckets, spec.dim):
            raise ValueError(
                f"table {name!r}: expected shape {(spec.num_buckets, spec.dim)}, got {array.shape}"
            )
        tables[name] = array
    return tables


def pooled_embeddings_ref(
    tables: dict[str, np.ndarray], schema: FeatureSchema, batch: FeatureBatch
) -> np.ndarray:
    """The sparse part of the ranker in numpy: pooled bags concatenated, float32 ``[B, E]``."""
    num_rows = len(batch)
    pooled = []
    for spec in schema.sparse_fields:
        feature = batch.sparse[spec.name]
        table = tables[spec.table]
        lengths = np.diff(feature.offsets)
        owner = np.repeat(np.arange(num_rows), lengths)
        sums = np.zeros((num_rows, table.shape[1]), dtype=np.float32)
        np.add.at(sums, owner, np.asarray(table[feature.values], dtype=np.float32))
        if spec.pooling == "mean":
            sums /= np.maximum(lengths, 1).astype(np.float32)[:, None]
        pooled.append(sums)
    return np.concatenate(pooled, axis=1)
