"""Serving-time features: the training pipeline's encoding, split by who varies per request.

Glossary: ``R`` catalog creatives; ``C`` candidates of one request; ``E`` the model's embedding
width; ``N`` its dense width; ``F_r`` request-side sparse fields (user, context), ``F_c``
candidate-side sparse fields (creative fields and crosses that involve one).

The encoding is the training pipeline's (:class:`adrank.features.pipeline.FeaturePipeline`),
so training and serving cannot disagree. What changes is when each part runs:

* creative fields depend on the creative only: encoded once per catalog snapshot, for all
  ``R`` creatives, and gathered per request;
* user and context fields are encoded once per request (one row) and broadcast;
* a cross of request fields with creative fields depends on the request and on the
  creative's values of its creative sources only. Creatives that agree on those values form
  one of the cross's *groups* (found once per snapshot: ``U_x`` groups, far fewer than ``R`` in
  ads catalogs: 30 categories, 4 formats, ...). Per request each cross is hashed and pooled
  for one representative creative per group, and every candidate takes its group's row.

The model's inputs keep the training order: sparse fields by side (user, context, creative)
so the request block of ``EMBEDDINGS`` comes first and the candidate block after it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from adrank import ops
from adrank.features.pipeline import FeaturePipeline
from adrank.features.schema import FeatureSchema, FieldSpec

REQUEST_SIDES = ("user", "context")
MEMO_CAPACITY = 1 << 20  # remembered request values (ids of a few MB)


@dataclasses.dataclass(frozen=True)
class CreativeFeatures:
    """Creative-side encodings of one catalog snapshot (rows in catalog order)."""

    ids: np.ndarray  # int64 [R, F_c-creative]: one bucket id per single-valued creative field
    dense: np.ndarray  # float32 [R, N_creative]
    cross_group: np.ndarray  # int64 [R, F_x]: the creative's group in each cross, in [0, U_x)
    group_rows: tuple[np.ndarray, ...]  # F_x arrays int64 [U_x]: one catalog row per group


@dataclasses.dataclass(frozen=True)
class RequestFeatures:
    """One request's user- and context-side encodings (one row)."""

    values: np.ndarray  # int64, key-major ids of the F_r request fields
    lengths: np.ndarray  # int64 [F_r]
    single_ids: dict[str, int]  # bucket id of each single-valued request field (for crosses)
    bags: dict[str, np.ndarray]  # bucket ids of each multi-valued request field (for crosses)
    dense: np.ndarray  # float32 [1, N_request]


class ServingFeatures:
    """Splits a schema into request and candidate parts and encodes each where it belongs."""

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        sparse = schema.sparse_fields
        self.request_fields = tuple(f for f in sparse if f.side in REQUEST_SIDES)
        self.candidate_fields = tuple(f for f in sparse if f.side not in REQUEST_SIDES)
        self.creative_fields = tuple(f for f in self.candidate_fields if f.kind != "cross")
        self.cross_fields = tuple(f for f in self.candidate_fields if f.kind == "cross")
        for spec in self.creative_fields:
            if spec.kind == "multi_valued":
                raise ValueError(
                    f"field {spec.name!r}: multi-valued creative fields are not served yet"
                )
        dense = schema.dense_fields
        self.request_dense = tuple(f for f in dense if f.side in REQUEST_SIDES)
        self.creative_dense = tuple(f for f in dense if f.side not in REQUEST_SIDES)
        names = {f.name for f in (*self.request_fields, *self.creative_fields)}
        for spec in self.cross_fields:
            unknown = [s for s in spec.sources if s not in names]
            if unknown:
                raise ValueError(f"cross {spec.name!r} has sources that are not served: {unknown}")
        self._request_pipeline = FeaturePipeline(
            _subschema(schema, [*self.request_fields, *self.request_dense])
        )
        self._creative_pipeline = FeaturePipeline(
            _subschema(schema, [*self.creative_fields, *self.creative_dense])
        )
        self._creative_column = {f.name: j for j, f in enumerate(self.creative_fields)}
        # Request fields with several ids (a bag): a cross with one crosses each of its ids.
        self.bag_fields = {f.name for f in self.request_fields if f.kind == "multi_valued"}
        self._memo: dict[tuple, Any] = {}  # request value -> its id (see encode_request)
        self._field_pipelines: dict[str, FeaturePipeline] = {}
        self.request_dim = sum(schema.tables[f.table].dim for f in self.request_fields)
        self.embedding_dim = schema.embedding_dim
        self.dense_dim = schema.dense_dim
        # Where each dense column comes from: the request's block or the creative's.
        self._dense_from_request = np.array([f.side in REQUEST_SIDES for f in dense], dtype=bool)

    # --- per catalog snapshot --------------------------------------------------------------

    def encode_catalog(self, table: Any) -> CreativeFeatures:
        """Encodes the creative fields of every catalog row (a pyarrow.Table) once."""
        batch = self._creative_pipeline(table, with_labels=False)
        ids = np.empty((len(batch), len(self.creative_fields)), dtype=np.int64)
        for j, spec in enumerate(self.creative_fields):
            ids[:, j] = batch.sparse[spec.name].values
        groups, group_rows = np.zeros((len(ids), len(self.cross_fields)), dtype=np.int64), []
        for x, spec in enumerate(self.cross_fields):
            crossed = [self._creative_column[s] for s in spec.sources if s in self._creative_column]
            if crossed and len(ids):
                _, first, inverse = np.unique(
                    ids[:, crossed], axis=0, return_index=True, return_inverse=True
                )
                groups[:, x] = inverse.reshape(-1)
            else:  # crosses no creative field: one group
                first = np.zeros(min(len(ids), 1), dtype=np.int64)
            group_rows.append(first.astype(np.int64))
        return CreativeFeatures(
            ids=ids,
            dense=np.ascontiguousarray(batch.dense),
            cross_group=groups,
            group_rows=tuple(group_rows),
        )

    # --- per request ----------------------------------------------------------------------

    def encode_request(
        self, user: Mapping[str, Any], context: Mapping[str, Any]
    ) -> RequestFeatures:
        """Encodes the request's user and context fields; a field left out is missing.

        Values seen before are encoded from a memo of the pipeline's own earlier answers (a
        dictionary look-up per value instead of a pipeline run); a new value is encoded by its
        field's own one-field pipeline and remembered.
        """
        row = {**user, **context}
        if len(self._memo) > MEMO_CAPACITY:
            self._memo = {}  # bounded: start over rather than track recency on the hot path
        try:
            known = self._from_memo(row)
        except TypeError:  # an unhashable value: the pipeline names the field and the problem
            known = None
        if known is not None:
            return known
        encoded = self._encode_request(row)
        self._remember(row, encoded)
        return encoded

    def _encode_request(self, row: Mapping[str, Any]) -> RequestFeatures:
        columns = _request_columns([*self.request_fields, *self.request_dense], row)
        batch = self._request_pipeline(columns, with_labels=False)
        field_ids = {f.name: batch.sparse[f.name].values for f in self.request_fields}
        return self._request_features(field_ids, batch.dense)

    def _request_features(
        self, field_ids: Mapping[str, np.ndarray], dense: np.ndarray
    ) -> RequestFeatures:
        values = [field_ids[f.name] for f in self.request_fields]
        singles, bags = {}, {}
        for spec in self.request_fields:
            if spec.kind == "multi_valued":
                bags[spec.name] = field_ids[spec.name]
            else:
                singles[spec.name] = int(field_ids[spec.name][0])
        return RequestFeatures(
            values=np.concatenate(values) if values else np.empty(0, np.int64),
            lengths=np.array([len(v) for v in values], dtype=np.int64),
            single_ids=singles,
            bags=bags,
            dense=np.ascontiguousarray(dense, dtype=np.float32).reshape(1, -1),
        )

    def _memo_keys(self, spec: FieldSpec, value: Any) -> list[tuple]:
        """The memo's keys of one field's value: one per id (the type keeps 1 and True apart)."""
        if spec.kind == "multi_valued":
            items = [] if value is None else list(value)
            return [(spec.name, type(item), item) for item in items]
        return [(spec.name, type(value), value)]

    def _from_memo(self, row: Mapping[str, Any]) -> RequestFeatures | None:
        """The request from the memo; a field with a new value is encoded alone and learnt.

        None when a request-side cross misses (the whole pipeline then runs).
        """
        memo = self._memo
        field_ids: dict[str, np.ndarray] = {}
        for spec in self.request_fields:
            if spec.kind == "cross":
                key = (spec.name, *(tuple(field_ids[s].tolist()) for s in spec.sources))
                ids = memo.get(key)
                if ids is None:
                    return None
                field_ids[spec.name] = ids
                continue
            value = row.get(spec.column)
            keys = self._memo_keys(spec, value)
            found = [memo.get(key) for key in keys]
            if None in found:
                ids = self._encode_alone(spec, value).sparse[spec.name].values
                if len(ids) == len(keys):
                    memo.update(zip(keys, ids.tolist(), strict=True))
                field_ids[spec.name] = ids
            else:
                field_ids[spec.name] = np.array(found, dtype=np.int64)
        dense = []
        for spec in self.request_dense:
            value = row.get(spec.column)
            key = (spec.name, type(value), value)
            number = memo.get(key)
            if number is None:
                number = memo[key] = float(self._encode_alone(spec, value).dense[0, 0])
            dense.append(number)
        return self._request_features(field_ids, np.array(dense, dtype=np.float32))

    def _encode_alone(self, spec: FieldSpec, value: Any) -> Any:
        """One field of one request through its own one-field pipeline (a FeatureBatch)."""
        pipeline = self._field_pipelines.get(spec.name)
        if pipeline is None:
            pipeline = FeaturePipeline(_subschema(self.schema, [spec]))
            self._field_pipelines[spec.name] = pipeline
        return pipeline(_request_columns([spec], {spec.column: value}), with_labels=False)

    def _remember(self, row: Mapping[str, Any], encoded: RequestFeatures) -> None:
        memo = self._memo
        offsets = np.concatenate([[0], np.cumsum(encoded.lengths)])
        field_ids = {}
        try:
            for j, spec in enumerate(self.request_fields):
                ids = encoded.values[offsets[j] : offsets[j + 1]]
                field_ids[spec.name] = ids
                if spec.kind == "cross":
                    key = (spec.name, *(tuple(field_ids[s].tolist()) for s in spec.sources))
                    memo[key] = ids
                    continue
                keys = self._memo_keys(spec, row.get(spec.column))
                if len(keys) == len(ids):
                    memo.update(zip(keys, ids.tolist(), strict=True))
            for j, spec in enumerate(self.request_dense):
                value = row.get(spec.column)
                memo[(spec.name, type(value), value)] = float(encoded.dense[0, j])
        except TypeError:
            pass  # an unhashable value that the pipeline accepted: not remembered

    def cross_values(
        self,
        spec: FieldSpec,
        creative: CreativeFeatures,
        rows: np.ndarray,
        request_ids: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, int]:
        """The bucket ids of cross ``spec`` for catalog ``rows``: ``(values, ids per row)``.

        ``request_ids`` gives the ids of each request-side source (one, or a bag's). A cross of
        single values is one id per row; a cross with a request-side bag (say the user's
        interests x the creative's category) crosses each of the bag's ids with the row, as the
        training pipeline does. ``values`` is row-major: row 0's ids, then row 1's, ...
        """
        bag = next((request_ids[s] for s in spec.sources if s in self.bag_fields), None)
        per_row = 1 if bag is None else len(bag)
        num = len(rows)
        columns = []
        for source in spec.sources:
            if source in self._creative_column:
                column = creative.ids[rows, self._creative_column[source]]
                columns.append(np.repeat(column, per_row))
            elif source in self.bag_fields:
                columns.append(np.tile(request_ids[source], num))
            else:
                columns.append(np.full(num * per_row, request_ids[source][0]))
        table = self.schema.tables[spec.table]
        values = ops.hash_cross(columns, table.slot, table.num_buckets, self.schema.hash_seed)
        return values, per_row

    def dense(
        self, creative: CreativeFeatures, rows: np.ndarray, request: RequestFeatures
    ) -> np.ndarray:
        """The model's DENSE input [C, N] in schema order."""
        out = np.empty((len(rows), self.dense_dim), dtype=np.float32)
        out[:, self._dense_from_request] = request.dense
        out[:, ~self._dense_from_request] = creative.dense[rows]
        return out


def _subschema(schema: FeatureSchema, fields: list[FieldSpec]) -> FeatureSchema:
    names = {f.name for f in fields}
    kept = tuple(f for f in schema.fields if f.name in names)  # file order: sources first
    return dataclasses.replace(schema, fields=kept, labels={})


def _request_columns(fields: list[FieldSpec], row: Mapping[str, Any]) -> dict[str, Any]:
    """One-row columns of ``fields`` for the pipeline; a field left out of ``row`` is missing."""
    columns: dict[str, Any] = {}
    for spec in fields:
        if spec.kind == "cross":
            continue
        value = row.get(spec.column)
        if spec.kind == "multi_valued":
            items = [] if value is None else list(value)
            columns[spec.column] = (_one_column(items), np.array([0, len(items)]))
        elif spec.kind in ("numeric_dense", "numeric_bucketized"):
            columns[spec.column] = np.array([np.nan if value is None else value], dtype=np.float64)
        else:
            columns[spec.column] = _one_column([value])
    if not columns:
        columns["_"] = np.zeros(1)  # no request-side field: still one row
    return columns


def _one_column(values: list[Any]) -> Any:
    """A small column the pipeline's hashing accepts: integers stay integers."""
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    return np.array(values, dtype=object) if values else np.array([], dtype=np.int64)
