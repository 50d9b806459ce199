"""``adrank.Ranker``: one request in, the k best creatives out, with no per-candidate Python.

Glossary: ``C`` candidates of a request (after dropping unknown ids); ``k`` creatives asked for.

A request walks one straight line; each stage is timed (``RankResponse.timings_ms``):

1. ``catalog``    candidate ids joined to the catalog snapshot (unknown ids dropped, counted)
2. ``features``   } the request encoder (:mod:`adrank.orchestrator.encoder`): request fields
3. ``embeddings`` } encoded and pooled once, creative rows gathered, crosses by cross group
4. ``model``      one call to the dense model (Triton; :mod:`adrank.orchestrator.model`)
5. ``scoring``    eCPM by objective, pacing, negative-feedback penalty
                  (:mod:`adrank.orchestrator.scoring`)
6. ``selection``  constrained top-k: per-advertiser cap, one creative per ad (the catalog's
                  optional ``ad_id``), paused, killed and safety-blocked creatives, region
                  targeting, categories blocked in the user's region, frequency caps, the
                  reserve
7. ``pricing``    generalized second price (:mod:`adrank.orchestrator.pricing`)

Stages 5-7 run as one native pass over the candidates' columns (:func:`adrank.ops.auction`,
the formulas of ``scoring`` and ``pricing`` bit for bit), so they are timed by this rule:
``scoring`` is the pacing and kill-switch lookups the pass needs (callbacks in Python),
``selection`` the pass itself (all of 5-7, with the ad-load cap below), ``pricing`` 0.

Only the heads the model was trained for score (the schema's tasks, ``schema.tasks``): a rate
it does not predict is None in the response, never a number from an untrained head. Without
``p_neg`` there is no negative-feedback penalty; without ``p_cvr`` oCPM campaigns, which bid
per conversion, are not eligible (their value cannot be estimated).

With an exploration policy (the ranker's, or an experiment arm's on the request), the pass
returns the policy's pool of best eligible creatives instead of ``k``, and the policy draws the
``k`` slots from it, recording each draw's propensity (:mod:`adrank.experiments.exploration`).
Without one the path is unchanged.

Three optional hooks change the rates the pass reads, in this order: an online scorer
(:mod:`adrank.online.serving`) replaces the model's ``p_ctr`` with the online learner's (timed
with ``model``; ``model_version`` then names its publication); ``ScoringConfig(value=
"incremental")`` passes the uplift model's incremental conversions in place of ``p_cvr``
(:mod:`adrank.orchestrator.scoring`); and the cold-start hook below.

Requests that name a model version (an experiment arm's) are ranked on that version's own
snapshot, pinned beside the current one (:meth:`Ranker.pin_model`): one model call per version.

With a cold-start hook (:mod:`adrank.experiments.cold_start`), the pass values candidates at
its click-rate estimate and multiplies new creatives' eCPM by its exploration boost on its
exploring requests (through the pacing column, and the negative-feedback rate, so that the whole
eCPM scales); the response's eCPM is the estimate's, the boost taken out.

The ad-load cap of the request's placement and region then bounds the ads returned (timed
with ``selection``): with the request's organic feed, :func:`adrank.allocation.build_feed`
places the ads and those it leaves out are dropped; without a feed, a cap ``c`` keeps the
first ``floor(c * k)`` (a cap is the share of the ``k`` slots asked for that ads may take).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adrank import ops
from adrank.allocation import AllocationPolicy, build_feed
from adrank.experiments.exploration import request_seed
from adrank.features.schema import FeatureSchema
from adrank.orchestrator import scoring
from adrank.orchestrator.catalog import Catalog
from adrank.orchestrator.encoder import CatalogEncoding, ModelInputs, RequestEncoder
from adrank.orchestrator.errors import ModelUnavailableError
from adrank.orchestrator.inline_candidates import inline_catalog
from adrank.orchestrator.model import DenseModel, Rates
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
    """What one request is served with, swapped as one and read once per request: the catalog,
    the model version and its encoder, and the catalog encoded for that version's tables."""

    catalog: Catalog
    encoder: RequestEncoder
    encoding: CatalogEncoding
    model: DenseModel
    columns: Any  # the catalog's columns for the auction pass (ops.auction_catalog)


@dataclass(frozen=True)
class _Candidates:
    """A request's candidates joined to their catalog (the snapshot's, or the request's own)."""

    catalog: Catalog
    rows: np.ndarray  # int64 [C]: catalog rows of the known candidates, in request order
    unknown: int  # candidate ids not in the catalog (dropped)


PacingLookup = Callable[[np.ndarray], np.ndarray]  # campaign ids [C] -> multipliers [C]
# advertiser ids [C], campaign ids [C] -> killed [C] (bool); TrafficControl.blocked is one
KillSwitchLookup = Callable[[np.ndarray, np.ndarray], np.ndarray]
# placement, region -> the ad-load cap in [0, 1]; TrafficControl.ad_load_cap is one
AdLoadLookup = Callable[[str | None, str | None], float]


class Ranker:
    """Ranks a request's candidate creatives (see the module docstring for the stages).

    Parameters
    ----------
    schema : the feature schema the model was trained with
    tables : table name -> EmbeddingTable (or float ndarray [rows, dim]), as exported
    model : the dense model (:class:`~adrank.orchestrator.model.TritonModel` in serving)
    catalog : the first catalog snapshot; :meth:`swap_catalog` replaces it while serving;
        None for a model whose candidates all come with their features in the request
    scoring_config, selection_config : the formulas' settings
    fallback : rates to score with when the model does not answer; None answers 503 instead
    pacing : campaign ids -> multipliers in [0, 1]; None means 1.0 for every campaign
    killed : (advertiser ids, campaign ids) -> True where a kill switch is on
        (:meth:`adrank.traffic.TrafficControl.blocked`); None means nothing is killed
    ad_load : (placement, region) -> the ad-load cap
        (:meth:`adrank.traffic.TrafficControl.ad_load_cap`); None means no cap
    allocation : where ads may go in a request's feed, per placement and region
    exploration : an :class:`adrank.experiments.exploration.ExplorationPolicy`; None: none
    safety : an :class:`adrank.safety.SafetyGate`: the candidates it blocks in the request's
        region are not eligible (as killed ones); None: no content-safety gate
    cold_start : an :class:`adrank.experiments.cold_start.ColdStart`: candidates are valued at
        its click-rate estimate, and new creatives boosted on its exploring requests; None: none
    online : an :class:`adrank.online.serving.OnlineScorer`: its click rate replaces the
        model's ``p_ctr`` and ``model_version`` names its publication; None: the model's only
    uplift : an :class:`adrank.uplift.UpliftScorer`, needed by ``ScoringConfig(value=
        "incremental")``: oCPM candidates are valued at its incremental conversions
        (:mod:`adrank.orchestrator.scoring`); None: none
    """

    def __init__(
        self,
        schema: FeatureSchema,
        tables: Mapping[str, Any],
        model: DenseModel,
        catalog: Catalog | None = None,
        scoring_config: scoring.ScoringConfig | None = None,
        selection_config: SelectionConfig | None = None,
        fallback: FallbackRates | None = None,
        pacing: PacingLookup | None = None,
        killed: KillSwitchLookup | None = None,
        ad_load: AdLoadLookup | None = None,
        allocation: AllocationPolicy | None = None,
        exploration: Any = None,
        safety: Any = None,
        cold_start: Any = None,
        online: Any = None,
        uplift: Any = None,
    ) -> None:
        self.scoring_config = scoring_config or scoring.ScoringConfig()
        self.uplift = uplift
        _check_uplift(self.scoring_config, uplift)
        self.selection_config = selection_config or SelectionConfig()
        self.fallback = fallback
        self.pacing = pacing
        self.killed = killed
        self.ad_load = ad_load
        self.allocation = allocation or AllocationPolicy()
        self.exploration = exploration
        self.safety = safety
        self.cold_start = cold_start
        self.online = online
        self._swap_lock = threading.Lock()
        catalog = Catalog.empty() if catalog is None else catalog
        self._snapshot = _encode(catalog, RequestEncoder(schema, tables), model)
        self._pinned: dict[int, _Snapshot] = {}  # version -> snapshot, see pin_model

    @classmethod
    def from_export(
        cls,
        artifacts_dir: str | Path,
        catalog: Catalog | str | Path | None,
        model: DenseModel,
        *,
        precision: str = "fp32",
        **settings: Any,
    ) -> Ranker:
        """A ranker over one exported version: its schema and tables (memory-mapped)."""
        from adrank.artifacts import open_version

        exported = open_version(artifacts_dir, precision)
        uplift_dir = Path(artifacts_dir) / "uplift"  # adrank.uplift.serving.UPLIFT_DIR
        if settings.get("uplift") is None and uplift_dir.is_dir():  # exported beside it
            from adrank.uplift.serving import UpliftScorer

            settings["uplift"] = UpliftScorer.load(uplift_dir)
        if catalog is not None and not isinstance(catalog, Catalog):
            catalog = Catalog.from_parquet(catalog)
        return cls(exported.schema, exported.tables, model, catalog, **settings)

    # --- catalog -------------------------------------------------------------------------

    def swap_catalog(self, catalog: Catalog) -> None:
        """Encodes ``catalog`` and installs it atomically; requests in flight finish on the old."""
        with self._swap_lock:
            current = self._snapshot
            self._snapshot = _encode(catalog, current.encoder, current.model)
            self._pinned = {
                v: _encode(catalog, p.encoder, p.model) for v, p in self._pinned.items()
            }

    def swap_model(
        self, schema: FeatureSchema, tables: Mapping[str, Any], model: DenseModel
    ) -> None:
        """Moves to another model version atomically: its schema, its tables, its dense model.

        The current catalog is encoded for the new tables before the switch; requests in flight
        finish on the version they started with, and every response names its version.
        """
        with self._swap_lock:
            current = self._snapshot
            self._snapshot = _encode(current.catalog, RequestEncoder(schema, tables), model)

    def pin_model(
        self, version: int, schema: FeatureSchema, tables: Mapping[str, Any], model: DenseModel
    ) -> None:
        """Serves exported ``version`` beside the current model, to the requests that name it
        (``RankRequest.model_version``, an experiment arm's): its own schema, tables and dense
        model, the catalog encoded for them. The current model's swaps leave it in place."""
        with self._swap_lock:
            pinned = _encode(self._snapshot.catalog, RequestEncoder(schema, tables), model)
            self._pinned = {**self._pinned, version: pinned}

    @property
    def pinned_versions(self) -> frozenset[int]:
        return frozenset(self._pinned)

    @property
    def catalog(self) -> Catalog:
        return self._snapshot.catalog

    @property
    def encoder(self) -> RequestEncoder:
        return self._snapshot.encoder

    @property
    def model(self) -> DenseModel:
        return self._snapshot.model

    def readiness(self) -> tuple[bool, str]:
        snapshot = self._snapshot
        ready, reason = snapshot.model.readiness()
        catalog = snapshot.catalog
        return (
            ready,
            f"{reason}; catalog {catalog.version or 'loaded'} with {len(catalog)} creatives",
        )

    # --- ranking -------------------------------------------------------------------------

    def rank(self, request: RankRequest) -> RankResponse:
        return self.rank_batch([request])[0]

    def rank_batch(self, requests: Sequence[RankRequest]) -> list[RankResponse]:
        """Ranks several requests with one model call for all their candidates: one call per
        model version where some name a pinned version (:meth:`pin_model`)."""
        snapshot, pinned = self._snapshot, self._pinned  # one read: one catalog and model each
        if all(request.model_version is None for request in requests):
            return self._rank_on(snapshot, requests)
        groups: dict[int | None, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.model_version, []).append(i)
        responses: list[Any] = [None] * len(requests)
        for version, indices in groups.items():
            if version is not None and version not in pinned:
                raise LookupError(f"model version {version} is not pinned in this ranker")
            on = snapshot if version is None else pinned[version]
            ranked = self._rank_on(on, [requests[i] for i in indices])
            for i, response in zip(indices, ranked, strict=True):
                responses[i] = response
        return responses

    def _rank_on(self, snapshot: _Snapshot, requests: Sequence[RankRequest]) -> list[RankResponse]:
        timers = [StageTimer() for _ in requests]
        candidates, inputs = [], []
        for request, timer in zip(requests, timers, strict=True):
            if request.candidate_rows is not None:  # no catalog: the rows are the candidates
                with timer.stage("catalog"):
                    catalog = inline_catalog(request.candidate_rows)
                    rows = np.arange(len(catalog), dtype=np.int64)
                candidates.append(_Candidates(catalog, rows, 0))
                inputs.append(snapshot.encoder.encode_rows(request, catalog.table, timer))
                continue
            with timer.stage("catalog"):
                rows, known = snapshot.catalog.lookup(request.candidates)
            candidates.append(_Candidates(snapshot.catalog, rows, int(len(known) - len(rows))))
            inputs.append(snapshot.encoder.encode(request, snapshot.encoding, rows, timer))
        rates, degraded = self._predict(snapshot, inputs, timers)
        return [
            self._finish(snapshot, *args, degraded)
            for args in zip(requests, candidates, rates, timers, strict=True)
        ]

    def _predict(
        self, snapshot: _Snapshot, inputs: list[ModelInputs], timers: list[StageTimer]
    ) -> tuple[list[Rates], bool]:
        """One model call for every request's candidates; the rates split back per request."""
        sizes = [len(x.dense) for x in inputs]
        start = time.perf_counter()
        degraded = False
        if sum(sizes) == 0:
            empty = np.empty(0, dtype=np.float32)
            rates = Rates(empty, empty, empty)
        else:
            one = len(inputs) == 1
            embeddings = (
                inputs[0].embeddings if one else np.concatenate([x.embeddings for x in inputs])
            )
            dense = inputs[0].dense if one else np.concatenate([x.dense for x in inputs])
            try:
                rates = Rates(*snapshot.model.predict(embeddings, dense))
            except ModelUnavailableError:
                if self.fallback is None:
                    raise
                degraded = True
                rates = Rates(
                    *(
                        np.full(sum(sizes), getattr(self.fallback, name), dtype=np.float32)
                        for name in Rates._fields
                    )
                )
        elapsed = (time.perf_counter() - start) * 1e3
        tasks = snapshot.encoder.schema.tasks
        rates = Rates(  # a head the model was not trained for never scores
            rates.p_ctr,
            rates.p_cvr if "conversion" in tasks else None,
            rates.p_neg if "negative" in tasks else None,
        )
        bounds = itertools.pairwise(np.cumsum([0, *sizes]))
        for timer in timers:  # one shared call: each request waited for all of it
            timer.ms["model"] = elapsed
        return [Rates(*(None if r is None else r[a:b] for r in rates)) for a, b in bounds], degraded

    def _finish(
        self,
        snapshot: _Snapshot,
        request: RankRequest,
        candidates: _Candidates,
        rates: Rates,
        timer: StageTimer,
        degraded: bool,
    ) -> RankResponse:
        catalog, rows = candidates.catalog, candidates.rows
        model_version = snapshot.model.version
        if self.online is not None:  # the online learner's click rate (adrank.online.serving)
            with timer.stage("model"):
                rates, model_version = self.online.rescore(
                    request, catalog, rows, rates, model_version
                )
        config = self.scoring_config if request.scoring is None else request.scoring
        explore = self.exploration if request.exploration is None else request.exploration
        with timer.stage("scoring"):  # the callbacks the pass needs, in Python
            pacing = (
                None
                if self.pacing is None
                else np.asarray(self.pacing(catalog.campaign_id[rows]), dtype=np.float64)
            )
            killed = (
                None
                if self.killed is None
                else np.asarray(
                    self.killed(catalog.advertiser_id[rows], catalog.campaign_id[rows]), dtype=bool
                )
            )
            if self.safety is not None:  # blocked by the region's content-safety rules
                unsafe = self.safety.blocked(catalog, rows, request.region, request.user)
                if unsafe is not None:
                    killed = unsafe if killed is None else killed | unsafe
            p_neg, boost, p_cvr = rates.p_neg, None, rates.p_cvr
            if config.value == "incremental":  # oCPM bids for incremental conversions
                _check_uplift(config, self.uplift)
                uplift = self.uplift.uplift(request, catalog, rows)
                p_cvr = scoring.incremental_conversion_rate(uplift, rates.p_ctr)
            if self.cold_start is not None:  # estimate and exploration (experiments.cold_start)
                ids, objective = catalog.creative_id[rows], catalog.objective[rows]
                boost = self.cold_start.boost(ids, objective, rates.p_ctr, request.request_id)
                pacing, p_neg = boost.apply(pacing, p_neg)
        with timer.stage("selection"):  # scoring, eligibility, selection and pricing, native
            columns = (
                snapshot.columns
                if catalog is snapshot.catalog
                else _auction_catalog(catalog)  # the request's own rows
            )
            winners, ecpm, price = ops.auction(
                columns,
                rows,
                rates.p_ctr,
                p_cvr,  # None: oCPM campaigns cannot be valued, so are not eligible
                p_neg,  # None: no negative-feedback penalty
                k=request.k if explore is None else max(request.k, explore.pool),
                reserve_ecpm=config.reserve_ecpm,
                neg_penalty=config.neg_penalty,
                max_per_advertiser=(
                    request.constraints.max_per_advertiser
                    or self.selection_config.max_per_advertiser
                ),
                region_bit=int(catalog.region_bit(request.region)),
                pacing=pacing,
                killed=killed,
                blocked_categories=self._blocked_categories(request),
                recently_seen=request.recently_seen,
                frequency_cap=(
                    request.constraints.frequency_cap or self.selection_config.frequency_cap
                ),
            )
            if boost is not None:
                ecpm = boost.selected(winners, ecpm)  # and the counts told
            propensity = pool = None
            if explore is not None:
                pool = (winners, ecpm, price)
                order, propensity = explore.draw(ecpm, request.k, request_seed(request.request_id))
                winners, ecpm, price = winners[order], ecpm[order], price[order]
            kept, slot = self._ad_load(request, ecpm)
            winners, ecpm, price = winners[kept], ecpm[kept], price[kept]
        timer.ms["pricing"] = 0.0  # priced inside the pass, timed with "selection"
        winner_rows = rows[winners]
        return RankResponse(
            request_id=request.request_id,
            model_version=model_version,
            creative_id=catalog.creative_id[winner_rows],
            campaign_id=catalog.campaign_id[winner_rows],
            advertiser_id=catalog.advertiser_id[winner_rows],
            p_ctr=rates.p_ctr[winners],
            p_cvr=None if rates.p_cvr is None else rates.p_cvr[winners],
            p_neg=None if rates.p_neg is None else rates.p_neg[winners],
            ecpm=ecpm,
            price=price,
            timings_ms={stage: round(timer.ms.get(stage, 0.0), 4) for stage in STAGES},
            unknown_candidates=candidates.unknown,
            degraded=degraded,
            slot=slot,
            propensity=None if propensity is None else propensity[kept],
            pool=None if pool is None else _pool(catalog, rows, rates, *pool),
        )

    def _ad_load(
        self, request: RankRequest, ecpm: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Which of the winners (in rank order, ``ecpm`` [k']) are shown, and their feed slots."""
        placement = request.context.get("placement")
        placement = placement if isinstance(placement, str) else None
        cap = 1.0 if self.ad_load is None else float(self.ad_load(placement, request.region))
        feed = request.feed
        if feed is None:
            return np.arange(min(len(ecpm), math.floor(cap * request.k + 1e-9))), None
        rules = self.allocation.rules_for(placement, request.region, cap)
        values = feed.values if len(feed.values) else np.zeros(feed.length)
        mixed = build_feed(values, ecpm, rules, feed.length)
        return mixed.placed_ads, mixed.ad_slots

    def _blocked_categories(self, request: RankRequest) -> np.ndarray | None:
        """The categories blocked for ``request`` (its own and its region's); None if none.
        The other rules (status, kill switches, region, frequency caps, spent budgets) are
        applied by the auction pass from the columns and the request."""
        by_region = self.selection_config.blocked_categories
        regional = by_region.get(request.region, ()) if request.region is not None else ()
        own = request.constraints.blocked_categories
        if not own and not regional:
            return None
        return np.fromiter({*own, *regional}, dtype=np.int64)


def _check_uplift(config: scoring.ScoringConfig, uplift: Any) -> None:
    if config.value == "incremental" and uplift is None:
        raise ValueError(
            "scoring_config.value 'incremental' needs an uplift model: pass uplift= (an "
            "adrank.uplift.UpliftScorer) to the Ranker"
        )


def _pool(
    catalog: Catalog,
    rows: np.ndarray,
    rates: Rates,
    winners: np.ndarray,
    ecpm: np.ndarray,
    price: np.ndarray,
) -> dict[str, np.ndarray]:
    """The exploration pool's columns (rank order), for the request log."""
    picked = rows[winners]
    return {
        "creative_id": catalog.creative_id[picked],
        "campaign_id": catalog.campaign_id[picked],
        "objective": catalog.objective[picked].astype(np.int8),
        "ecpm": ecpm,
        "price": price,
        **{
            name: getattr(rates, name)[winners].astype(np.float64)
            for name in Rates._fields
            if getattr(rates, name) is not None
        },
    }


def _encode(catalog: Catalog, encoder: RequestEncoder, model: DenseModel) -> _Snapshot:
    encoding = encoder.encode_catalog(catalog)
    return _Snapshot(catalog, encoder, encoding, model, _auction_catalog(catalog))


def _auction_catalog(catalog: Catalog) -> Any:
    """The columns the auction pass reads, checked once per catalog."""
    return ops.auction_catalog(
        catalog.creative_id,
        catalog.advertiser_id,
        catalog.category,
        catalog.objective,
        catalog.bid,
        catalog.target_cpa,
        catalog.region_mask,
        catalog.active,
        catalog.ad_id,  # None: each creative is its own ad (no second group in the pass)
    )
