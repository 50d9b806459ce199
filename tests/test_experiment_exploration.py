"""Exploration with propensities (hand-worked, sampled, through the real Ranker) and the
rotated, size-bounded Parquet request log."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

import experiment_world
from adrank.experiments.exploration import EpsilonGreedy, SoftmaxExploration, request_seed
from adrank.experiments.request_log import RequestLog, read_request_log
from adrank.simulation.world import DAY_START


def test_epsilon_greedy_probabilities_by_hand():
    policy = EpsilonGreedy(0.3, pool=4, max_revenue_loss=0.5)
    # allowed: eCPM >= 0.5 * 10 -> the first three; 0.3 / 3 each, the best 0.7 more
    np.testing.assert_allclose(
        policy.slot_probabilities(np.array([10.0, 8.0, 5.0, 2.0])), [0.8, 0.1, 0.1, 0.0]
    )
    greedy = EpsilonGreedy(0.0)
    np.testing.assert_array_equal(greedy.slot_probabilities(np.array([3.0, 4.0])), [0.0, 1.0])


def test_softmax_probabilities_by_hand():
    policy = SoftmaxExploration(0.5, pool=3, max_revenue_loss=0.5)
    # logits (e - 10) / (0.5 * 10): 0, -0.4; eCPM 4 is below half the best: never drawn
    p = policy.slot_probabilities(np.array([10.0, 8.0, 4.0]))
    e = np.exp(-0.4)
    np.testing.assert_allclose(p, [1 / (1 + e), e / (1 + e), 0.0])


def test_draws_follow_the_probabilities_and_respect_the_revenue_bound():
    policy = EpsilonGreedy(0.4, pool=5, max_revenue_loss=0.5)
    ecpm = np.array([10.0, 9.0, 6.0, 5.5, 1.0])
    firsts = np.zeros(5)
    for seed in range(4000):
        order, propensity = policy.draw(ecpm, 3, seed)
        assert len(set(order.tolist())) == 3
        left = np.arange(5)
        for slot, pick in enumerate(order.tolist()):
            p = policy.slot_probabilities(ecpm[left])
            position = int(np.flatnonzero(left == pick)[0])
            assert propensity[slot] == p[position]  # given the slots above
            assert ecpm[pick] >= 0.5 * ecpm[left].max()  # never outside the allowed set
            left = np.delete(left, position)
        firsts[order[0]] += 1
    expected = policy.slot_probabilities(ecpm) * 4000
    assert firsts[4] == 0
    assert stats.chisquare(firsts[:4], expected[:4]).pvalue > 1e-3
    assert request_seed("r1") == request_seed("r1") != request_seed("r2")


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: EpsilonGreedy(1.5), ValueError, r"epsilon must be in \[0, 1\]"),
        (lambda: EpsilonGreedy(0.1, pool=0), ValueError, "pool must be an integer >= 1"),
        (lambda: EpsilonGreedy(0.1, max_revenue_loss=2), ValueError, "max_revenue_loss"),
        (lambda: SoftmaxExploration(0.0), ValueError, "temperature must be"),
        (lambda: SoftmaxExploration(float("inf")), ValueError, "temperature must be"),
    ],
)
def test_bad_policies_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_the_ranker_explores_with_propensities_and_bounded_revenue_loss():
    world = experiment_world.world()
    policy = EpsilonGreedy(0.5, pool=5, max_revenue_loss=0.4)
    explorer = experiment_world.ranker(exploration=policy)
    plain = experiment_world.ranker()
    rng = np.random.default_rng(3)
    explored = differs = 0
    for i in range(150):
        request = world.request(rng, f"x{i}", DAY_START, 40, 2)
        response, greedy = explorer.rank(request), plain.rank(request)
        assert explorer.rank(request).creative_id.tolist() == response.creative_id.tolist()
        if not len(greedy):
            continue
        pool = response.pool
        # The pool is the greedy ranking's head, with the same eCPMs and prices.
        np.testing.assert_array_equal(pool["creative_id"][: len(greedy)], greedy.creative_id)
        np.testing.assert_array_equal(pool["price"][: len(greedy)], greedy.price)
        first = policy.slot_probabilities(pool["ecpm"])
        at = int(np.flatnonzero(pool["creative_id"] == response.creative_id[0])[0])
        assert response.propensity[0] == first[at]
        assert 0 < response.propensity.min() <= response.propensity.max() <= 1
        # The revenue bound, in expectation over the draw of the first slot.
        assert first @ pool["ecpm"] >= (1 - 0.5 * 0.4) * greedy.ecpm[0] - 1e-9
        explored += 1
        differs += response.creative_id[0] != greedy.creative_id[0]
    assert explored > 50
    assert 0 < differs < explored


def test_the_request_log_rotates_bounds_its_size_and_joins_events(tmp_path):
    world = experiment_world.world()
    ranker = experiment_world.ranker(exploration=SoftmaxExploration(0.3, pool=4))
    log = RequestLog(tmp_path / "log", rows_per_part=20, max_bytes=10**9, clock=lambda: 5.0)
    rng = np.random.default_rng(0)
    responses = {}
    for i in range(50):
        request = world.request(rng, f"q{i}", DAY_START, 30, 2)
        response = dataclasses.replace(ranker.rank(request), arms={"exp": "b"})
        responses[request.request_id] = response
        log.append(request, response)
    assert len(log.parts()) == 2  # 40 rows flushed, 10 buffered
    log.close()
    assert len(log.parts()) == 3
    table = read_request_log(tmp_path / "log")
    assert table.num_rows == 50
    row = table.slice(7, 1).to_pylist()[0]
    response = responses[row["request_id"]]
    assert row["shown_creative_id"] == response.creative_id.tolist()
    assert row["propensity"] == response.propensity.tolist()
    assert row["pool_ecpm"] == response.pool["ecpm"].tolist()
    assert json.loads(row["arms"]) == {"exp": "b"}
    assert row["model_version"] == response.model_version
    assert json.loads(row["user"])["user_id"] > 0
    assert row["time"] == 5.0
    events = pa.table({"request_id": ["q3", "q3", "q40"], "event": ["click"] * 3})
    joined = events.join(table.select(["request_id", "model_version"]), "request_id")
    assert joined.num_rows == 3
    # A small size bound keeps only the newest parts; a reopened log continues the numbering.
    size = log.parts()[0].stat().st_size
    bounded = RequestLog(tmp_path / "log", rows_per_part=20, max_bytes=int(size * 2.5))
    for i in range(40):
        bounded.append(world.request(rng, f"z{i}", DAY_START, 30, 2), response)
    bounded.close()
    names = [p.name for p in bounded.parts()]
    assert names[-1] == "part-000005.parquet"
    assert len(names) <= 3
    assert "part-000001.parquet" not in names


def test_request_log_errors(tmp_path):
    with pytest.raises(ValueError, match="rows_per_part must be >= 1"):
        RequestLog(tmp_path, rows_per_part=0)
    with pytest.raises(TypeError, match="rows_per_part must be an integer"):
        RequestLog(tmp_path, rows_per_part=1.5)
    with pytest.raises(ValueError, match="max_bytes must be an integer >= 1"):
        RequestLog(tmp_path, max_bytes=0)
    with pytest.raises(ValueError, match="no request log parts"):
        read_request_log(tmp_path)
