"""The batch feature pipeline: raw columns to hashed ids and dense numbers, as the schema says.

Glossary: ``B`` rows; ``nnz`` ids of one sparse field over the batch; ``N`` dense features.

Every sparse field becomes a bag per row: ``values [nnz]`` (row ids of its table) and
``offsets [B + 1]`` (row ``b`` owns ``values[offsets[b]:offsets[b + 1]]``), the layout of
``torch.nn.functional.embedding_bag(..., include_last_offset=True)``. Ids come from adrank's
hashing kernels only, so training and serving cannot disagree:

* ``categorical``: ``hash_ids`` (integer columns, and float columns of whole numbers: ids that
  pandas stored as floats because some are missing) or ``hash_strings`` (text) with the
  table's slot, unless the field's ``value_type`` says which; a missing value lands in the
  slot's missing bucket.
* ``multi_valued``: the list's values hashed the same way; an empty or null list is an empty bag.
  A text column with the field's ``separator`` is split first (empty pieces are dropped).
* ``text``: the bag of the text's hashed word n-grams (:mod:`adrank.features.text`); a missing
  or empty text is an empty bag.
* ``numeric_bucketized``: ``bucketize`` (NaN and nulls get the last bucket).
* ``cross``: ``hash_cross`` of the sources' bucket ids; with a multi-valued source, of each
  of its values and the other sources' ids of the same row (a bag).

Dense fields are ``float32 [B, N]`` after their transform, missing values as ``fill``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from adrank import ops
from adrank.features.schema import FeatureSchema, FieldSpec
from adrank.features.text import text_bags
from adrank.ops._checks import is_arrow

__all__ = ["FeatureBatch", "FeaturePipeline", "SparseFeature", "concat_batches"]


@dataclasses.dataclass
class SparseFeature:
    """One sparse field over a batch: ``values [nnz]`` int64, ``offsets [B + 1]`` int64."""

    values: np.ndarray
    offsets: np.ndarray

    def take(self, rows: np.ndarray) -> SparseFeature:
        """The bags of ``rows`` (int64 [B']), in that order."""
        lengths = np.diff(self.offsets)[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = np.repeat(self.offsets[rows] - offsets[:-1], lengths)
        return SparseFeature(self.values[starts + np.arange(offsets[-1])], offsets)


@dataclasses.dataclass
class FeatureBatch:
    """Model inputs for ``B`` rows, plus the labels when the columns had them.

    ``sparse`` is keyed by field name in the schema's model order; ``labels`` by task.
    """

    sparse: dict[str, SparseFeature]
    dense: np.ndarray
    labels: dict[str, np.ndarray]

    def __len__(self) -> int:
        return self.dense.shape[0]

    def take(self, rows: Any) -> FeatureBatch:
        """A new batch of the given rows (an int array or a slice)."""
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows)
        rows = rows.astype(np.int64, copy=False)
        return FeatureBatch(
            {name: feature.take(rows) for name, feature in self.sparse.items()},
            self.dense[rows],
            {task: label[rows] for task, label in self.labels.items()},
        )


class FeaturePipeline:
    """Turns columns (a ``pyarrow.Table`` or a mapping of column name to array) into a batch.

    Multi-valued columns are pyarrow list arrays, or ``(values, offsets)`` pairs of numpy arrays
    in the layout of :class:`SparseFeature`.
    """

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema

    def __call__(self, columns: Any, *, with_labels: bool = True) -> FeatureBatch:
        table = _as_mapping(columns)
        ids: dict[str, SparseFeature] = {}
        num_rows = _num_rows(table)
        for spec in self.schema.fields:  # file order: a cross's sources come before it
            if spec.is_sparse:
                ids[spec.name] = self._sparse(spec, table, ids, num_rows)
        sparse = {spec.name: ids[spec.name] for spec in self.schema.sparse_fields}
        dense = np.empty((num_rows, self.schema.dense_dim), dtype=np.float32)
        for j, spec in enumerate(self.schema.dense_fields):
            dense[:, j] = _dense_column(spec, _column(table, spec))
        labels = {}
        if with_labels:
            for task, name in self.schema.labels.items():
                if name not in table:
                    raise KeyError(f"label column {name!r} (task {task}) is missing")
                labels[task] = _float_column(table[name]).astype(np.float32)
                if np.isnan(labels[task]).any():
                    raise ValueError(f"label column {name!r} has missing values")
        return FeatureBatch(sparse, dense, labels)

    def _sparse(
        self, spec: FieldSpec, table: Mapping[str, Any], ids: dict, num_rows: int
    ) -> SparseFeature:
        table_spec = self.schema.tables[spec.table]
        slot, buckets, seed = table_spec.slot, table_spec.num_buckets, self.schema.hash_seed
        offsets = np.arange(num_rows + 1, dtype=np.int64)
        if spec.kind == "cross":
            bag = next(
                (n for n in spec.sources if self.schema.field(n).kind == "multi_valued"), None
            )
            return _cross(spec.sources, bag, ids, (slot, buckets, seed), offsets)
        column = _column(table, spec)
        if spec.kind == "text":
            values, offsets = text_bags(column, spec.ngrams, slot, buckets, seed, spec.column)
            if len(offsets) != num_rows + 1:
                raise ValueError(f"column {spec.column!r} has {len(offsets) - 1} rows")
            return SparseFeature(values, offsets)
        if spec.kind == "numeric_bucketized":
            return SparseFeature(ops.bucketize(_float_column(column), spec.boundaries), offsets)
        if spec.kind == "multi_valued":
            values, offsets = _jagged(column, spec)
            column = values
        values = _hash(column, spec, slot, buckets, seed)
        if len(values) != offsets[-1]:
            raise ValueError(
                f"column {spec.column!r} has {len(values)} values, expected {offsets[-1]}"
            )
        return SparseFeature(values, offsets)


def _cross(
    sources: tuple[str, ...],
    bag: str | None,
    ids: dict[str, SparseFeature],
    hashing: tuple[int, int, int],
    offsets: np.ndarray,
) -> SparseFeature:
    """Single-valued sources cross row by row; with a bag, each of its values is crossed."""
    if bag is None:
        columns = [ids[name].values for name in sources]
    else:
        offsets = ids[bag].offsets
        lengths = np.diff(offsets)
        columns = [
            ids[name].values if name == bag else np.repeat(ids[name].values, lengths)
            for name in sources
        ]
    return SparseFeature(ops.hash_cross(columns, *hashing), offsets)


def _as_mapping(columns: Any) -> Mapping[str, Any]:
    if is_arrow(columns):
        return {name: columns.column(name) for name in columns.column_names}
    if isinstance(columns, Mapping):
        return columns
    raise TypeError(f"columns must be a pyarrow.Table or a mapping, got {type(columns).__name__}")


def _num_rows(table: Mapping[str, Any]) -> int:
    lengths = set()
    for column in table.values():
        if isinstance(column, tuple):
            lengths.add(len(column[1]) - 1)
        else:
            lengths.add(len(column))
    if not lengths:
        raise ValueError("columns must hold at least one column")
    if len(lengths) != 1:
        raise ValueError(f"columns must have equal lengths, got {sorted(lengths)}")
    return lengths.pop()


def _column(table: Mapping[str, Any], spec: FieldSpec) -> Any:
    if spec.column not in table:
        raise KeyError(f"column {spec.column!r} (field {spec.name!r}) is missing")
    return table[spec.column]


def _hash(column: Any, spec: FieldSpec, slot: int, buckets: int, seed: int) -> np.ndarray:
    column, value_type = _hashable(column, spec)
    if value_type == "int":
        return ops.hash_ids(column, slot, buckets, seed)
    return ops.hash_strings(column, slot, buckets, seed)


def _hashable(column: Any, spec: FieldSpec) -> tuple[Any, str]:
    """(column, "int" | "string"): the values as the field hashes them (its ``value_type``, or
    the column's own type, whole floats being ids)."""
    import pyarrow as pa

    if not is_arrow(column):
        array = np.asarray(column)
        if array.dtype.kind in "iu" and spec.value_type != "string":
            return array, "int"
        if array.dtype.kind in "iuf":
            column = pa.array(array)
        elif spec.value_type != "int":
            return (array if array.dtype.kind != "O" else list(column)), "string"
        else:
            column = pa.array(array.tolist())
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        if spec.value_type != "int":
            return column, "string"
        column = column.dictionary_decode()
    if pa.types.is_null(column.type):
        column = column.cast(pa.string())
    wants = spec.value_type
    if wants is None:
        wants = "int" if _is_number(column.type) else "string"
    if wants == "int" and pa.types.is_integer(column.type):
        return column, "int"
    if wants == "string" and (pa.types.is_string(column.type) or pa.types.is_binary(column.type)):
        return column, "string"
    if wants == "string" and pa.types.is_floating(column.type):
        column, _ = _to_ids(column, spec)  # 3.0 and "3" are one id in text
    if wants == "string":
        return column.cast(pa.string()), "string"
    return _to_ids(column, spec)


def _is_number(arrow_type: Any) -> bool:
    import pyarrow as pa

    return (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_boolean(arrow_type)
    )


def _to_ids(column: Any, spec: FieldSpec) -> tuple[Any, str]:
    from adrank.data.column_types import convert_column

    ids, bad = convert_column(column, "int")
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        found = column[row].as_py()
        what = "a float column" if _is_number(column.type) else "a text column"
        raise TypeError(
            f"column {spec.column!r} (field {spec.name!r}): expected integer ids, found {found!r} "
            f'at row {row} of {what}: ids must be whole numbers (use value_type = "string" '
            "or a numeric kind)"
        )
    return ids, "int"


def _jagged(column: Any, spec: FieldSpec) -> tuple[Any, np.ndarray]:
    if isinstance(column, tuple) and len(column) == 2:
        values, offsets = column
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise ValueError(f"offsets of column {spec.column!r} must start at 0 and not decrease")
        return values, offsets
    if not is_arrow(column) and spec.separator is not None:
        import pyarrow as pa

        column = pa.array(list(column), type=pa.string())
    if not is_arrow(column):
        raise TypeError(
            f"multi-valued column {spec.column!r} must be a pyarrow list array or a "
            f"(values, offsets) pair, got {type(column).__name__}"
        )
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if spec.separator is not None and (
        pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    ):
        return _split(column, spec.separator)
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        hint = "" if spec.separator else ' (or text with a separator = "..." in the schema)'
        raise TypeError(
            f"multi-valued column {spec.column!r} must be a list array{hint}, got {column.type}"
        )
    lengths = np.asarray(pc.list_value_length(column).fill_null(0), dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return column.flatten(), offsets


def _split(column: Any, separator: str) -> tuple[Any, np.ndarray]:
    """(values, offsets) of a text column split on ``separator``; empty pieces dropped."""
    import pyarrow.compute as pc

    lists = pc.split_pattern(column, separator)
    pieces = lists.flatten()
    parents = np.asarray(pc.list_parent_indices(lists), dtype=np.int64)
    keep = np.asarray(pc.not_equal(pieces, "").fill_null(False), dtype=bool)
    lengths = np.bincount(parents[keep], minlength=len(column))
    offsets = np.zeros(len(column) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pieces.filter(keep), offsets


def concat_batches(batches: list[FeatureBatch]) -> FeatureBatch:
    """One batch of the rows of ``batches``, in order (all from one schema)."""
    if not batches:
        raise ValueError("batches must not be empty")
    if len(batches) == 1:
        return batches[0]
    sparse = {}
    for name in batches[0].sparse:
        parts = [b.sparse[name] for b in batches]
        starts = np.cumsum([0] + [p.offsets[-1] for p in parts[:-1]])
        offsets = [parts[0].offsets[:1]] + [
            p.offsets[1:] + start for p, start in zip(parts, starts, strict=True)
        ]
        sparse[name] = SparseFeature(
            np.concatenate([p.values for p in parts]), np.concatenate(offsets)
        )
    dense = np.concatenate([b.dense for b in batches])
    labels = {task: np.concatenate([b.labels[task] for b in batches]) for task in batches[0].labels}
    return FeatureBatch(sparse, dense, labels)


def _float_column(column: Any) -> np.ndarray:
    if is_arrow(column):
        import pyarrow as pa

        return column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    array = np.asarray(column)
    if array.dtype.kind not in "iufb" and array.dtype != object:
        raise TypeError(f"a numeric column must hold numbers, got dtype {array.dtype}")
    return array.astype(np.float64)


def _dense_column(spec: FieldSpec, column: Any) -> np.ndarray:
    values = _float_column(column)
    if spec.transform == "log1p":
        values = np.log1p(np.maximum(values, 0.0))
    elif spec.transform == "signed_log1p":
        values = np.sign(values) * np.log1p(np.abs(values))
    return np.where(np.isnan(values), spec.fill, values)
