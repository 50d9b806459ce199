"""Dynamic (collisionless) embedding tables for online learning.

Glossary: ``id`` any int64 feature id (a creative, a user); ``row`` the ``dim`` floats an
admitted id owns; ``now`` the caller's clock, any int that never decreases (seconds, step
numbers); ``admission`` the rule that gives a new id a row; ``expiry`` the rule that takes rows
of stale ids away; ``eviction`` what makes room when the memory limit is reached; ``snapshot``
every row on disk; ``delta`` the rows written (and ids removed) since the last snapshot or delta.

The rules (written once, in ``cpp/include/adrank/dynamic_table.hpp``):

- **Admission** (:meth:`DynamicEmbeddingTable.observe`): an id without a row is counted in a
  count-min sketch; it gets a row once its estimate reaches ``admit_threshold`` and then, when
  ``admit_probability < 1``, a draw from the table's seeded splitmix64 stream falls below it.
  :meth:`~DynamicEmbeddingTable.upsert` and deltas insert without admission.
- **Expiry** (:meth:`~DynamicEmbeddingTable.expire`): a row goes when ``now - last_seen >= ttl``
  (``ttl > 0``), or when it was observed fewer than ``rare_count`` times and
  ``now - last_seen >= rare_ttl`` (``rare_ttl > 0``).
- **Memory limit**: the table derives ``max_rows`` so that its worst case (sketch, rows, two
  indexes while one is rebuilt, the removed-id log) fits ``memory_limit_bytes``; memory is never
  above the limit. A new row when ``max_rows`` are live evicts the least recently written row
  (observe, upsert, apply_adagrad and deltas write; lookups do not).
- **Reads** (:meth:`~DynamicEmbeddingTable.lookup`,
  :meth:`~DynamicEmbeddingTable.embedding_bag`) take no lock and run while another thread
  writes: each row is read whole, as before or after a write (a seqlock per row; the index is
  replaced by RCU). Missing ids read as the default row (zeros unless set) and count in ``mean``.
- **Files**: :meth:`~DynamicEmbeddingTable.save` / :meth:`~DynamicEmbeddingTable.load` in
  O(rows); :meth:`~DynamicEmbeddingTable.export_delta` /
  :meth:`~DynamicEmbeddingTable.apply_delta` move only what changed, each row applied atomically
  while readers run. Written to ``PATH.tmp`` and renamed, so a watcher never sees half a file.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from adrank import _native
from adrank.ops._checks import as_int64_array, check_int, check_seed

__all__ = ["DeltaInfo", "DynamicEmbeddingTable", "DynamicTableConfig"]

_MODES: dict[str, _native.PoolingMode] = dict(_native.PoolingMode.__members__)
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class DynamicTableConfig:
    """A dynamic table's shape, memory limit, admission and expiry rules (module docstring)."""

    dim: int
    memory_limit_bytes: int
    admit_threshold: int = 1
    admit_probability: float = 1.0
    sketch_width: int = 1 << 16
    sketch_depth: int = 4
    ttl: int = 0
    rare_ttl: int = 0
    rare_count: int = 0
    init_scale: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("dim", self.dim, minimum=1, maximum=1 << 16)
        check_int("memory_limit_bytes", self.memory_limit_bytes, minimum=1, maximum=_INT64_MAX)
        check_int("admit_threshold", self.admit_threshold, minimum=1, maximum=2**32 - 1)
        probability = _check_float("admit_probability", self.admit_probability)
        if not 0.0 < probability <= 1.0:
            raise ValueError(f"admit_probability must be in (0, 1], got {probability}")
        width = check_int("sketch_width", self.sketch_width, minimum=1, maximum=1 << 30)
        if width & (width - 1):
            raise ValueError(f"sketch_width must be a power of two, got {width}")
        check_int("sketch_depth", self.sketch_depth, minimum=1, maximum=8)
        check_int("ttl", self.ttl, minimum=0, maximum=_INT64_MAX)
        check_int("rare_ttl", self.rare_ttl, minimum=0, maximum=_INT64_MAX)
        check_int("rare_count", self.rare_count, minimum=0, maximum=2**32 - 1)
        if _check_float("init_scale", self.init_scale) < 0.0:
            raise ValueError(f"init_scale must be >= 0, got {self.init_scale}")
        check_seed(self.seed)


class DeltaInfo(NamedTuple):
    """What :meth:`DynamicEmbeddingTable.export_delta` wrote: rows, and whether it is full (every
    live row; applying it first clears the target) because more ids were removed than the
    removed-id log holds."""

    rows: int
    full: bool


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite, got {result}")
    return result


def _ids(name: str, ids: Any) -> np.ndarray:
    return as_int64_array(name, ids)


def _matrix(name: str, values: Any, rows: int, dim: int) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    if array.shape != (rows, dim):
        raise ValueError(f"{name} must have shape ({rows}, {dim}), got {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _now(now: Any) -> int:
    return check_int("now", now, minimum=-(2**63), maximum=_INT64_MAX)


def _path(name: str, path: Any, *, must_exist: bool) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    text = os.fspath(path)
    if must_exist and not Path(text).is_file():
        raise FileNotFoundError(f"{name} {text} does not exist")
    return text


class DynamicEmbeddingTable:
    """An int64 id -> row table that grows, admits, expires and evicts (module docstring)."""

    def __init__(self, config: DynamicTableConfig) -> None:
        if not isinstance(config, DynamicTableConfig):
            raise TypeError(f"config must be a DynamicTableConfig, got {type(config).__name__}")
        self._native = _native.DynamicTable(**asdict(config))
        self.config = config

    @classmethod
    def _wrap(cls, native: _native.DynamicTable) -> DynamicEmbeddingTable:
        table = cls.__new__(cls)
        table._native = native
        table.config = DynamicTableConfig(**native.config)
        return table

    @classmethod
    def load(cls, path: str | os.PathLike[str], memory_limit_bytes: int | None = None):
        """A table from a snapshot, in O(rows). ``memory_limit_bytes`` defaults to the saved one;
        a smaller limit keeps the most recently written rows."""
        text = _path("path", path, must_exist=True)
        limit = (
            0
            if memory_limit_bytes is None
            else check_int("memory_limit_bytes", memory_limit_bytes, minimum=1)
        )
        return cls._wrap(_native.DynamicTable.load(text, limit))

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def max_rows(self) -> int:
        """Live rows the memory limit allows."""
        return self._native.max_rows

    @property
    def memory_bytes(self) -> int:
        """Bytes the table holds now (sketch, rows, index, logs)."""
        return self._native.memory_bytes

    @property
    def peak_memory_bytes(self) -> int:
        """The most bytes it ever held, rebuilds included: never above the limit."""
        return self._native.peak_memory_bytes

    def __len__(self) -> int:
        return len(self._native)

    def __contains__(self, id: object) -> bool:
        if isinstance(id, bool) or not isinstance(id, (int, np.integer)):
            return False
        return check_int("id", id, minimum=-(2**63), maximum=_INT64_MAX) in self._native

    def __repr__(self) -> str:
        return f"DynamicEmbeddingTable(rows={len(self)}, max_rows={self.max_rows}, dim={self.dim})"

    def stats(self) -> dict[str, int]:
        """Counters: rows, max_rows, index_capacity, admitted, rejected, evicted, expired,
        rebuilds."""
        return self._native.stats()

    def ids(self) -> np.ndarray:
        """Live ids, least recently written first."""
        return self._native.ids()

    def row_meta(self, id: int) -> tuple[int, int, float] | None:
        """(count, last_seen, adagrad state) of a live id, or None."""
        return self._native.row_meta(check_int("id", id, minimum=-(2**63), maximum=_INT64_MAX))

    # --- writers ---

    def observe(self, ids: Any, now: int) -> np.ndarray:
        """Count ids, admit new ones by the admission rule; True where the id has a row."""
        array = _ids("ids", ids)
        admitted = np.empty(array.shape[0], dtype=np.uint8)
        self._native.observe(array, _now(now), admitted)
        return admitted.view(np.bool_)

    def upsert(self, ids: Any, values: Any, now: int) -> None:
        """Set rows (inserting missing ids without admission)."""
        array = _ids("ids", ids)
        self._native.upsert(array, _matrix("values", values, array.shape[0], self.dim), _now(now))

    def remove(self, ids: Any) -> int:
        """Remove ids; returns how many had rows."""
        return self._native.remove(_ids("ids", ids))

    def expire(self, now: int) -> int:
        """Remove rows the expiry rule retires at ``now``; returns how many."""
        return self._native.expire(_now(now))

    def apply_adagrad(
        self, ids: Any, grads: Any, now: int, *, lr: float = 0.05, eps: float = 1e-8
    ) -> int:
        """Row-wise Adagrad on ids that have rows (others skipped; repeats apply in order):
        ``state += mean(g * g); row -= lr * g / (sqrt(state) + eps)``. Returns rows updated."""
        array = _ids("ids", ids)
        matrix = _matrix("grads", grads, array.shape[0], self.dim)
        learning_rate = _check_float("lr", lr)
        epsilon = _check_float("eps", eps)
        return self._native.apply_adagrad(array, matrix, learning_rate, epsilon, _now(now))

    def set_default_row(self, values: Any | None) -> None:
        """The row missing ids read as (None: zeros)."""
        if values is None:
            self._native.set_default_row(None)
            return
        array = np.asarray(values)
        if array.shape != (self.dim,):
            raise ValueError(f"values must have shape ({self.dim},), got {array.shape}")
        self._native.set_default_row(np.ascontiguousarray(array, dtype=np.float32))

    # --- readers (lock-free) ---

    def lookup(self, ids: Any, *, return_found: bool = False) -> Any:
        """Rows of ids, ``[N, dim]`` float32; missing ids get the default row. With
        ``return_found`` also a bool mask of the ids that had rows."""
        array = _ids("ids", ids)
        out = np.empty((array.shape[0], self.dim), dtype=np.float32)
        found = np.empty(array.shape[0], dtype=np.uint8)
        self._native.lookup(array, out, found)
        return (out, found.view(np.bool_)) if return_found else out

    def embedding_bag(
        self,
        indices: Any,
        offsets: Any,
        mode: str = "sum",
        *,
        per_sample_weights: Any | None = None,
        include_last_offset: bool = False,
        padding_idx: int | None = None,
    ) -> np.ndarray:
        """``torch.nn.functional.embedding_bag`` over this table (as :func:`adrank.ops.
        embedding_bag`): missing ids pool as the default row and count in ``mean``; ids equal to
        ``padding_idx`` (>= 0) are skipped."""
        index = _ids("indices", indices)
        offset = _ids("offsets", offsets)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        if not isinstance(include_last_offset, bool):
            raise TypeError(
                f"include_last_offset must be a bool, got {type(include_last_offset).__name__}"
            )
        padding = -1 if padding_idx is None else check_int("padding_idx", padding_idx, minimum=0)
        weights = None
        if per_sample_weights is not None:
            weights = np.ascontiguousarray(per_sample_weights, dtype=np.float32)
        num_bags = offset.shape[0] - (1 if include_last_offset else 0)
        out = np.empty((max(num_bags, 0), self.dim), dtype=np.float32)
        self._native.embedding_bag(
            index, offset, _MODES[mode], weights, include_last_offset, padding, out
        )
        return out

    # --- files ---

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a snapshot; the next delta starts from here."""
        self._native.save(_path("path", path, must_exist=False))

    def export_delta(self, path: str | os.PathLike[str]) -> DeltaInfo:
        """Write the rows written and the ids removed since the last snapshot or delta."""
        rows, full = self._native.export_delta(_path("path", path, must_exist=False))
        return DeltaInfo(rows, full)

    def apply_delta(self, path: str | os.PathLike[str]) -> int:
        """Apply a delta in place (each row atomically, readers keep running); returns rows
        written."""
        return self._native.apply_delta(_path("path", path, must_exist=True))
