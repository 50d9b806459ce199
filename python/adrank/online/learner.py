"""A factorization machine trained online over one dynamic embedding table per field.

Glossary: ``field`` an int64 id column of the impressions (creative, user, placement); its
table gives each admitted id a row ``[w, v]`` of ``dim + 1`` floats: a weight ``w`` and a
factor ``v``; ``logit = bias + sum_f w_f + sum_{f<g} <v_f, v_g>``, ``p = sigmoid(logit)``.

One :meth:`FMLearner.step` per batch: observe the ids (admission), read the rows, compute the
logistic loss's gradients (``dL/dw_f = p - y``, ``dL/dv_f = (p - y)(sum_g v_g - v_f)``) and
apply row-wise Adagrad to each present row (ids not admitted read as zeros and get no update);
the bias takes a scalar Adagrad step on the batch mean gradient.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from adrank.dynamic_table import DynamicEmbeddingTable, DynamicTableConfig
from adrank.ops._checks import check_int


@dataclass(frozen=True)
class LearnerConfig:
    """The learner's fields, label column, table rules and optimizer."""

    fields: tuple[str, ...]
    label: str
    dim: int = 8
    memory_limit_bytes: int = 64 << 20  # per field
    admit_threshold: int = 1
    ttl: int = 0
    lr: float = 0.05
    init_scale: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.fields, tuple) or not self.fields:
            raise ValueError(f"fields must be a non-empty tuple of column names, got {self.fields}")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"fields must not repeat a name, got {self.fields}")
        if not isinstance(self.label, str) or not self.label or self.label in self.fields:
            raise ValueError(
                f"label must be a column name other than the fields, got {self.label!r}"
            )
        check_int("dim", self.dim, minimum=1, maximum=1024)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")

    def table_config(self, field_index: int) -> DynamicTableConfig:
        return DynamicTableConfig(
            dim=self.dim + 1,
            memory_limit_bytes=self.memory_limit_bytes,
            admit_threshold=self.admit_threshold,
            ttl=self.ttl,
            init_scale=self.init_scale,
            seed=self.seed + field_index,
            sketch_width=1 << 16,
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


def predict_rows(bias: float, rows: list[np.ndarray]) -> np.ndarray:
    """p for rows [B, dim + 1] per field (the model's one formula, shared with serving)."""
    weights = sum(r[:, 0] for r in rows)
    factors = [r[:, 1:] for r in rows]
    total = sum(factors)
    pairs = 0.5 * (np.sum(total * total, axis=1) - sum(np.sum(v * v, axis=1) for v in factors))
    return _sigmoid(bias + weights + pairs)


class FMLearner:
    """Trains online; ``tables[field]`` are the embeddings a follower mirrors."""

    def __init__(self, config: LearnerConfig) -> None:
        self.config = config
        self.tables = {
            f: DynamicEmbeddingTable(config.table_config(i)) for i, f in enumerate(config.fields)
        }
        self.bias = 0.0
        self._bias_state = 0.0
        self.examples = 0

    def _columns(self, columns: Mapping[str, np.ndarray]) -> tuple[list[np.ndarray], int]:
        ids = []
        for f in self.config.fields:
            if f not in columns:
                raise KeyError(f"columns has no field {f!r}")
            ids.append(np.ascontiguousarray(columns[f], dtype=np.int64))
        sizes = {len(a) for a in ids}
        if len(sizes) != 1:
            raise ValueError(f"columns must have one length, got {sorted(sizes)}")
        return ids, sizes.pop()

    def expire(self, now: int) -> int:
        """Drop rows the tables' expiry rule retires at ``now``; returns how many."""
        return sum(table.expire(now) for table in self.tables.values())

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        ids, _ = self._columns(columns)
        rows = [self.tables[f].lookup(i) for f, i in zip(self.config.fields, ids, strict=True)]
        return predict_rows(self.bias, rows)

    def step(self, columns: Mapping[str, np.ndarray], labels: np.ndarray, now: int) -> float:
        """One update on a batch; returns the batch's log loss before the update."""
        ids, n = self._columns(columns)
        y = np.asarray(labels, dtype=np.float64)
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {y.shape}")
        fields = self.config.fields
        for f, i in zip(fields, ids, strict=True):
            self.tables[f].observe(i, now)
        rows = [self.tables[f].lookup(i) for f, i in zip(fields, ids, strict=True)]
        p = predict_rows(self.bias, rows)
        error = (p - y).astype(np.float32)
        total = sum(r[:, 1:] for r in rows)
        for f, i, r in zip(fields, ids, rows, strict=True):
            grads = np.empty_like(r)
            grads[:, 0] = error
            grads[:, 1:] = error[:, None] * (total - r[:, 1:])
            self.tables[f].apply_adagrad(i, grads, now, lr=self.config.lr)
        g = float(np.mean(error))
        self._bias_state += g * g
        self.bias -= self.config.lr * g / (math.sqrt(self._bias_state) + 1e-8)
        self.examples += n
        eps = 1e-7
        return float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
