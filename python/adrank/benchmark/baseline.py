"""The plain in-process PyTorch pipeline a user would write instead of adrank: the baseline.

It ranks the same requests over the same catalog, tables and dense model as
:class:`adrank.Ranker`, with the tools at hand:

* catalog join: a ``pandas.Index`` of creative ids (``get_indexer``);
* features: scikit-learn ``FeatureHasher`` per sparse field over ``str(value)`` tokens (crosses:
  ``"a_b"`` tokens built per candidate in Python); creative-only fields hashed once per catalog,
  user and context fields once per request, as a careful user would;
* embeddings: one ``torch.nn.EmbeddingBag`` per field whose weights are the exported table;
* model: the exported TorchScript dense model (:func:`adrank.export.load_dense_model`), one
  torch thread per call;
* scoring: the same eCPM formula (:func:`adrank.orchestrator.scoring.ecpm`), the same
  eligibility (paused campaigns, region targeting, frequency caps, reserve);
* selection: ``torch.topk`` over-fetching ``4 k`` and a Python loop for the per-advertiser cap,
  falling back to a full sort when the over-fetch runs short. No second-price pricing.

It is a *performance* baseline. Its hashing (MurmurHash3 over strings, no slot salt) differs
from adrank's, so the rows it reads, and so its scores and choices, differ from the Ranker's;
what it shares is the work per request. :meth:`PlainTorchPipeline.rank` returns ``k``
creatives (fewer only when fewer are eligible) with at most ``cap`` per advertiser.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from adrank.features.schema import FeatureSchema, FieldSpec
from adrank.orchestrator import scoring
from adrank.orchestrator.catalog import ALL_REGIONS, Catalog
from adrank.orchestrator.request import RankRequest
from adrank.orchestrator.timing import StageTimer

__all__ = ["BaselineResponse", "PlainTorchPipeline"]

REQUEST_SIDES = ("user", "context")
OVER_FETCH = 4


@dataclasses.dataclass(frozen=True)
class BaselineResponse:
    """The chosen creatives in rank order (arrays [k'], k' <= k) and per-stage milliseconds."""

    creative_id: np.ndarray
    advertiser_id: np.ndarray
    ecpm: np.ndarray
    timings_ms: dict[str, float]

    def __len__(self) -> int:
        return len(self.creative_id)


class PlainTorchPipeline:
    """See the module docstring. ``tables``: table name -> float32 [rows, dim]."""

    def __init__(
        self,
        schema: FeatureSchema,
        tables: dict[str, np.ndarray],
        version_dir: str | Path,
        catalog: Catalog,
        *,
        max_per_advertiser: int = 2,
        frequency_cap: int = 3,
        scoring_config: scoring.ScoringConfig | None = None,
    ) -> None:
        import pandas as pd
        import torch
        from sklearn.feature_extraction import FeatureHasher

        from adrank.export import load_dense_model

        if catalog.table is None:
            raise ValueError("catalog has no table to read creative features from")
        torch.set_num_threads(1)
        self._torch = torch
        self.schema = schema
        self.catalog = catalog
        self.max_per_advertiser = max_per_advertiser
        self.frequency_cap = frequency_cap
        self.scoring_config = scoring_config or scoring.ScoringConfig()
        self._index = pd.Index(catalog.creative_id)
        self._model = load_dense_model(Path(version_dir)).eval()
        self._fields = schema.sparse_fields
        self._hashers = {
            f.name: FeatureHasher(
                n_features=schema.tables[f.table].num_buckets,
                input_type="string",
                alternate_sign=False,
            )
            for f in self._fields
            if f.kind != "numeric_bucketized"
        }
        weights = {name: torch.from_numpy(np.ascontiguousarray(t)) for name, t in tables.items()}
        self._bags = {
            f.name: torch.nn.EmbeddingBag.from_pretrained(weights[f.table], mode="sum")
            for f in self._fields
        }
        # Raw creative values as strings (cross tokens) and their hashed bags, once per catalog.
        columns = {
            f.column: catalog.table.column(f.column).to_pylist()
            for f in schema.fields
            if f.side == "creative" and f.kind != "cross"
        }
        self._creative_tokens = {
            f.name: np.array([str(v) for v in self._raw_creative(f, columns)], dtype=object)
            for f in schema.fields
            if f.side == "creative" and f.kind not in ("cross", "numeric_dense")
        }
        self._creative_rows = {
            f.name: self._hash_rows(f, [[t] for t in self._creative_tokens[f.name]])
            for f in self._fields
            if f.side == "creative" and f.kind != "cross"
        }
        dense = [f for f in schema.dense_fields if f.side not in REQUEST_SIDES]
        self._creative_dense = np.stack(
            [_transform(f, np.array(columns[f.column], dtype=np.float64)) for f in dense], axis=1
        ).astype(np.float32)

    @classmethod
    def from_workspace(
        cls, workspace: Any, catalog: Catalog | None = None, **settings: Any
    ) -> PlainTorchPipeline:
        """The baseline over a workspace from :func:`adrank.workspace.prepare_workspace`.

        ``catalog`` replaces the workspace's own (same creatives, other campaign settings).
        """
        from adrank.artifacts import open_version

        exported = open_version(workspace.artifacts_dir)
        schema = exported.schema
        tables = {name: table.to_float32() for name, table in exported.tables.items()}
        version_dir = workspace.repository / workspace.model_name / str(workspace.version)
        catalog = catalog or Catalog.from_parquet(workspace.catalog_path)
        return cls(schema, tables, version_dir, catalog, **settings)

    # --- hashing ---------------------------------------------------------------------------

    def _raw_creative(self, spec: FieldSpec, columns: dict[str, list]) -> list:
        values = columns[spec.column]
        if spec.kind == "numeric_bucketized":
            return list(_bucketize(spec, np.array(values, dtype=np.float64)))
        return values

    def _hash_rows(self, spec: FieldSpec, rows: list[list[str]]) -> tuple[Any, ...]:
        """``(ids, offsets, weights)`` tensors of one field's bags; mean pooling via weights."""
        torch = self._torch
        if spec.kind == "numeric_bucketized":
            ids = np.array([int(r[0]) for r in rows], dtype=np.int64)
            offsets = np.arange(len(rows), dtype=np.int64)
            weights = np.ones(len(rows), dtype=np.float32)
        else:
            matrix = self._hashers[spec.name].transform(rows)
            ids, offsets = matrix.indices.astype(np.int64), matrix.indptr[:-1].astype(np.int64)
            weights = matrix.data.astype(np.float32)
            if spec.pooling == "mean":
                counts = np.diff(matrix.indptr)
                weights /= np.repeat(np.maximum(matrix.sum(axis=1).A1, 1), counts)
        return torch.from_numpy(ids), torch.from_numpy(offsets), torch.from_numpy(weights)

    def _pool(self, spec: FieldSpec, bags: tuple[Any, ...]) -> Any:
        ids, offsets, weights = bags
        return self._bags[spec.name](ids, offsets, per_sample_weights=weights)

    # --- ranking ---------------------------------------------------------------------------

    def rank(self, request: RankRequest) -> BaselineResponse:
        torch, catalog = self._torch, self.catalog
        timer = StageTimer()
        with timer.stage("catalog"):
            rows = self._index.get_indexer(request.candidates)
            rows = rows[rows >= 0]
        with timer.stage("features"):
            request_raw = {**request.user, **request.context}
            request_bags, cross_bags = {}, {}
            for spec in self._fields:
                if spec.side in REQUEST_SIDES:
                    request_bags[spec.name] = self._hash_rows(
                        spec, [_request_tokens(spec, request_raw)]
                    )
                elif spec.kind == "cross":
                    cross_bags[spec.name] = self._hash_rows(
                        spec, self._cross_tokens(spec, request_raw, rows)
                    )
            request_dense = [f for f in self.schema.dense_fields if f.side in REQUEST_SIDES]
            dense = np.empty((len(rows), self.schema.dense_dim), dtype=np.float32)
            dense[:, : len(request_dense)] = [
                _transform(f, np.array([_or_nan(request_raw.get(f.column))]))[0]
                for f in request_dense
            ]
            dense[:, len(request_dense) :] = self._creative_dense[rows]
        with timer.stage("embeddings"), torch.inference_mode():
            rows_t = torch.from_numpy(rows)
            pooled = []
            for spec in self._fields:
                if spec.side in REQUEST_SIDES:
                    pooled.append(self._pool(spec, request_bags[spec.name]).expand(len(rows), -1))
                elif spec.kind == "cross":
                    pooled.append(self._pool(spec, cross_bags[spec.name]))
                else:
                    ids, _, weights = self._creative_rows[spec.name]
                    bags = (ids[rows_t], torch.arange(len(rows)), weights[rows_t])
                    pooled.append(self._pool(spec, bags))
            embeddings = torch.cat(pooled, dim=1)
        with timer.stage("model"), torch.inference_mode():
            p_ctr, p_cvr, p_neg = (
                t.reshape(-1).double().numpy()
                for t in self._model(embeddings, torch.from_numpy(dense))
            )
        with timer.stage("scoring"):
            objective, bid = catalog.objective[rows], catalog.bid[rows]
            pacing = np.ones(len(rows))
            ecpm = scoring.ecpm(
                self.scoring_config,
                objective,
                bid,
                catalog.target_cpa[rows],
                pacing,
                p_ctr,
                p_cvr,
                p_neg,
            )
        with timer.stage("selection"):
            eligible = self._eligible(request, rows) & (ecpm >= self.scoring_config.reserve_ecpm)
            cap = request.constraints.max_per_advertiser or self.max_per_advertiser
            advertisers = catalog.advertiser_id[rows]
            scores = torch.from_numpy(np.where(eligible, ecpm, -np.inf))
            chosen = _capped_top_k(scores, advertisers, request.k, cap, int(eligible.sum()))
        return BaselineResponse(
            creative_id=catalog.creative_id[rows[chosen]],
            advertiser_id=advertisers[chosen],
            ecpm=ecpm[chosen],
            timings_ms=timer.ms,
        )

    def _cross_tokens(
        self, spec: FieldSpec, request_raw: dict[str, Any], rows: np.ndarray
    ) -> list[list[str]]:
        """One list of ``"a_b"`` tokens per candidate (a bag source gives one per value)."""
        parts: list[Any] = []
        for source in spec.sources:
            field = self.schema.field(source)
            if field.side == "creative":
                parts.append(self._creative_tokens[source][rows])
            elif field.kind == "multi_valued":
                parts.append([str(v) for v in request_raw.get(field.column) or ()])
            else:
                parts.append(_request_tokens(field, request_raw)[0])
        bag = next((p for p in parts if isinstance(p, list)), None)
        values = [None] if bag is None else bag  # a bag: each of its values is crossed
        return [
            [
                "_".join(v if p is bag else p if isinstance(p, str) else p[i] for p in parts)
                for v in values
            ]
            for i in range(len(rows))
        ]

    def _eligible(self, request: RankRequest, rows: np.ndarray) -> np.ndarray:
        catalog = self.catalog
        eligible = catalog.active[rows].copy()
        masks = catalog.region_mask[rows]
        eligible &= (masks == ALL_REGIONS) | ((masks & catalog.region_bit(request.region)) != 0)
        if request.constraints.blocked_categories:
            blocked = np.array(request.constraints.blocked_categories, dtype=np.int64)
            eligible &= ~np.isin(catalog.category[rows], blocked)
        if len(request.recently_seen):
            cap = request.constraints.frequency_cap or self.frequency_cap
            seen, counts = np.unique(request.recently_seen, return_counts=True)
            eligible &= ~np.isin(catalog.creative_id[rows], seen[counts >= cap])
        return eligible


def _capped_top_k(scores: Any, advertisers: np.ndarray, k: int, cap: int, eligible: int) -> list:
    """Indices of the ``k`` best finite scores, at most ``cap`` per advertiser, best first."""
    import torch

    wanted = min(k, eligible)
    fetch = min(len(scores), OVER_FETCH * k)
    while True:
        if fetch < len(scores):
            top = torch.topk(scores, fetch)
        else:
            top = torch.sort(scores, descending=True, stable=True)
        chosen: list[int] = []
        taken: dict[int, int] = {}
        for value, i in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            if value == -np.inf:
                break
            owner = int(advertisers[i])
            if taken.get(owner, 0) < cap:
                taken[owner] = taken.get(owner, 0) + 1
                chosen.append(i)
                if len(chosen) == wanted:
                    return chosen
        if fetch == len(scores):  # the over-fetch ran short: the full sort decides
            return chosen
        fetch = len(scores)


def _request_tokens(spec: FieldSpec, raw: dict[str, Any]) -> list[str]:
    value = raw.get(spec.column)
    if spec.kind == "multi_valued":
        return [str(v) for v in value or ()]
    if spec.kind == "numeric_bucketized":
        return [str(_bucketize(spec, np.array([_or_nan(value)]))[0])]
    return [str(value)]


def _bucketize(spec: FieldSpec, values: np.ndarray) -> np.ndarray:
    """Interval index by the boundaries; NaN gets the extra last row."""
    buckets = np.searchsorted(np.asarray(spec.boundaries), values, side="right")
    return np.where(np.isnan(values), len(spec.boundaries) + 1, buckets)


def _transform(spec: FieldSpec, values: np.ndarray) -> np.ndarray:
    if spec.transform == "log1p":
        values = np.log1p(np.maximum(values, 0.0))
    elif spec.transform == "signed_log1p":
        values = np.sign(values) * np.log1p(np.abs(values))
    return np.where(np.isnan(values), spec.fill, values)


def _or_nan(value: Any) -> float:
    return np.nan if value is None else float(value)
