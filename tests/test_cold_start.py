"""Cold start: the click-rate estimate, exploration's bounds (share of traffic, revenue per
exploring request, the minimum exposure) through the real Ranker, exploration within an ad,
the counts fed by ``POST /v1/events``, and the simulated day on a small world.

Glossary: a *twin* is the same :class:`ColdStart` over the same counts with exploration off,
so a request ranked by both differs only by exploration.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fastapi.testclient import TestClient

from adrank.experiments.cold_start import ColdStart, ColdStartConfig, ImpressionCounts
from adrank.orchestrator.catalog import Catalog
from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker
from adrank.orchestrator.scoring import Objective
from adrank.pacing import PacingService, SQLitePacingStore
from adrank.service.app import create_app
from adrank.service.control import make_control_router
from adrank.simulation.cold_start import run_cold_start
from adrank.simulation.world import DAY_START
from adrank.traffic import SQLiteTrafficStore, TrafficControl
from adrank.workspace import user_request
from experiment_world import ranker, world

NOON = DAY_START + 12 * 3600


@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        ({"min_impressions": 1.5}, TypeError, "min_impressions must be an int"),
        ({"min_impressions": -1}, ValueError, "min_impressions must be >= 0"),
        ({"traffic_share": 1.5}, ValueError, r"traffic_share must be in \[0, 1\]"),
        ({"max_revenue_loss": 1.0}, ValueError, r"max_revenue_loss must be in \[0, 1\)"),
        ({"prior_strength": 0.0}, ValueError, "prior_strength must be a number > 0"),
        ({"confidence": -1.0}, ValueError, "confidence must be a number >= 0"),
        ({"method": "greedy"}, ValueError, "method must be one of ucb, thompson"),
    ],
)
def test_bad_settings_are_named(settings, error, match) -> None:
    with pytest.raises(error, match=match):
        ColdStartConfig(**settings)


def test_counts_add_up_and_clicks_wait_for_their_impressions() -> None:
    counts = ImpressionCounts()
    n, c, served = counts.lookup(np.array([1, 2]))
    assert n.tolist() == [0, 0]
    assert c.tolist() == [0, 0]
    assert np.isnan(served).all()
    counts.record([5, 3, 5], [1, 1, 1], [1, 0, 0])
    counts.record(np.array([7]), [0], [2])  # clicks reported before their impressions
    counts.served([5, 5, 3], [0.1, 0.3, 0.05])
    n, c, served = counts.lookup(np.array([5, 3, 7, 4]))
    assert n.tolist() == [2, 1, 0, 0]
    assert c.tolist() == [1, 0, 0, 0]
    np.testing.assert_allclose(served, [0.2, 0.05, np.nan, np.nan])
    counts.record([7], [3], [0])
    assert counts.lookup(np.array([7]))[1].tolist() == [2]
    assert len(counts) == 3
    with pytest.raises(ValueError, match="one value per creative, got 2, 1 and 2"):
        counts.record([1, 2], [1], [0, 0])
    with pytest.raises(ValueError, match="impressions and clicks must be >= 0"):
        counts.record([1], [-1], [0])
    with pytest.raises(ValueError, match="creative_ids and p_ctr must have one value per"):
        counts.served([1, 2], [0.1])
    with pytest.raises(ValueError, match=r"p_ctr must be rates in \[0, 1\]"):
        counts.served([1], [1.5])


def test_the_estimate_is_the_posterior_mean_around_the_model() -> None:
    cold = ColdStart(ColdStartConfig(prior_strength=50.0))
    cold.counts.record([1, 2], [150, 0], [30, 0])
    estimate = cold.estimate(np.array([1, 2, 3]), np.array([0.1, 0.1, 0.04]))
    np.testing.assert_allclose(estimate, [(5 + 30) / 200, 0.1, 0.04])
    # served at 0.2 on average, clicked at 0.2: the model is right about its level, and a
    # request where it predicts 0.1 keeps 0.1 (the model's personalization stays)
    cold.counts.served([1, 1], [0.1, 0.3])
    estimate = cold.estimate(np.array([1, 1]), np.array([0.1, 0.4]))
    np.testing.assert_allclose(estimate, [0.1, 0.4])


def test_exploring_requests_are_the_configured_share_of_ids() -> None:
    ids = [f"r{i}" for i in range(20_000)]
    share = np.mean([ColdStart(ColdStartConfig(traffic_share=0.1)).exploring(i) for i in ids])
    assert abs(share - 0.1) < 5 * np.sqrt(0.1 * 0.9 / len(ids))
    assert not any(ColdStart(ColdStartConfig(traffic_share=0.0)).exploring(i) for i in ids[:500])
    assert all(ColdStart(ColdStartConfig(traffic_share=1.0)).exploring(i) for i in ids[:500])


@pytest.mark.parametrize("method", ["ucb", "thompson"])
def test_boosts_only_new_creatives_and_at_most_the_bound(method: str) -> None:
    config = ColdStartConfig(
        min_impressions=100, traffic_share=1.0, max_revenue_loss=0.4, method=method
    )
    cold = ColdStart(config)
    cold.counts.record([1, 2], [100, 99], [10, 10])
    ids = np.array([1, 2, 3, 4])
    objective = np.array([Objective.CPC, Objective.CPC, Objective.OCPM, Objective.CPM], np.int8)
    p = np.array([0.1, 0.1, 0.02, 0.02])
    boost = cold.boost(ids, objective, p, "req-1")
    assert boost.explore[0] == 1.0  # has its minimum exposure
    assert (boost.explore[1:] >= 1.0).all()
    assert (boost.explore <= config.max_boost + 1e-12).all()
    # the value factor is the estimate's (CPC, oCPM); a CPM bid does not depend on clicks
    value = boost.pacing / boost.explore
    np.testing.assert_allclose(value, [(5 + 10) / 150 / 0.1, (5 + 10) / 149 / 0.1, 1.0, 1.0])
    again = cold.boost(ids, objective, p, "req-1")
    np.testing.assert_array_equal(again.explore, boost.explore)  # seeded by the request id
    plain = ColdStart(dataclasses.replace(config, traffic_share=0.0), cold.counts)
    assert (plain.boost(ids, objective, p, "req-1").explore == 1.0).all()


def _requests(n: int, k: int = 3, candidates: int = 40, seed: int = 3) -> list:
    w = world()
    rng = np.random.default_rng(seed)
    return [w.request(rng, f"q{i}", NOON, candidates, k) for i in range(n)]


def test_exploration_stays_in_its_traffic_and_revenue_bounds_through_the_ranker() -> None:
    config = ColdStartConfig(  # the estimate stays the model's: only exploration moves
        min_impressions=50, traffic_share=0.3, max_revenue_loss=0.3, prior_strength=1e6,
        confidence=1e3,
    )  # fmt: skip
    explore = ColdStart(config)
    twin = ColdStart(dataclasses.replace(config, traffic_share=0.0), explore.counts)
    w = world()
    established = w.catalog.creative_id[::2]  # half the catalog has its exposure; half is new
    explore.counts.record(established, np.full(len(established), 50), np.zeros(len(established)))
    with_exploration, without = ranker(cold_start=explore), ranker(cold_start=twin)
    requests = _requests(400)
    changed = exploring = 0
    total_explored = total_plain = 0.0
    for request in requests:
        a, b = with_exploration.rank(request), without.rank(request)
        total_explored, total_plain = total_explored + a.ecpm.sum(), total_plain + b.ecpm.sum()
        if explore.exploring(request.request_id):
            exploring += 1
            # every slot's winner is within the band of the best left: the slate too
            assert a.ecpm.sum() >= (1 - config.max_revenue_loss) * b.ecpm.sum() - 1e-9
        else:
            np.testing.assert_array_equal(a.creative_id, b.creative_id)
            np.testing.assert_allclose(a.ecpm, b.ecpm)
        changed += not np.array_equal(a.creative_id, b.creative_id)
    assert changed > 0  # exploration did move new creatives up
    assert exploring <= 0.3 * len(requests) + 5 * np.sqrt(len(requests) * 0.3 * 0.7)
    bound = 1 - config.traffic_share * config.max_revenue_loss
    assert total_explored >= bound * total_plain


def test_exploration_within_an_ad_lets_a_new_sibling_win_until_its_minimum_exposure() -> None:
    w = world()
    table = w.catalog.table
    table = table.append_column("ad_id", table["campaign_id"])  # a campaign's creatives: one ad
    catalog = Catalog.from_arrow(table)
    config = ColdStartConfig(
        min_impressions=5, traffic_share=1.0, max_revenue_loss=0.9, prior_strength=1e6,
        confidence=1e4,
    )  # fmt: skip
    model = TorchScriptModel(w.version_dir)
    user = w.users[0]
    context = {"placement": "feed", "hour": 12, "network": "wifi"}
    for campaign in np.unique(catalog.campaign_id):
        siblings = catalog.creative_id[(catalog.campaign_id == campaign) & catalog.active]
        if len(siblings) < 2 or catalog.objective[catalog.lookup(siblings)[0][0]] == 0:
            continue
        request = user_request(f"ad-{campaign}", user, context, siblings, 3)
        cold = ColdStart(config)
        explored = Ranker.from_export(w.artifacts_dir, catalog, model, cold_start=cold)
        plain = Ranker.from_export(w.artifacts_dir, catalog, model).rank(request)
        if len(plain.creative_id) != 1:
            continue  # the ad is not shown to this user (region, reserve)
        best = int(plain.creative_id[0])
        cold.counts.record([best], [config.min_impressions], [0])
        sibling = explored.rank(request)
        assert len(sibling.creative_id) == 1  # still one creative of the ad
        if int(sibling.creative_id[0]) == best:
            continue  # no sibling within the band here
        new = int(sibling.creative_id[0])
        cold.counts.record([new], [config.min_impressions - 1], [0])
        assert int(explored.rank(request).creative_id[0]) == new  # not yet its exposure
        cold.counts.record([new], [1], [0])
        assert int(explored.rank(request).creative_id[0]) != new  # it has its exposure now
        return
    pytest.fail("no ad had a sibling within the band: the world is not what the test expects")


def test_events_that_name_a_creative_feed_the_counts_once() -> None:
    counts = ImpressionCounts()
    pacing = PacingService(SQLitePacingStore(":memory:"))
    traffic = TrafficControl(SQLiteTrafficStore(":memory:"))
    control = make_control_router(pacing, traffic, clock=lambda: NOON, on_events=counts.record)
    client = TestClient(create_app(ranker(), control=control), base_url="http://localhost")
    event = {"campaign_id": 1, "cost": 0.0, "timestamp": NOON}
    batch = {
        "events": [
            {**event, "event_id": "a", "kind": "impression", "creative_id": 7},
            {**event, "event_id": "b", "kind": "click", "creative_id": 7},
            {**event, "event_id": "c", "kind": "conversion", "creative_id": 7},
            {**event, "event_id": "d", "kind": "impression"},  # names no creative
        ]
    }
    for _ in range(2):  # the retry is not counted again
        answer = client.post("/v1/events", json=batch)
        assert answer.status_code == 200, answer.text
    n, c, _ = counts.lookup(np.array([7]))
    assert (n.tolist(), c.tolist()) == ([1], [1])
    bad = {"events": [{**event, "event_id": "e", "kind": "click", "creative_id": "7"}]}
    answer = client.post("/v1/events", json=bad)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == "creative_id"


def test_the_simulated_day_reaches_the_minimum_exposure_within_the_revenue_bound() -> None:
    config = ColdStartConfig(min_impressions=30, traffic_share=0.2, max_revenue_loss=0.5)
    report = run_cold_start(
        world(), 1500, seed=0, arms=("estimate", "explore-ucb"), config=config, candidates=30
    )
    plain, explored = report.arms["estimate"], report.arms["explore-ucb"]
    goal = config.min_impressions
    # exploration moves new creatives toward their minimum exposure, and more of them reach it
    assert (
        np.minimum(explored.new_impressions, goal).sum()
        > np.minimum(plain.new_impressions, goal).sum()
    )
    assert (explored.new_impressions >= goal).sum() > (plain.new_impressions >= goal).sum()
    assert explored.explored_requests > 0
    assert explored.given_up <= config.traffic_share * config.max_revenue_loss
    assert explored.explored_requests <= config.traffic_share * report.requests * 1.5
    assert "| explore-ucb |" in report.table()
    with pytest.raises(ValueError, match="arms must be among"):
        run_cold_start(world(), 10, arms=("bandit",))
    with pytest.raises(ValueError, match=r"new_share must be in \(0, 1\]"):
        run_cold_start(world(), 10, new_share=0.0)


def test_serve_refuses_bad_cold_start_settings(tmp_path) -> None:
    from adrank.cli import main

    with pytest.raises(SystemExit, match=r"--cold-start: traffic_share must be in \[0, 1\]"):
        main(["serve", "--artifacts", str(tmp_path), "--cold-start", "--cold-start-share", "2"])
    with pytest.raises(SystemExit, match=r"--cold-start: max_revenue_loss must be in \[0, 1\)"):
        main(["serve", "--artifacts", str(tmp_path), "--cold-start", "--cold-start-max-loss", "1"])


def test_simulate_refuses_bad_cold_start_settings(tmp_path) -> None:
    from adrank.cli import main

    base = ["simulate", "--cold-start", "--workspace", str(tmp_path)]
    with pytest.raises(SystemExit, match=r"--cold-start: traffic_share must be in \[0, 1\]"):
        main([*base, "--explore-share", "-0.1"])
    with pytest.raises(SystemExit, match=r"--new-share must be in \(0, 1\]"):
        main([*base, "--new-share", "0"])
