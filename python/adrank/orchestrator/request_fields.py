"""A request's user and context fields, encoded as the training pipeline encodes them.

Glossary: ``F_r`` request-side sparse fields (user and context); ``N_r`` request-side dense
fields.

The encoding is the training pipeline's (:class:`adrank.features.FeaturePipeline` over the
schema's request-side fields), so training and serving cannot disagree. Values seen before are
encoded from a memo of the pipeline's own earlier answers (a dictionary look-up per value); a
value not seen yet goes through its field's one-field pipeline and is remembered. A request
whose request-side cross misses the memo runs the whole request-side pipeline once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from adrank.features.pipeline import FeatureBatch, FeaturePipeline
from adrank.features.schema import FeatureSchema, FieldSpec

MEMO_CAPACITY = 1 << 20  # remembered request values (ids of a few MB)


@dataclasses.dataclass(frozen=True)
class RequestFeatures:
    """One request's user- and context-side encodings (one row)."""

    values: np.ndarray  # int64, key-major ids of the F_r request fields
    lengths: np.ndarray  # int64 [F_r]
    ids: dict[str, np.ndarray]  # field name -> its bucket ids (one, or a bag's)
    dense: np.ndarray  # float32 [N_r]


class RequestFieldEncoder:
    """Encodes the request-side ``fields`` and ``dense_fields`` of ``schema``, memoized."""

    def __init__(
        self,
        schema: FeatureSchema,
        fields: Sequence[FieldSpec],
        dense_fields: Sequence[FieldSpec],
    ) -> None:
        self.schema = schema
        self.fields = tuple(fields)
        self.dense_fields = tuple(dense_fields)
        self._pipeline = FeaturePipeline(subschema(schema, [*self.fields, *self.dense_fields]))
        self._field_pipelines: dict[str, FeaturePipeline] = {}
        self._memo: dict[tuple, Any] = {}

    def encode(self, user: Mapping[str, Any], context: Mapping[str, Any]) -> RequestFeatures:
        """Encodes one request's values; a field left out is missing."""
        row = {**user, **context}
        if len(self._memo) > MEMO_CAPACITY:
            self._memo = {}  # bounded: start over rather than track recency on the hot path
        try:
            known = self._from_memo(row)
        except TypeError:  # an unhashable value: the pipeline names the field and the problem
            known = None
        if known is not None:
            return known
        columns = _one_row_columns([*self.fields, *self.dense_fields], row)
        batch = self._pipeline(columns, with_labels=False)
        encoded = self._features({f.name: batch.sparse[f.name].values for f in self.fields}, batch)
        self._remember(row, encoded)
        return encoded

    def _features(
        self, ids: Mapping[str, np.ndarray], dense: FeatureBatch | np.ndarray
    ) -> RequestFeatures:
        values = [ids[f.name] for f in self.fields]
        row = dense.dense[0] if isinstance(dense, FeatureBatch) else dense
        return RequestFeatures(
            values=np.concatenate(values) if values else np.empty(0, np.int64),
            lengths=np.array([len(v) for v in values], dtype=np.int64),
            ids={f.name: ids[f.name] for f in self.fields},
            dense=np.ascontiguousarray(row, dtype=np.float32).reshape(-1),
        )

    def _from_memo(self, row: Mapping[str, Any]) -> RequestFeatures | None:
        """The request from the memo; a field with a new value is encoded alone and learnt.

        None when a request-side cross misses (the whole pipeline then runs).
        """
        memo = self._memo
        ids: dict[str, np.ndarray] = {}
        for spec in self.fields:
            if spec.kind == "cross":
                found = memo.get(_cross_key(spec, ids))
                if found is None:
                    return None
                ids[spec.name] = found
                continue
            value = row.get(spec.column)
            keys = _value_keys(spec, value)
            hits = [memo.get(key) for key in keys]
            if None in hits:
                ids[spec.name] = self._encode_alone(spec, value).sparse[spec.name].values
                if len(ids[spec.name]) == len(keys):
                    memo.update(zip(keys, ids[spec.name].tolist(), strict=True))
            else:
                ids[spec.name] = np.array(hits, dtype=np.int64)
        dense = np.empty(len(self.dense_fields), dtype=np.float32)
        for j, spec in enumerate(self.dense_fields):
            value = row.get(spec.column)
            key = (spec.name, type(value), value)
            number = memo.get(key)
            if number is None:
                number = memo[key] = float(self._encode_alone(spec, value).dense[0, 0])
            dense[j] = number
        return self._features(ids, dense)

    def _encode_alone(self, spec: FieldSpec, value: Any) -> FeatureBatch:
        """One field of one request through its own one-field pipeline."""
        pipeline = self._field_pipelines.get(spec.name)
        if pipeline is None:
            pipeline = self._field_pipelines[spec.name] = FeaturePipeline(
                subschema(self.schema, [spec])
            )
        return pipeline(_one_row_columns([spec], {spec.column: value}), with_labels=False)

    def _remember(self, row: Mapping[str, Any], encoded: RequestFeatures) -> None:
        memo = self._memo
        try:
            for spec in self.fields:
                ids = encoded.ids[spec.name]
                if spec.kind == "cross":
                    memo[_cross_key(spec, encoded.ids)] = ids
                    continue
                keys = _value_keys(spec, row.get(spec.column))
                if len(keys) == len(ids):
                    memo.update(zip(keys, ids.tolist(), strict=True))
            for j, spec in enumerate(self.dense_fields):
                value = row.get(spec.column)
                memo[(spec.name, type(value), value)] = float(encoded.dense[j])
        except TypeError:
            pass  # an unhashable value that the pipeline accepted: not remembered


def subschema(schema: FeatureSchema, fields: Sequence[FieldSpec]) -> FeatureSchema:
    """``schema`` reduced to ``fields`` (in file order, so a cross's sources come first)."""
    names = {f.name for f in fields}
    kept = tuple(f for f in schema.fields if f.name in names)
    return dataclasses.replace(schema, fields=kept, labels={})


def _value_keys(spec: FieldSpec, value: Any) -> list[tuple]:
    """The memo's keys of one field's value: one per id (the type keeps 1 and True apart)."""
    if spec.kind == "multi_valued":
        items = [] if value is None else list(value)
        return [(spec.name, type(item), item) for item in items]
    return [(spec.name, type(value), value)]


def _cross_key(spec: FieldSpec, ids: Mapping[str, np.ndarray]) -> tuple:
    return (spec.name, *(tuple(ids[s].tolist()) for s in spec.sources))


def _one_row_columns(fields: Sequence[FieldSpec], row: Mapping[str, Any]) -> dict[str, Any]:
    """One-row columns of ``fields`` for the pipeline; a field left out of ``row`` is missing."""
    columns: dict[str, Any] = {}
    for spec in fields:
        if spec.kind == "cross":
            continue
        value = row.get(spec.column)
        if spec.kind == "multi_valued":
            items = [] if value is None else list(value)
            columns[spec.column] = (_small_column(items), np.array([0, len(items)]))
        elif spec.kind in ("numeric_dense", "numeric_bucketized"):
            columns[spec.column] = np.array([np.nan if value is None else value], dtype=np.float64)
        else:
            columns[spec.column] = _small_column([value])
    if not columns:
        columns["_"] = np.zeros(1)  # no request-side field: still one row
    return columns


def _small_column(values: list[Any]) -> Any:
    """A small column the pipeline's hashing accepts: integers stay integers."""
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    return np.array(values, dtype=object) if values else np.array([], dtype=np.int64)
