"""Exported embedding tables: one file per table and precision, and a reference lookup.

Glossary: ``R`` rows of a table; ``D`` its dim; ``B`` rows of a batch; ``E`` pooled width.

Files are :class:`adrank.EmbeddingTable` safetensors (64-byte aligned data, a checksum, and a
memory-mapped load that is O(1) in the table's size):

* ``<table>.fp32.safetensors``: float32 ``[R, D]``.
* ``<table>.int8.safetensors``: FBGEMM's 8-bit row-wise layout, ``[R, D + 8]`` bytes: per row
  ``D`` codes, then an fp32 scale and an fp32 bias (:func:`adrank.quantize_rowwise`).

:func:`pooled_embeddings_ref` is the plain numpy lookup that adrank's kernels and the split
pipeline are checked against.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from adrank.embedding_table import EmbeddingTable
from adrank.features.pipeline import FeatureBatch
from adrank.features.schema import FeatureSchema

__all__ = ["pooled_embeddings_ref"]


def pooled_embeddings_ref(
    tables: Mapping[str, EmbeddingTable | np.ndarray], schema: FeatureSchema, batch: FeatureBatch
) -> np.ndarray:
    """The sparse part of the ranker in numpy: pooled bags concatenated, float32 ``[B, E]``."""
    num_rows = len(batch)
    pooled = []
    for spec in schema.sparse_fields:
        feature = batch.sparse[spec.name]
        table = tables[spec.table]
        weights = table.to_float32() if isinstance(table, EmbeddingTable) else np.asarray(table)
        lengths = np.diff(feature.offsets)
        owner = np.repeat(np.arange(num_rows), lengths)
        sums = np.zeros((num_rows, weights.shape[1]), dtype=np.float32)
        np.add.at(sums, owner, weights[feature.values].astype(np.float32))
        if spec.pooling == "mean":
            sums /= np.maximum(lengths, 1).astype(np.float32)[:, None]
        pooled.append(sums)
    return np.concatenate(pooled, axis=1)
