"""``adrank.Ranker``: one request in, the k best creatives out, with no per-candidate Python.

Glossary: ``C`` candidates of a request (after dropping unknown ids); ``E``/``N`` the model's
embedding and dense widths; ``k`` creatives asked for.

Stages, each timed (``RankResponse.timings_ms``):

1. ``catalog``    join candidate ids to the catalog snapshot (unknown ids dropped, counted)
2. ``features``   request fields encoded once (:class:`~adrank.orchestrator.features.
                  ServingFeatures`); creative fields were encoded once per catalog snapshot
3. ``embeddings`` request-side rows pooled once and broadcast; creative rows gathered from the
                  snapshot's pooled block; crosses by cross group
                  (:mod:`adrank.orchestrator.cross_embeddings`)
4. ``model``      one call to the dense model (Triton)
5. ``scoring``    eCPM by objective, pacing, negative-feedback penalty
                  (:mod:`adrank.orchestrator.scoring`)
6. ``selection``  constrained top-k: per-advertiser cap, paused and killed campaigns, region
                  targeting, categories blocked in the user's region, frequency caps
7. ``pricing``    generalized second price (:mod:`adrank.orchestrator.pricing`)
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adrank import ops
from adrank.features.schema import FeatureSchema
from adrank.orchestrator import pricing, scoring
from adrank.orchestrator.catalog import ALL_REGIONS, Catalog
from adrank.orchestrator.cross_embeddings import CrossEmbeddings
from adrank.orchestrator.errors import ModelUnavailableError
from adrank.orchestrator.features import CreativeFeatures, ServingFeatures
from adrank.orchestrator.model import DenseModel
from adrank.orchestrator.request import RankRequest, RankResponse
from adrank.orchestrator.timing import StageTimer

STAGES = ("catalog", "features", "embeddings", "model", "scoring", "selection", "pricing")


@dataclass(frozen=True)
class SelectionConfig:
    """Business rules of selection; a request's ``constraints`` override the first two."""

    max_per_advertiser: int = 2
    frequency_cap: int = 3
    blocked_categories: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # by region

    def __post_init__(self) -> None:
        if self.max_per_advertiser < 1:
            raise ValueError(f"max_per_advertiser must be >= 1, got {self.max_per_advertiser}")
        if self.frequency_cap < 1:
            raise ValueError(f"frequency_cap must be >= 1, got {self.frequency_cap}")


@dataclass(frozen=True)
class FallbackRates:
    """Rates scored when the model does not answer; the response is flagged ``degraded``.

    Use the log's average rates: the ranking then falls back to bids (and pacing), which keeps
    ads serving through a model outage at a known cost in relevance.
    """

    p_ctr: float
    p_cvr: float
    p_neg: float

    def __post_init__(self) -> None:
        for name in ("p_ctr", "p_cvr", "p_neg"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fallback {name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class _Snapshot:
    """A catalog and its creative encodings: swapped together, read together."""

    catalog: Catalog
    creative: CreativeFeatures
    creative_embeddings: np.ndarray  # float32 [R, D of the creative fields], pooled once
    cross_memo: dict[tuple, np.ndarray] = field(default_factory=dict)  # see CrossEmbeddings


PacingLookup = Callable[[np.ndarray], np.ndarray]  # campaign ids [C] -> multipliers [C]
# advertiser ids [C], campaign ids [C] -> killed [C] (bool); TrafficControl.blocked is one
KillSwitchLookup = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Ranker:
    """Ranks a request's candidate creatives (see the module docstring for the stages).

    Parameters
    ----------
    schema : the feature schema the model was trained with
    tables : table name -> EmbeddingTable (or float ndarray [rows, dim]), as exported
    model : the dense model (:class:`~adrank.orchestrator.model.TritonModel` in serving)
    catalog : the first catalog snapshot; :meth:`swap_catalog` replaces it while serving
    scoring_config, selection_config : the formulas' settings
    fallback : rates to score with when the model does not answer; None answers 503 instead
    pacing : campaign ids -> multipliers in [0, 1]; None means 1.0 for every campaign
    killed : (advertiser ids, campaign ids) -> True where a kill switch is on
        (:meth:`adrank.traffic.TrafficControl.blocked`); None means nothing is killed
    """

    def __init__(
        self,
        schema: FeatureSchema,
        tables: Mapping[str, Any],
        model: DenseModel,
        catalog: Catalog,
        scoring_config: scoring.ScoringConfig | None = None,
        selection_config: SelectionConfig | None = None,
        fallback: FallbackRates | None = None,
        pacing: PacingLookup | None = None,
        killed: KillSwitchLookup | None = None,
    ) -> None:
        self.features = ServingFeatures(schema)
        missing = {f.table for f in schema.sparse_fields} - set(tables)
        if missing:
            raise ValueError(f"tables is missing embedding tables: {sorted(missing)}")
        self.tables = tables
        self.model = model
        self.scoring_config = scoring_config or scoring.ScoringConfig()
        self.selection_config = selection_config or SelectionConfig()
        self.fallback = fallback
        self.pacing = pacing
        self.killed = killed
        sparse = self.features
        self._request_keys = [f.name for f in sparse.request_fields]
        self._creative_keys = [f.name for f in sparse.creative_fields]
        self._crosses = CrossEmbeddings(sparse, tables)
        self._field_tables = {f.name: tables[f.table] for f in schema.sparse_fields}
        self._modes = {f.name: f.pooling for f in schema.sparse_fields}
        self._creative_columns, self._cross_columns = _candidate_columns(schema, sparse)
        self._swap_lock = threading.Lock()
        self._snapshot = self._encode(catalog)
        self.unknown_candidates = 0

    @classmethod
    def from_export(
        cls,
        artifacts_dir: str | Path,
        catalog: Catalog | str | Path,
        model: DenseModel,
        *,
        precision: str = "fp32",
        **settings: Any,
    ) -> Ranker:
        """A ranker over one exported version: its schema and tables (memory-mapped)."""
        from adrank.features import load_schema
        from adrank.models.tables import load_tables

        artifacts_dir = Path(artifacts_dir)
        schema = load_schema(artifacts_dir / "schema.toml")
        tables = load_tables(artifacts_dir / "tables", schema, precision)
        if not isinstance(catalog, Catalog):
            catalog = Catalog.from_parquet(catalog)
        return cls(schema, tables, model, catalog, **settings)

    # --- catalog -------------------------------------------------------------------------

    def _encode(self, catalog: Catalog) -> _Snapshot:
        if catalog.table is None:
            raise ValueError("catalog has no table to encode creative features from")
        creative = self.features.encode_catalog(catalog.table)
        rows, fields = creative.ids.shape
        # Creative fields are the same in every request: pooled here, gathered per request.
        pooled = np.zeros((rows, _width(self._creative_columns)), dtype=np.float32)
        if rows and fields:
            pooled = ops.embedding_bag_collection(
                self._creative_keys,
                np.ascontiguousarray(creative.ids.T).reshape(-1),
                np.ones(rows * fields, dtype=np.int64),
                self._field_tables,
                self._modes,
            ).reshape(rows, -1)
        return _Snapshot(catalog, creative, pooled)

    def swap_catalog(self, catalog: Catalog) -> None:
        """Encodes ``catalog`` and installs it atomically; requests in flight finish on the old."""
        snapshot = self._encode(catalog)  # the slow part, outside the lock
        with self._swap_lock:
            self._snapshot = snapshot

    @property
    def catalog(self) -> Catalog:
        return self._snapshot.catalog

    def readiness(self) -> tuple[bool, str]:
        ready, reason = self.model.readiness()
        catalog = self._snapshot.catalog
        return (
            ready,
            f"{reason}; catalog {catalog.version or 'loaded'} with {len(catalog)} creatives",
        )

    # --- ranking -------------------------------------------------------------------------

    def rank(self, request: RankRequest) -> RankResponse:
        return self.rank_batch([request])[0]

    def rank_batch(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        """Ranks several requests with one model call for all their candidates."""
        snapshot = self._snapshot  # one read: each batch sees one catalog
        timers = [StageTimer() for _ in requests]
        prepared = [self._prepare(snapshot, r, t) for r, t in zip(requests, timers, strict=True)]
        rates, degraded = self._predict(prepared, timers)
        return [
            self._finish(snapshot.catalog, request, prep, rate, degraded, timer)
            for request, prep, rate, timer in zip(requests, prepared, rates, timers, strict=True)
        ]

    def _prepare(
        self, snapshot: _Snapshot, request: RankRequest, timer: StageTimer
    ) -> dict[str, Any]:
        catalog, features = snapshot.catalog, self.features
        with timer.stage("catalog"):
            rows, known = catalog.lookup(request.candidates)
            unknown = int(len(known) - len(rows))
        with timer.stage("features"):
            request_features = features.encode_request(request.user, request.context)
            dense = features.dense(snapshot.creative, rows, request_features)
        with timer.stage("embeddings"):
            embeddings = np.empty((len(rows), features.embedding_dim), dtype=np.float32)
            if self._request_keys:
                pooled = ops.embedding_bag_collection(
                    self._request_keys,
                    request_features.values,
                    request_features.lengths,
                    self._field_tables,
                    self._modes,
                )
                embeddings[:, : features.request_dim] = pooled.reshape(1, -1)
            if len(rows):
                creative_block = np.take(snapshot.creative_embeddings, rows, axis=0)
                embeddings[:, self._creative_columns] = creative_block
                self._crosses.fill(
                    embeddings,
                    self._cross_columns,
                    snapshot.creative,
                    rows,
                    request_features,
                    snapshot.cross_memo,
                )
        return {"rows": rows, "unknown": unknown, "embeddings": embeddings, "dense": dense}

    def _predict(
        self, prepared: list[dict[str, Any]], timers: list[StageTimer]
    ) -> tuple[list, bool]:
        sizes = [len(p["rows"]) for p in prepared]
        start = time.perf_counter()
        degraded = False
        if sum(sizes) == 0:
            empty = np.empty(0, dtype=np.float32)
            rates: tuple[np.ndarray, ...] = (empty, empty, empty)
        else:
            embeddings = (
                np.concatenate([p["embeddings"] for p in prepared])
                if len(prepared) > 1
                else prepared[0]["embeddings"]
            )
            dense = (
                np.concatenate([p["dense"] for p in prepared])
                if len(prepared) > 1
                else prepared[0]["dense"]
            )
            try:
                rates = self.model.predict(embeddings, dense)
            except ModelUnavailableError:
                if self.fallback is None:
                    raise
                degraded = True
                total = sum(sizes)
                rates = tuple(
                    np.full(total, getattr(self.fallback, name), dtype=np.float32)
                    for name in ("p_ctr", "p_cvr", "p_neg")
                )
        elapsed = (time.perf_counter() - start) * 1e3
        bounds = np.cumsum([0, *sizes])
        per_request = [tuple(r[a:b] for r in rates) for a, b in itertools.pairwise(bounds)]
        for timer in timers:  # one shared call: each request waited for all of it
            timer.ms["model"] = elapsed
        return per_request, degraded

    def _finish(
        self,
        catalog: Catalog,
        request: RankRequest,
        prep: dict[str, Any],
        rates: tuple[np.ndarray, np.ndarray, np.ndarray],
        degraded: bool,
        timer: StageTimer,
    ) -> RankResponse:
        rows = prep["rows"]
        p_ctr, p_cvr, p_neg = (r.astype(np.float64) for r in rates)
        config = self.scoring_config
        with timer.stage("scoring"):
            objective = catalog.objective[rows]
            bid, target_cpa = catalog.bid[rows], catalog.target_cpa[rows]
            campaigns = catalog.campaign_id[rows]
            pacing = (
                np.ones(len(rows))
                if self.pacing is None
                else np.asarray(self.pacing(campaigns), dtype=np.float64)
            )
            ecpm = scoring.ecpm(config, objective, bid, target_cpa, pacing, p_ctr, p_cvr, p_neg)
        with timer.stage("selection"):
            eligible = self._eligible(catalog, request, rows, pacing)
            cap = request.constraints.max_per_advertiser or self.selection_config.max_per_advertiser
            advertisers = catalog.advertiser_id[rows]
            # One more than asked: the runner-up sets the last winner's second price.
            _, chosen = ops.select(
                ecpm.astype(np.float32),
                request.k + 1,
                groups=(advertisers, cap),
                eligible=eligible,
                min_score=config.reserve_ecpm,
            )
            chosen = chosen[chosen >= 0]
            winners, runner_up = chosen[: request.k], chosen[request.k :]
        with timer.stage("pricing"):
            factors = scoring.bid_to_ecpm_factor(
                objective[winners], p_ctr[winners], p_cvr[winners], pacing[winners]
            )
            penalties = config.neg_penalty * p_neg[winners] * 1000.0
            price = pricing.gsp_prices(
                ecpm[winners],
                float(ecpm[runner_up[0]]) if len(runner_up) else None,
                scoring.own_bid(objective[winners], bid[winners], target_cpa[winners]),
                factors,
                penalties,
                config.reserve_ecpm,
            )
        self.unknown_candidates += prep["unknown"]
        winner_rows = rows[winners]
        return RankResponse(
            request_id=request.request_id,
            model_version=self.model.version,
            creative_id=catalog.creative_id[winner_rows],
            campaign_id=catalog.campaign_id[winner_rows],
            advertiser_id=catalog.advertiser_id[winner_rows],
            p_ctr=p_ctr[winners],
            p_cvr=p_cvr[winners],
            p_neg=p_neg[winners],
            ecpm=ecpm[winners],
            price=price,
            timings_ms={stage: round(timer.ms.get(stage, 0.0), 4) for stage in STAGES},
            unknown_candidates=prep["unknown"],
            degraded=degraded,
        )

    def _eligible(
        self, catalog: Catalog, request: RankRequest, rows: np.ndarray, pacing: np.ndarray
    ) -> np.ndarray:
        """Paused campaigns, kill switches, region targeting, blocked categories, frequency caps,
        spent budgets."""
        eligible = catalog.active[rows] & (pacing > 0)
        if self.killed is not None:
            eligible &= ~np.asarray(
                self.killed(catalog.advertiser_id[rows], catalog.campaign_id[rows]), dtype=bool
            )
        # Untargeted campaigns run everywhere, a region no campaign names included.
        masks = catalog.region_mask[rows]
        eligible &= (masks == ALL_REGIONS) | ((masks & catalog.region_bit(request.region)) != 0)
        blocked = set(request.constraints.blocked_categories)
        if request.region is not None:
            blocked.update(self.selection_config.blocked_categories.get(request.region, ()))
        if blocked:
            eligible &= ~np.isin(catalog.category[rows], np.fromiter(blocked, dtype=np.int64))
        if len(request.recently_seen):
            cap = request.constraints.frequency_cap or self.selection_config.frequency_cap
            seen, counts = np.unique(request.recently_seen, return_counts=True)
            over_cap = seen[counts >= cap]
            if len(over_cap):
                eligible &= ~np.isin(catalog.creative_id[rows], over_cap)
        return eligible


def _candidate_columns(
    schema: FeatureSchema, features: ServingFeatures
) -> tuple[slice | np.ndarray, list[slice]]:
    """Where pooled rows go in ``EMBEDDINGS``: the creative fields' columns, each cross's."""
    start, spans = features.request_dim, {}
    for spec in features.candidate_fields:
        dim = schema.tables[spec.table].dim
        spans[spec.name] = slice(start, start + dim)
        start += dim
    parts = [np.arange(spans[f.name].start, spans[f.name].stop) for f in features.creative_fields]
    creative: slice | np.ndarray = np.concatenate(parts or [np.empty(0, np.int64)])
    if len(creative) == 0:
        creative = slice(start, start)
    elif (np.diff(creative) == 1).all():  # the usual layout: one block
        creative = slice(int(creative[0]), int(creative[-1]) + 1)
    return creative, [spans[f.name] for f in features.cross_fields]


def _width(columns: slice | np.ndarray) -> int:
    return columns.stop - columns.start if isinstance(columns, slice) else len(columns)
