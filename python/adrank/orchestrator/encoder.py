"""The request encoder: a request and its catalog rows in, the dense model's inputs out.

Glossary: ``R`` catalog creatives; ``C`` candidates of one request; ``E``/``N`` the model's
embedding and dense widths; ``F_r`` request-side sparse fields (user, context); ``F_c``
creative fields; ``F_x`` crosses of request fields with creative fields.

The model's inputs keep the training order (:class:`adrank.features.FeatureSchema`): sparse
fields by side (user, context, creative), so ``EMBEDDINGS [C, E]`` is the request block
``[0, E_r)`` then the candidate block, where creative fields and crosses sit in file order.
``DENSE [C, N]`` is in schema order. Each part is encoded where it varies:

* creative fields depend on the creative only: hashed and pooled once per catalog snapshot
  (:meth:`RequestEncoder.encode_catalog`) and gathered per request; that holds for bag fields
  too (a creative's tags, the hashed word n-grams of its caption: :mod:`adrank.features.text`),
  so a text is tokenized, hashed and pooled once per creative per snapshot;
* user and context fields are encoded once per request (:mod:`.request_fields`), pooled into
  one row and broadcast;
* crosses are pooled per cross group (:mod:`.crosses`).

Candidates that come with their features in the request (no catalog,
:mod:`.inline_candidates`) go through the training pipeline whole instead
(:meth:`RequestEncoder.encode_rows`): each candidate is a row of its own values, the request's
values filling the columns the rows leave out.

Every hash and lookup runs in adrank's kernels (``adrank.ops``), as in training, so training
and serving cannot disagree (checked against the training pipeline in tests/test_ranker.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from adrank import ops
from adrank.features.pipeline import FeaturePipeline, SparseFeature
from adrank.features.schema import FeatureSchema
from adrank.orchestrator.catalog import Catalog
from adrank.orchestrator.crosses import Crosses, CrossGroups
from adrank.orchestrator.request import RankRequest
from adrank.orchestrator.request_fields import RequestFieldEncoder, subschema
from adrank.orchestrator.timing import StageTimer

REQUEST_SIDES = ("user", "context")


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """The dense model's inputs for ``C`` candidates."""

    embeddings: np.ndarray  # float32 [C, E]
    dense: np.ndarray  # float32 [C, N]


@dataclasses.dataclass(frozen=True)
class CatalogEncoding:
    """The creative side of one catalog snapshot, encoded once (rows in catalog order)."""

    creative_ids: np.ndarray  # int64 [R, F_c]: one bucket id per single-valued creative field
    creative_rows: np.ndarray  # float32 [R, E_c]: the creative fields' pooled rows
    creative_dense: np.ndarray  # float32 [R, N_c]
    crosses: CrossGroups
    # The bags of the creative bag fields (tags, texts), as the training pipeline hashes them.
    creative_bags: Mapping[str, SparseFeature] = dataclasses.field(default_factory=dict)


class RequestEncoder:
    """Built once per schema and tables; encodes catalog snapshots and requests.

    Parameters
    ----------
    schema : the feature schema the model was trained with
    tables : table name -> EmbeddingTable (or float ndarray [rows, dim]), as exported
    """

    def __init__(self, schema: FeatureSchema, tables: Mapping[str, Any]) -> None:
        missing = {f.table for f in schema.sparse_fields} - set(tables)
        if missing:
            raise ValueError(f"tables is missing embedding tables: {sorted(missing)}")
        sparse = schema.sparse_fields
        request_fields = [f for f in sparse if f.side in REQUEST_SIDES]
        candidate_fields = [f for f in sparse if f.side not in REQUEST_SIDES]
        creative_fields = [f for f in candidate_fields if f.kind != "cross"]
        cross_fields = [f for f in candidate_fields if f.kind == "cross"]
        single_fields = [f for f in creative_fields if not f.is_bag]
        served = {f.name for f in (*request_fields, *single_fields)}
        for spec in cross_fields:
            unknown = [s for s in spec.sources if s not in served]
            if unknown:
                raise ValueError(f"cross {spec.name!r} has sources that are not served: {unknown}")
        dense = schema.dense_fields
        request_dense = [f for f in dense if f.side in REQUEST_SIDES]
        creative_dense = [f for f in dense if f.side not in REQUEST_SIDES]

        self.schema = schema
        self.embedding_dim = schema.embedding_dim
        self.dense_dim = schema.dense_dim
        self.request_dim = sum(schema.tables[f.table].dim for f in request_fields)
        self._request = RequestFieldEncoder(schema, request_fields, request_dense)
        self._creative_pipeline = FeaturePipeline(
            subschema(schema, [*creative_fields, *creative_dense])
        )
        self._creative_names = [f.name for f in creative_fields]
        self._single_names = [f.name for f in single_fields]
        field_tables = {f.name: tables[f.table] for f in sparse}
        modes = {f.name: f.pooling for f in sparse}
        self._row_pipeline = FeaturePipeline(dataclasses.replace(schema, labels={}))
        self._all_bags = (
            ops.EmbeddingBagCollection([f.name for f in sparse], field_tables, modes)
            if sparse
            else None
        )
        self._request_bags = (
            ops.EmbeddingBagCollection([f.name for f in request_fields], field_tables, modes)
            if request_fields
            else None
        )
        self._creative_bags = (
            ops.EmbeddingBagCollection(self._creative_names, field_tables, modes)
            if creative_fields
            else None
        )

        # Columns of EMBEDDINGS: the candidate block follows the request block, in file order.
        spans, start = {}, self.request_dim
        for spec in candidate_fields:
            dim = schema.tables[spec.table].dim
            spans[spec.name] = slice(start, start + dim)
            start += dim
        self._creative_columns = _as_slice(
            [np.arange(spans[f.name].start, spans[f.name].stop) for f in creative_fields]
        )
        self._crosses = Crosses(
            schema,
            cross_fields,
            {name: j for j, name in enumerate(self._single_names)},
            {f.name for f in request_fields if f.kind == "multi_valued"},
            tables,
            [spans[f.name] for f in cross_fields],
        )
        # Columns of DENSE: from the request's row or from the creative's.
        from_request = np.array([f.side in REQUEST_SIDES for f in dense], dtype=bool)
        self._request_dense_columns = _as_slice([np.flatnonzero(from_request)])
        self._creative_dense_columns = _as_slice([np.flatnonzero(~from_request)])

    # --- per catalog snapshot --------------------------------------------------------------

    def encode_catalog(self, catalog: Catalog) -> CatalogEncoding:
        """Hashes and pools the creative fields of every catalog row once."""
        if catalog.table is None:
            raise ValueError("catalog has no table to encode creative features from")
        num_rows = len(catalog)
        ids = np.empty((num_rows, len(self._single_names)), dtype=np.int64)
        rows = np.zeros((num_rows, _width(self._creative_columns)), dtype=np.float32)
        dense = np.zeros((num_rows, _width(self._creative_dense_columns)), dtype=np.float32)
        bags: dict[str, SparseFeature] = {}
        if num_rows:  # an empty catalog (candidates in the request) need not hold the columns
            batch = self._creative_pipeline(catalog.table, with_labels=False)
            for j, name in enumerate(self._single_names):
                ids[:, j] = batch.sparse[name].values
            bags = {
                name: batch.sparse[name]
                for name in self._creative_names
                if name not in self._single_names
            }
            dense = np.ascontiguousarray(batch.dense, dtype=np.float32)
            if self._creative_bags is not None:  # every field's bags, key-major, in one call
                features = [batch.sparse[name] for name in self._creative_names]
                rows = self._creative_bags(
                    np.concatenate([f.values for f in features]),
                    np.concatenate([np.diff(f.offsets) for f in features]),
                ).reshape(num_rows, -1)
        return CatalogEncoding(
            creative_ids=ids,
            creative_rows=rows,
            creative_dense=dense,
            crosses=self._crosses.groups(ids),
            creative_bags=bags,
        )

    # --- per request -----------------------------------------------------------------------

    def encode(
        self,
        request: RankRequest,
        encoding: CatalogEncoding,
        rows: np.ndarray,
        timer: StageTimer,
    ) -> ModelInputs:
        """The model's inputs for candidates at catalog ``rows`` (int64 [C]) of ``request``.

        Times the ``features`` (request fields encoded) and ``embeddings`` (pooled rows laid
        out) stages on ``timer``.
        """
        with timer.stage("features"):
            request_features = self._request.encode(request.user, request.context)
            dense = np.empty((len(rows), self.dense_dim), dtype=np.float32)
            dense[:, self._request_dense_columns] = request_features.dense
            dense[:, self._creative_dense_columns] = np.take(encoding.creative_dense, rows, axis=0)
        with timer.stage("embeddings"):
            embeddings = np.empty((len(rows), self.embedding_dim), dtype=np.float32)
            if self._request_bags is not None:
                pooled = self._request_bags(request_features.values, request_features.lengths)
                embeddings[:, : self.request_dim] = pooled.reshape(1, -1)
            if len(rows):
                embeddings[:, self._creative_columns] = np.take(
                    encoding.creative_rows, rows, axis=0
                )
                self._crosses.fill(embeddings, encoding.crosses, rows, request_features)
        return ModelInputs(embeddings, dense)

    def encode_rows(self, request: RankRequest, rows: Any, timer: StageTimer) -> ModelInputs:
        """The model's inputs for candidates given as rows of raw values (a pyarrow Table).

        A schema column the rows leave out takes the request's user or context value.
        """
        import pyarrow as pa

        with timer.stage("features"):
            count = rows.num_rows
            given = {**request.user, **request.context}
            columns = {name: rows[name] for name in rows.column_names}
            for spec in self.schema.fields:
                if spec.kind != "cross" and spec.column not in columns:
                    columns[spec.column] = _repeated(pa, spec.kind, given.get(spec.column), count)
            batch = self._row_pipeline(columns, with_labels=False)
        with timer.stage("embeddings"):
            embeddings = np.zeros((count, 0), dtype=np.float32)
            if self._all_bags is not None:
                sparse = [batch.sparse[f.name] for f in self.schema.sparse_fields]
                embeddings = self._all_bags(
                    np.concatenate([f.values for f in sparse]),
                    np.concatenate([np.diff(f.offsets) for f in sparse]),
                )
        return ModelInputs(embeddings.reshape(count, -1), np.ascontiguousarray(batch.dense))


def _repeated(pa: Any, kind: str, value: Any, count: int) -> Any:
    """One request value as a column of ``count`` rows (typed even when it is missing)."""
    if value is None:
        kinds = {
            "multi_valued": pa.list_(pa.string()),
            "categorical": pa.string(),
            "text": pa.string(),
        }
        return pa.nulls(count, kinds.get(kind, pa.float64()))
    if kind in ("numeric_dense", "numeric_bucketized"):
        return pa.array([float(value)] * count, pa.float64())
    return pa.array([value] * count)


def _as_slice(parts: list[np.ndarray]) -> slice | np.ndarray:
    """Column indices as a slice when they are one run (the usual layout), else an array."""
    columns = np.concatenate(parts) if parts else np.empty(0, np.int64)
    if len(columns) == 0:
        return slice(0, 0)
    if (np.diff(columns) == 1).all():
        return slice(int(columns[0]), int(columns[-1]) + 1)
    return columns


def _width(columns: slice | np.ndarray) -> int:
    return columns.stop - columns.start if isinstance(columns, slice) else len(columns)
