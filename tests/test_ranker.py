"""adrank.Ranker against a plain reference: the training pipeline, numpy lookups, the same
dense module in torch, the documented formulas and a greedy selection loop.

The model is an in-process stand-in (the dense module run with torch), so these tests check
the orchestration itself; tests/test_service_e2e.py runs the same path through Triton and HTTP.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pyarrow as pa
import pytest
import torch

from adrank import EmbeddingTable
from adrank.data import SyntheticConfig, generate_log
from adrank.data.catalog import catalog_table
from adrank.features import FeaturePipeline, load_schema
from adrank.orchestrator.catalog import Catalog
from adrank.orchestrator.errors import ModelUnavailableError
from adrank.orchestrator.ranker import FallbackRates, Ranker, SelectionConfig
from adrank.orchestrator.request import Constraints, RankRequest
from adrank.orchestrator.scoring import Objective, ScoringConfig
from adrank.pacing import PacingService, SpendEvent, SQLitePacingStore
from adrank.traffic import SQLiteTrafficStore, TrafficControl
from adrank.triton.testing import DemoDenseRanker
from reference import pooled_embeddings_ref

WORLD = SyntheticConfig(
    num_advertisers=12, num_campaigns=40, num_creatives=400, num_users=200, num_categories=8
)
SCORING = ScoringConfig(reserve_ecpm=0.5, neg_penalty=0.2)


class InProcessModel:
    """The stand-in: the dense module in torch; can be switched off like a dead Triton."""

    version = "stand-in/1"

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module.eval()
        self.down = False
        self.calls = 0

    def predict(self, embeddings, dense):
        if self.down:
            raise ModelUnavailableError("Triton did not answer within 100 ms")
        self.calls += 1
        self.last_inputs = (embeddings.copy(), dense.copy())
        with torch.no_grad():
            out = self.module(torch.from_numpy(embeddings), torch.from_numpy(dense))
        return tuple(t.numpy().ravel() for t in out)

    def readiness(self):
        return (not self.down, "stand-in")


def random_tables(schema, seed: int) -> dict[str, EmbeddingTable]:
    rng = np.random.default_rng(seed)
    return {
        name: EmbeddingTable(rng.normal(0, 0.3, (spec.num_buckets, spec.dim)).astype(np.float32))
        for name, spec in schema.tables.items()
    }


def while_serving(ranker, request, change, check) -> list[Exception]:
    """Runs ``change()`` while two threads rank ``request`` and ``check`` each answer; the
    errors they met."""
    errors, done = [], threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                check(ranker.rank(request))
            except Exception as error:  # pragma: no cover - reported by the caller
                errors.append(error)

    threads = [threading.Thread(target=serve) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        change()
    finally:
        done.set()
        for t in threads:
            t.join(timeout=30)
    return errors


@pytest.fixture(scope="module")
def world():
    log = generate_log(2000, seed=7, config=WORLD)
    schema = load_schema()
    tables = random_tables(schema, 0)
    module = DemoDenseRanker(schema.embedding_dim, schema.dense_dim, seed=3)
    table = catalog_table(log, paused_share=0.2, seed=1)
    return log, schema, tables, module, table


@pytest.fixture
def ranker(world):
    _, schema, tables, module, table = world
    return Ranker(
        schema,
        tables,
        InProcessModel(module),
        Catalog.from_arrow(table),
        scoring_config=SCORING,
        selection_config=SelectionConfig(max_per_advertiser=2, frequency_cap=2),
    )


def make_request(world, candidates, *, user=0, k=10, **kwargs) -> RankRequest:
    log = world[0]
    row = log.users.slice(user, 1).to_pylist()[0]
    return RankRequest(
        request_id=f"r{user}",
        user=row,
        context={"placement": "feed", "hour": 20, "network": "wifi"},
        candidates=np.asarray(candidates, dtype=np.int64),
        k=k,
        region=kwargs.pop("region", row["country"]),
        **kwargs,
    )


# --- the reference ---------------------------------------------------------------------------


def reference_rates(world, request: RankRequest, rows: np.ndarray):
    """Training-time encoding of (user, context, candidate) rows + numpy lookup + torch."""
    _, schema, tables, module, table = world
    catalog = Catalog.from_arrow(table)
    candidates = catalog.table.take(rows)
    columns = {name: candidates[name] for name in candidates.column_names}
    for key, value in {**request.user, **request.context}.items():
        columns[key] = pa.array([value] * len(rows))
    batch = FeaturePipeline(schema)(columns, with_labels=False)
    embeddings = pooled_embeddings_ref(tables, schema, batch)
    with torch.no_grad():
        out = module(torch.from_numpy(embeddings), torch.from_numpy(batch.dense))
    return catalog, [t.numpy().ravel().astype(np.float64) for t in out]


def reference_ranking(world, request: RankRequest, selection: SelectionConfig):
    catalog = Catalog.from_arrow(world[4])
    ids = request.candidates
    known = np.isin(ids, catalog.creative_id)
    rows = np.searchsorted(catalog.creative_id, ids[known])
    catalog, (ctr, cvr, neg) = reference_rates(world, request, rows)
    scores, factors, own = [], [], []
    for j, row in enumerate(rows):
        objective = Objective(catalog.objective[row])
        bid, cpa = catalog.bid[row], catalog.target_cpa[row]
        per_bid = {
            Objective.CPM: 1.0,
            Objective.CPC: ctr[j] * 1000,
            Objective.OCPM: ctr[j] * cvr[j] * 1000,
        }
        own.append(cpa if objective is Objective.OCPM else bid)
        factors.append(per_bid[objective])
        scores.append(own[-1] * per_bid[objective] - SCORING.neg_penalty * neg[j] * 1000)
    seen = {c: list(request.recently_seen).count(c) for c in set(request.recently_seen.tolist())}
    cap = request.constraints.max_per_advertiser or selection.max_per_advertiser
    blocked = set(request.constraints.blocked_categories) | set(
        selection.blocked_categories.get(request.region, ())
    )
    taken, per_advertiser = [], {}
    order = sorted(range(len(rows)), key=lambda j: (-np.float32(scores[j]), j))
    for j in order:
        row = rows[j]
        region_ok = catalog.region_mask[row] == np.uint64(2**64 - 1) or bool(
            catalog.region_mask[row] & catalog.region_bit(request.region)
        )
        eligible = (
            catalog.active[row]
            and region_ok
            and catalog.category[row] not in blocked
            and seen.get(int(catalog.creative_id[row]), 0) < selection.frequency_cap
            and scores[j] >= SCORING.reserve_ecpm
            and per_advertiser.get(catalog.advertiser_id[row], 0) < cap
        )
        if eligible:
            taken.append(j)
            per_advertiser[catalog.advertiser_id[row]] = (
                per_advertiser.get(catalog.advertiser_id[row], 0) + 1
            )
        if len(taken) == request.k + 1:
            break
    winners, runner_up = taken[: request.k], taken[request.k :]
    prices = []
    for i, j in enumerate(winners):
        following = (
            winners[i + 1] if i + 1 < len(winners) else (runner_up[0] if runner_up else None)
        )
        next_score = SCORING.reserve_ecpm if following is None else scores[following]
        penalty = SCORING.neg_penalty * neg[j] * 1000
        least = (
            (max(next_score, SCORING.reserve_ecpm) + penalty) / factors[j]
            if factors[j] > 0
            else np.inf
        )
        prices.append(min(own[j], least))
    chosen = catalog.creative_id[rows[winners]]
    return chosen, np.array([scores[j] for j in winners]), np.array(prices), ctr[winners]


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("user", [0, 1, 2, 3])
def test_ranking_equals_the_training_pipeline_reference(world, ranker, user) -> None:
    catalog_ids = Catalog.from_arrow(world[4]).creative_id
    rng = np.random.default_rng(user)
    candidates = rng.choice(catalog_ids, 300, replace=False)
    request = make_request(world, candidates, user=user, k=12)
    response = ranker.rank(request)
    chosen, scores, prices, ctr = reference_ranking(world, request, ranker.selection_config)
    np.testing.assert_array_equal(response.creative_id, chosen)
    np.testing.assert_allclose(response.p_ctr, ctr, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(response.ecpm, scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(response.price, prices, rtol=1e-5, atol=1e-6)
    assert set(response.timings_ms) == {
        "catalog",
        "features",
        "embeddings",
        "model",
        "scoring",
        "selection",
        "pricing",
    }
    assert response.model_version == "stand-in/1"


def reference_inputs(world, request: RankRequest, rows: np.ndarray):
    """EMBEDDINGS and DENSE of ``rows`` as the training pipeline builds them."""
    _, schema, tables, _, table = world
    candidates = Catalog.from_arrow(table).table.take(rows)
    columns = {name: candidates[name] for name in candidates.column_names}
    for key, value in {**request.user, **request.context}.items():
        columns[key] = pa.array([value] * len(rows))
    batch = FeaturePipeline(schema)(columns, with_labels=False)
    return pooled_embeddings_ref(tables, schema, batch), batch.dense


@pytest.mark.parametrize("memo", ["memoized", "per_cross", "per_request", "tiny_memo"])
def test_model_inputs_equal_the_training_pipeline(world, monkeypatch, memo) -> None:
    """Request-value memo and cross memo (hits, misses, overflow) and the per-request path."""
    import adrank.orchestrator.crosses as crosses
    import adrank.orchestrator.request_fields as request_fields

    if memo == "per_request":
        monkeypatch.setattr(crosses, "MEMO_MAX_GROUPS", 0)
    if memo == "tiny_memo":
        monkeypatch.setattr(crosses, "MEMO_MAX_BYTES", 3 * 1024)
        monkeypatch.setattr(request_fields, "MEMO_CAPACITY", 5)
    _, schema, tables, module, table = world
    catalog = Catalog.from_arrow(table)
    model = InProcessModel(module)
    ranker = Ranker(schema, tables, model, catalog)
    if memo == "per_cross":  # as when the crosses' widths differ: one gather per cross
        monkeypatch.setattr(ranker.encoder._crosses, "_one_block", False)
    rng = np.random.default_rng(11)
    for user in [0, 1, 2, 0, 3, 1]:  # repeats: the second time comes from the memos
        candidates = rng.choice(catalog.creative_id, 200, replace=False)
        request = make_request(world, candidates, user=user)
        ranker.rank(request)
        embeddings, dense = reference_inputs(world, request, catalog.lookup(candidates)[0])
        np.testing.assert_allclose(model.last_inputs[0], embeddings, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(model.last_inputs[1], dense)


def test_unknown_candidates_are_dropped_and_counted(world, ranker) -> None:
    known = Catalog.from_arrow(world[4]).creative_id[:50]
    request = make_request(world, [*known, 1, 2, 3], k=5)
    response = ranker.rank(request)
    assert response.unknown_candidates == 3
    assert set(response.creative_id) <= set(known)
    empty = ranker.rank(make_request(world, [1, 2, 3], k=5))
    assert len(empty) == 0
    assert empty.unknown_candidates == 3


def test_business_rules_hold(world, ranker) -> None:
    catalog = Catalog.from_arrow(world[4])
    ids = catalog.creative_id
    top = ranker.rank(make_request(world, ids, k=30))
    rows = np.searchsorted(ids, top.creative_id)
    assert catalog.active[rows].all()  # paused campaigns never win
    assert np.bincount(np.unique(top.advertiser_id, return_inverse=True)[1]).max() <= 2
    region_bit = catalog.region_bit(make_request(world, ids).region)
    masks = catalog.region_mask[rows]
    assert ((masks == np.uint64(2**64 - 1)) | ((masks & region_bit) != 0)).all()
    assert (
        top.price
        <= np.where(
            catalog.objective[rows] == Objective.OCPM, catalog.target_cpa[rows], catalog.bid[rows]
        )
        + 1e-9
    ).all()
    assert (top.ecpm >= SCORING.reserve_ecpm).all()
    assert (np.diff(top.ecpm) <= 1e-9).all()  # rank order

    # Blocked categories and a tighter cap, from the request.
    category = int(catalog.category[rows[0]])
    constrained = ranker.rank(
        make_request(
            world,
            ids,
            k=30,
            constraints=Constraints(max_per_advertiser=1, blocked_categories=(category,)),
        )
    )
    constrained_rows = np.searchsorted(ids, constrained.creative_id)
    assert category not in set(catalog.category[constrained_rows].tolist())
    assert len(set(constrained.advertiser_id.tolist())) == len(constrained)

    # Frequency cap 2: a creative seen twice is not shown again; seen once, it still may be.
    first = int(top.creative_id[0])
    again = ranker.rank(make_request(world, ids, k=30, recently_seen=np.array([first, first])))
    assert first not in again.creative_id
    once = ranker.rank(make_request(world, ids, k=30, recently_seen=np.array([first])))
    assert once.creative_id[0] == first


def test_blocked_categories_by_region_from_the_settings(world) -> None:
    _, schema, tables, module, table = world
    catalog = Catalog.from_arrow(table)
    request = make_request(world, catalog.creative_id, k=40)
    blocked = {request.region: tuple(range(4))}
    ranker = Ranker(
        schema,
        tables,
        InProcessModel(module),
        catalog,
        selection_config=SelectionConfig(blocked_categories=blocked),
    )
    rows = np.searchsorted(catalog.creative_id, ranker.rank(request).creative_id)
    assert (catalog.category[rows] >= 4).all()


def test_kill_switches_take_effect_on_the_next_request(world, tmp_path) -> None:
    _, schema, tables, module, table = world
    catalog = Catalog.from_arrow(table)
    traffic = TrafficControl(SQLiteTrafficStore(tmp_path / "traffic.sqlite"))
    ranker = Ranker(schema, tables, InProcessModel(module), catalog, killed=traffic.blocked)
    request = make_request(world, catalog.creative_id, k=20)
    first = ranker.rank(request)
    advertiser, campaign = int(first.advertiser_id[0]), int(first.campaign_id[-1])
    traffic.kill_advertiser(advertiser, "policy review")
    traffic.kill_campaign(campaign)
    after = ranker.rank(request)
    assert advertiser not in after.advertiser_id
    assert campaign not in after.campaign_id
    traffic.revive_advertiser(advertiser)
    traffic.revive_campaign(campaign)
    np.testing.assert_array_equal(ranker.rank(request).creative_id, first.creative_id)


def test_a_spent_budget_stops_the_campaign_at_once(world) -> None:
    _, schema, tables, module, table = world
    catalog = Catalog.from_arrow(table)
    now = 1_767_225_600.0  # 2026-01-01 00:00 UTC
    pacing = PacingService(SQLitePacingStore(":memory:"))
    ranker = Ranker(
        schema,
        tables,
        InProcessModel(module),
        catalog,
        pacing=lambda campaigns: pacing.multipliers(campaigns, now),
    )
    request = make_request(world, catalog.creative_id, k=20)
    campaign = int(ranker.rank(request).campaign_id[0])
    pacing.set_budget(campaign, 10.0, now)
    pacing.record_events([SpendEvent("e1", campaign, "impression", 10.0, now)])
    assert campaign not in ranker.rank(request).campaign_id


def test_model_down_raises_or_degrades(world) -> None:
    _, schema, tables, module, table = world
    model = InProcessModel(module)
    model.down = True
    catalog = Catalog.from_arrow(table)
    plain = Ranker(schema, tables, model, catalog)
    request = make_request(world, catalog.creative_id[:100], k=5)
    with pytest.raises(ModelUnavailableError, match="did not answer"):
        plain.rank(request)
    assert plain.readiness()[0] is False
    fallback = FallbackRates(p_ctr=0.05, p_cvr=0.1, p_neg=0.01)
    degraded = Ranker(schema, tables, model, catalog, fallback=fallback).rank(request)
    assert degraded.degraded
    assert len(degraded) == 5
    np.testing.assert_allclose(degraded.p_ctr, 0.05)


def test_rank_batch_equals_single_requests_with_one_model_call(world, ranker) -> None:
    ids = Catalog.from_arrow(world[4]).creative_id
    requests = [make_request(world, ids[i * 50 : i * 50 + 120], user=i, k=6) for i in range(4)]
    singles = [ranker.rank(r) for r in requests]
    calls = ranker.model.calls
    batch = ranker.rank_batch(requests)
    assert ranker.model.calls == calls + 1
    for one, many in zip(singles, batch, strict=True):
        np.testing.assert_array_equal(one.creative_id, many.creative_id)
        np.testing.assert_allclose(one.price, many.price, rtol=1e-6)


def test_catalog_swap_under_load_fails_no_request(world, ranker) -> None:
    table = world[4]
    ids = Catalog.from_arrow(table).creative_id
    other = table.set_column(
        table.column_names.index("bid"), "bid", pa.compute.multiply(table["bid"], 2.0)
    )
    snapshots = [Catalog.from_arrow(other, version="v2"), Catalog.from_arrow(table, version="v1")]

    def swaps() -> None:
        for i in range(6):
            ranker.swap_catalog(snapshots[i % 2])

    def five(response) -> None:
        assert len(response) == 5

    assert not while_serving(ranker, make_request(world, ids[:200], k=5), swaps, five)
    assert ranker.catalog.version == "v1"


def test_settings_are_validated(world) -> None:
    _, schema, _, module, table = world
    with pytest.raises(ValueError, match="max_per_advertiser must be >= 1"):
        SelectionConfig(max_per_advertiser=0)
    with pytest.raises(ValueError, match="frequency_cap must be >= 1"):
        SelectionConfig(frequency_cap=0)
    with pytest.raises(ValueError, match="fallback p_ctr must be in"):
        FallbackRates(1.5, 0.1, 0.1)
    with pytest.raises(ValueError, match="tables is missing embedding tables"):
        Ranker(schema, {}, InProcessModel(module), Catalog.from_arrow(table))
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        make_request(world, [1], k=0)
    with pytest.raises(ValueError, match="candidates must be a 1-D array"):
        make_request(world, [[1]])
    with pytest.raises(ValueError, match=r"constraints\.frequency_cap must be"):
        Constraints(frequency_cap=0)


# --- ad load and the feed --------------------------------------------------------------------


def test_an_ad_load_cap_bounds_the_ads_returned(world) -> None:
    _, schema, tables, module, table = world
    catalog = Catalog.from_arrow(table)
    caps = {("feed", None): 0.0}
    ranker = Ranker(
        schema,
        tables,
        InProcessModel(module),
        catalog,
        ad_load=lambda placement, region: caps.get((placement, None), 1.0),
    )
    request = make_request(world, catalog.creative_id, k=8)
    assert len(ranker.rank(request)) == 0  # a cap of 0: no ads at all
    caps[("feed", None)] = 0.5
    capped = ranker.rank(request)
    del caps[("feed", None)]
    free = ranker.rank(request)
    assert len(free) == 8
    assert len(capped) == 4  # floor(0.5 * k): the best four, priced as without the cap
    np.testing.assert_array_equal(capped.creative_id, free.creative_id[:4])
    np.testing.assert_allclose(capped.price, free.price[:4])
    assert capped.slot is None


def test_a_feed_places_ads_by_the_allocation_rules(world) -> None:
    from adrank.allocation import AllocationPolicy, AllocationRules, build_feed
    from adrank.orchestrator.request import OrganicFeed

    _, schema, tables, module, table = world
    catalog = Catalog.from_arrow(table)
    rules = AllocationRules(first_ad_position=1, min_gap=2, max_ad_share=0.3)
    cap: dict[str, float] = {}
    ranker = Ranker(
        schema,
        tables,
        InProcessModel(module),
        catalog,
        scoring_config=SCORING,
        ad_load=lambda placement, region: cap.get(region, 1.0),
        allocation=AllocationPolicy(default=rules),
    )
    request = make_request(world, catalog.creative_id, k=8)
    free = ranker.rank(request)
    assert len(free) == 8
    slots_only = ranker.rank(dataclasses.replace(request, feed=OrganicFeed(slots=10)))
    # Slots 1, 4, 7 (first position 1, two organic items between ads, floor(0.3 * 10) = 3).
    assert slots_only.slot.tolist() == [1, 4, 7]
    np.testing.assert_array_equal(slots_only.creative_id, free.creative_id[:3])

    # Organic values: an ad goes in only where it is worth more than the item it displaces.
    organic = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    valued = ranker.rank(dataclasses.replace(request, feed=OrganicFeed(values=organic)))
    expected = build_feed(organic, free.ecpm, rules)
    assert valued.slot.tolist() == expected.ad_slots.tolist()
    np.testing.assert_array_equal(valued.creative_id, free.creative_id[expected.placed_ads])

    # The region's ad-load cap lowers the share: floor(0.2 * 10) = 2 ads.
    cap[request.region] = 0.2
    capped = ranker.rank(dataclasses.replace(request, feed=OrganicFeed(slots=10)))
    assert capped.slot.tolist() == [1, 4]
    with pytest.raises(ValueError, match="feed needs values or slots"):
        OrganicFeed()
    with pytest.raises(ValueError, match=r"feed\.values must be"):
        OrganicFeed(values=np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=r"feed\.slots must be"):
        OrganicFeed(slots=-1)


# --- model versions --------------------------------------------------------------------------


def test_a_model_swap_under_load_fails_no_request(world, ranker) -> None:
    """Requests in flight finish on their version; every response names the one that scored it."""
    _, schema, tables, _, table = world
    ids = Catalog.from_arrow(table).creative_id
    other_tables = random_tables(schema, 5)
    other = InProcessModel(DemoDenseRanker(schema.embedding_dim, schema.dense_dim, seed=9))
    other.version = "stand-in/2"
    first = ranker.model
    request = make_request(world, ids[:200], k=5)
    expected = {"stand-in/1": ranker.rank(request).creative_id.tolist()}
    versions = []

    def swaps() -> None:
        for i in range(4):
            if i % 2 == 0:
                ranker.swap_model(schema, other_tables, other)
                expected.setdefault("stand-in/2", ranker.rank(request).creative_id.tolist())
            else:
                ranker.swap_model(schema, tables, first)  # rollback is the same call

    def record(response) -> None:
        versions.append((response.model_version, response.creative_id.tolist()))

    assert not while_serving(ranker, request, swaps, record)
    assert {v for v, _ in versions} <= set(expected)
    for version, chosen in versions:  # never a mix of one version's tables and another's model
        assert chosen == expected[version]
    assert ranker.model is first


# --- trained heads ---------------------------------------------------------------------------


def test_only_trained_heads_score(world) -> None:
    """A click-only model: no conversion or negative rate is served, even though the stand-in
    module answers all three; no penalty; oCPM campaigns are not eligible."""
    _, schema, tables, module, table = world
    catalog = Catalog.from_arrow(table)
    click_only = dataclasses.replace(schema, labels={"click": schema.labels["click"]})
    assert click_only.tasks == ("click",)
    ranker = Ranker(click_only, tables, InProcessModel(module), catalog, scoring_config=SCORING)
    full = Ranker(schema, tables, InProcessModel(module), catalog, scoring_config=SCORING)
    request = make_request(world, catalog.creative_id, k=20)
    response = ranker.rank(request)
    assert len(response) > 0
    assert response.p_cvr is None
    assert response.p_neg is None
    rows = catalog.lookup(response.creative_id)[0]
    assert (catalog.objective[rows] != Objective.OCPM).all()
    # With every head: the same creatives score with the penalty subtracted.
    scored = full.rank(dataclasses.replace(request, candidates=response.creative_id, k=50))
    with_penalty = dict(zip(scored.creative_id.tolist(), scored.ecpm, strict=True))
    penalty = {
        c: SCORING.neg_penalty * 1000.0 * p
        for c, p in zip(scored.creative_id.tolist(), scored.p_neg, strict=True)
    }
    for creative, ecpm in zip(response.creative_id.tolist(), response.ecpm, strict=True):
        if creative in with_penalty:
            assert ecpm == pytest.approx(with_penalty[creative] + penalty[creative], rel=1e-5)


# --- candidates given in the request (no catalog) --------------------------------------------


def test_candidates_given_as_rows_rank_as_the_catalog_does(world, ranker) -> None:
    catalog = Catalog.from_arrow(world[4])
    ids = np.random.default_rng(3).choice(catalog.creative_id, 200, replace=False)
    request = make_request(world, ids, k=10)
    by_ids = ranker.rank(request)
    rows = catalog.table.take(catalog.lookup(ids)[0])
    inline = dataclasses.replace(request, candidates=np.empty(0, np.int64), candidate_rows=rows)
    by_rows = ranker.rank(inline)
    np.testing.assert_array_equal(by_rows.creative_id, by_ids.creative_id)
    np.testing.assert_allclose(by_rows.ecpm, by_ids.ecpm, rtol=1e-6)
    np.testing.assert_allclose(by_rows.price, by_ids.price, rtol=1e-6)
    with pytest.raises(ValueError, match="give candidates or candidate_rows, not both"):
        dataclasses.replace(request, candidate_rows=rows)


def test_a_model_without_a_catalog_ranks_rows_of_raw_values() -> None:
    """A Criteo-style schema (every field describes the impression): each candidate is a row of
    raw values; a column the rows leave out takes the request's value; the model's inputs equal
    the training pipeline's on the same rows."""
    from adrank.features import criteo_schema_path

    schema = load_schema(criteo_schema_path())
    rng = np.random.default_rng(4)
    tables = random_tables(schema, 4)
    model = InProcessModel(DemoDenseRanker(schema.embedding_dim, schema.dense_dim, seed=5))
    ranker = Ranker(schema, tables, model)  # no catalog: candidates come as rows
    count = 50
    features = {f"I{i}": rng.integers(0, 100, count).astype(float) for i in range(1, 14)}
    features |= {f"C{i}": [f"{v:08x}" for v in rng.integers(0, 50, count)] for i in range(1, 27)}
    features["I5"][:10] = np.nan  # missing values stay missing
    del features["C2"]  # the request gives it
    ids = rng.permutation(np.arange(1000, 1000 + count))
    rows = pa.table(
        {
            "creative_id": ids,
            "bid": rng.uniform(0.5, 2.0, count),
            "objective": ["CPC"] * count,
            **features,
        }
    )
    context = {"C2": "0000000a"}
    request = RankRequest("c1", {}, context, np.empty(0, np.int64), 5, candidate_rows=rows)
    response = ranker.rank(request)
    assert len(response) == 5
    assert response.p_cvr is None  # the Criteo schema has a click label only

    ordered = rows.sort_by("creative_id")  # the request's catalog is sorted by creative id
    columns = {name: ordered[name] for name in ordered.column_names}
    batch = FeaturePipeline(schema)(
        {**columns, "C2": pa.array([context["C2"]] * count)}, with_labels=False
    )
    np.testing.assert_allclose(
        model.last_inputs[0], pooled_embeddings_ref(tables, schema, batch), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_array_equal(model.last_inputs[1], batch.dense)
    with pytest.raises(ValueError, match="candidate_rows is missing required columns: bid"):
        ranker.rank(
            RankRequest("c2", {}, {}, np.empty(0, np.int64), 5, candidate_rows=rows.drop(["bid"]))
        )


def test_a_k_far_above_the_candidates_returns_them_all(world, ranker) -> None:
    ids = Catalog.from_arrow(world[4]).creative_id[:40]
    huge = ranker.rank(make_request(world, ids, k=10_000_000))
    assert 0 < len(huge) <= 40
    np.testing.assert_array_equal(
        huge.creative_id, ranker.rank(make_request(world, ids, k=40)).creative_id
    )


def test_candidate_rows_must_be_a_table_of_integer_ids(world) -> None:
    base = make_request(world, [], k=3)
    with pytest.raises(TypeError, match=r"candidate_rows must be a pyarrow\.Table, got dict"):
        dataclasses.replace(base, candidate_rows={"creative_id": [1]})
    rows = pa.table({"creative_id": ["a"], "bid": [1.0], "objective": ["CPC"]})
    with pytest.raises(ValueError, match="candidate_rows column creative_id must hold integers"):
        dataclasses.replace(base, candidate_rows=rows)
    with pytest.raises(ValueError, match="candidate_rows is missing required columns: creative_id"):
        dataclasses.replace(base, candidate_rows=pa.table({"bid": [1.0]}))
