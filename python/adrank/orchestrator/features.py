"""Serving-time features: the training pipeline's encoding, split by who varies per request.

Glossary: ``R`` catalog creatives; ``C`` candidates of one request; ``E`` the model's embedding
width; ``N`` its dense width; ``F_r`` request-side sparse fields (user, context), ``F_c``
candidate-side sparse fields (creative fields and crosses that involve one).

The encoding is the training pipeline's (:class:`adrank.features.pipeline.FeaturePipeline`),
so training and serving cannot disagree. What changes is when each part runs:

* creative fields depend on the creative only: encoded once per catalog snapshot, for all
  ``R`` creatives, and gathered per request;
* user and context fields are encoded once per request (one row) and broadcast;
* crosses of a request field with a creative field are hashed per request, for all ``C``
  candidates in one call per cross.

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


@dataclasses.dataclass(frozen=True)
class CreativeFeatures:
    """Creative-side encodings of one catalog snapshot (rows in catalog order)."""

    ids: np.ndarray  # int64 [R, F_c-creative]: one bucket id per single-valued creative field
    dense: np.ndarray  # float32 [R, N_creative]


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
        return CreativeFeatures(ids=ids, dense=np.ascontiguousarray(batch.dense))

    # --- per request ----------------------------------------------------------------------

    def encode_request(
        self, user: Mapping[str, Any], context: Mapping[str, Any]
    ) -> RequestFeatures:
        """Encodes the request's user and context fields; a field left out is missing."""
        row = {**user, **context}
        columns: dict[str, Any] = {}
        for spec in (*self.request_fields, *self.request_dense):
            if spec.kind == "cross":
                continue
            value = row.get(spec.column)
            if spec.kind == "multi_valued":
                items = [] if value is None else list(value)
                columns[spec.column] = (_one_column(items), np.array([0, len(items)]))
            elif spec.kind in ("numeric_dense", "numeric_bucketized"):
                columns[spec.column] = np.array(
                    [np.nan if value is None else value], dtype=np.float64
                )
            else:
                columns[spec.column] = _one_column([value])
        if not columns:
            columns["_"] = np.zeros(1)  # no request-side field: still one row
        batch = self._request_pipeline(columns, with_labels=False)
        values = [batch.sparse[f.name].values for f in self.request_fields]
        lengths = [len(v) for v in values]
        singles, bags = {}, {}
        for spec in self.request_fields:
            ids = batch.sparse[spec.name].values
            if spec.kind == "multi_valued":
                bags[spec.name] = ids
            else:
                singles[spec.name] = int(ids[0])
        return RequestFeatures(
            values=np.concatenate(values) if values else np.empty(0, np.int64),
            lengths=np.array(lengths, dtype=np.int64),
            single_ids=singles,
            bags=bags,
            dense=np.ascontiguousarray(batch.dense, dtype=np.float32),
        )

    def candidate_ids(
        self, creative: CreativeFeatures, rows: np.ndarray, request: RequestFeatures
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bags of the candidate fields for catalog ``rows``: ``(values, lengths [F_c * C])``.

        Key-major, like the collection call takes them.

        A creative field or a cross of single values is one id per candidate; a cross with a
        request-side bag (say the user's interests x the creative's category) crosses each of
        the bag's ids with the candidate, as the training pipeline does.
        """
        num = len(rows)
        gathered = creative.ids[rows]  # [C, F_creative]
        creative_column = {f.name: j for j, f in enumerate(self.creative_fields)}
        values, lengths = [], []
        for spec in self.candidate_fields:
            if spec.kind != "cross":
                values.append(gathered[:, creative_column[spec.name]])
                lengths.append(np.ones(num, dtype=np.int64))
                continue
            bag = next((request.bags[s] for s in spec.sources if s in request.bags), None)
            per_candidate = 1 if bag is None else len(bag)
            columns = []
            for source in spec.sources:
                if source in creative_column:
                    columns.append(np.repeat(gathered[:, creative_column[source]], per_candidate))
                elif source in request.bags:
                    columns.append(np.tile(request.bags[source], num))
                else:
                    columns.append(np.full(num * per_candidate, request.single_ids[source]))
            table = self.schema.tables[spec.table]
            values.append(
                ops.hash_cross(columns, table.slot, table.num_buckets, self.schema.hash_seed)
            )
            lengths.append(np.full(num, per_candidate, dtype=np.int64))
        return np.concatenate(values), np.concatenate(lengths)

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


def _one_column(values: list[Any]) -> Any:
    """A small column the pipeline's hashing accepts: integers stay integers."""
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    return np.array(values, dtype=object) if values else np.array([], dtype=np.int64)
