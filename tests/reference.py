"""Plain references for the kernels' tests: slow, obvious code written from the documented
contracts (the module docstrings of adrank.ops and the C++ headers), never from the kernels.

Glossary: ``N`` candidates (or ids), ``K`` slots, ``B`` requests or bags, ``D`` a table's dim.

Test modules import it as ``from reference import ...``: pytest runs with rootdir the
repository and testpaths ``tests``, in its default ("prepend") import mode, and tests/ has no
``__init__.py``, so pytest puts tests/ first on ``sys.path`` before it imports a test module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xxhash

from adrank import EmbeddingTable

MASK64 = 2**64 - 1

# --- feature hashing (adrank/ops/hashing.py, cpp/include/adrank/hashing.hpp) ---------------


def slot_seed_ref(seed: int, slot: int) -> int:
    return (seed + slot * 0x9E3779B97F4A7C15) & MASK64


def bucket_ref(h: int, num_buckets: int) -> int:
    return (h * num_buckets) >> 64


def fmix64_ref(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & MASK64
    return k ^ (k >> 33)


def hash_strings_ref(values, slot: int, num_buckets: int, seed: int = 0) -> np.ndarray:
    s = slot_seed_ref(seed, slot)
    out = []
    for v in values:
        if v is None:
            h = fmix64_ref(s)
        else:
            data = v.encode("utf-8") if isinstance(v, str) else v
            h = xxhash.xxh3_64_intdigest(data, s)
        out.append(bucket_ref(h, num_buckets))
    return np.array(out, dtype=np.int64)


def hash_ids_ref(ids, slot: int, num_buckets: int, seed: int = 0) -> np.ndarray:
    s = slot_seed_ref(seed, slot)
    return np.array(
        [
            bucket_ref(
                fmix64_ref(s)
                if i is None
                else xxhash.xxh3_64_intdigest(int(i).to_bytes(8, "little", signed=True), s),
                num_buckets,
            )
            for i in ids
        ],
        dtype=np.int64,
    )


# --- embedding lookup (adrank/ops/embedding.py, cpp/include/adrank/embedding.hpp) ----------


def embedding_bag_ref(rows, indices, offsets, mode, weights=None, padding_idx=None):
    """Plain per-bag loops over float64 rows; offsets has one entry per bag."""
    bounds = [*list(offsets), len(indices)]
    out = np.zeros((len(offsets), rows.shape[1]))
    for b in range(len(offsets)):
        picked = [p for p in range(bounds[b], bounds[b + 1]) if indices[p] != padding_idx]
        if not picked:
            continue
        vectors = rows[indices[picked]].astype(np.float64)
        if mode == "max":
            out[b] = vectors.max(axis=0)
        elif mode == "mean":
            out[b] = vectors.mean(axis=0)
        else:
            scale = 1.0 if weights is None else weights[picked][:, None].astype(np.float64)
            out[b] = (vectors * scale).sum(axis=0)
    return out


# --- top-k selection (adrank/ops/topk.py, cpp/include/adrank/topk.hpp) ---------------------

# Few distinct values (ties everywhere), NaN, infinities and both zeros.
SPECIAL = [0.0, -0.0, 1.0, -1.0, 2.5, np.inf, -np.inf, np.nan]


def ranked_ref(scores: np.ndarray) -> np.ndarray:
    """Candidate positions in rank order (score descending, index ascending), NaN removed."""
    order = np.argsort(-scores, kind="stable")
    return order[~np.isnan(scores[order])]


def pad_ref(scores: np.ndarray, chosen: list[int] | np.ndarray, k: int) -> tuple:
    values = np.full(k, -np.inf, dtype=np.float32)
    indices = np.full(k, -1, dtype=np.int64)
    chosen = np.asarray(chosen, dtype=np.int64)
    values[: len(chosen)] = scores[chosen]
    indices[: len(chosen)] = chosen
    return values, indices


def topk_ref(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    return pad_ref(scores, ranked_ref(scores)[:k], k)


def select_ref(
    scores: np.ndarray,
    k: int,
    groups: list[tuple[np.ndarray, int]] = (),
    eligible: np.ndarray | None = None,
    min_score: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    counts: list[dict[int, int]] = [{} for _ in groups]
    chosen: list[int] = []
    for i in ranked_ref(scores):
        if len(chosen) == k:
            break
        if eligible is not None and not eligible[i]:
            continue
        if min_score is not None and not float(scores[i]) >= min_score:
            continue
        labels = [int(ids[i]) for ids, _ in groups]
        if any(
            c.get(label, 0) >= cap
            for c, label, (_, cap) in zip(counts, labels, groups, strict=True)
        ):
            continue
        for c, label in zip(counts, labels, strict=True):
            c[label] = c.get(label, 0) + 1
        chosen.append(int(i))
    return pad_ref(scores, chosen, k)


def rows_ref(scores: np.ndarray, offsets: np.ndarray | None) -> list[slice]:
    """The slice of each request in a dense [B, N] (flattened) or jagged layout."""
    if offsets is None:
        b, n = scores.shape
        return [slice(r * n, (r + 1) * n) for r in range(b)]
    return [slice(int(offsets[r]), int(offsets[r + 1])) for r in range(len(offsets) - 1)]


def check_same(got: tuple, want: tuple) -> None:
    """Two (values, indices) answers are equal, bit for bit, with the documented dtypes."""
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
    assert got[0].dtype == np.float32
    assert got[1].dtype == np.int64


# --- the split pipeline (adrank/models, adrank/orchestrator) ---------------------------------


def pooled_embeddings_ref(tables: Mapping[str, Any], schema: Any, batch: Any) -> np.ndarray:
    """The sparse part of the ranker in numpy (``batch``: a FeatureBatch): every sparse field's
    bags pooled over its table, concatenated in model order, float32 ``[B, E]``."""
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
