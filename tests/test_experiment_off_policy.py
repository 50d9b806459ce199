"""Off-policy estimators: by hand, against a plain numpy reference, their errors, and their
intervals' coverage of the truth in the simulated world (bounded; the sweep is
bench/ope_coverage.py)."""

from __future__ import annotations

import numpy as np
import pytest

import experiment_world
from adrank.experiments.exploration import EpsilonGreedy
from adrank.experiments.off_policy import (
    doubly_robust,
    effective_sample_size,
    evaluate,
    ips,
    snips,
)
from adrank.orchestrator.scoring import ScoringConfig
from adrank.simulation.off_policy import coverage, log_contexts, online_value


def test_estimators_by_hand():
    r, p, pi = [1.0, 0.0, 1.0], [0.5, 0.25, 1.0], [1.0, 1.0, 0.0]  # w = 2, 4, 0
    assert ips(r, p, pi) == pytest.approx(2 / 3)
    assert snips(r, p, pi) == pytest.approx(2 / 6)
    q, v = [0.5, 0.5, 0.5], [0.6, 0.6, 0.1]  # 0.6 + 2 * 0.5, 0.6 - 4 * 0.5, 0.1
    assert doubly_robust(r, p, pi, q, v) == pytest.approx((1.6 - 1.4 + 0.1) / 3)
    assert effective_sample_size([2.0, 4.0, 0.0]) == pytest.approx(36 / 20)
    assert effective_sample_size([0.0]) == 0.0


def _reference(r, p, pi, q, v, draws):
    """Loops, one request at a time."""
    n = len(r)
    w = [pi[i] / p[i] for i in range(n)]
    out = {
        "IPS": sum(w[i] * r[i] for i in range(n)) / n,
        "SNIPS": sum(w[i] * r[i] for i in range(n)) / sum(w),
        "DR": sum(v[i] + w[i] * (r[i] - q[i]) for i in range(n)) / n,
    }
    boot = {name: [] for name in out}
    for row in draws:
        boot["IPS"].append(sum(w[i] * r[i] for i in row) / n)
        boot["SNIPS"].append(sum(w[i] * r[i] for i in row) / sum(w[i] for i in row))
        boot["DR"].append(sum(v[i] + w[i] * (r[i] - q[i]) for i in row) / n)
    return out, {k: np.quantile(b, [0.05, 0.95]) for k, b in boot.items()}


def test_evaluate_matches_a_plain_reference():
    rng = np.random.default_rng(1)
    n = 200
    p = rng.uniform(0.1, 1.0, n)
    pi = (rng.random(n) < 0.5).astype(float)
    r = (rng.random(n) < 0.3).astype(float)
    q, v = rng.uniform(0, 0.5, n), rng.uniform(0, 0.5, n)
    result = evaluate(r, p, pi, q, v, n_boot=50, alpha=0.1, seed=9)
    draws = np.random.default_rng(9).integers(0, n, size=(50, n))
    values, intervals = _reference(r, p, pi, q, v, draws)
    for name, estimate in result.items():
        assert estimate.value == pytest.approx(values[name])
        assert (estimate.ci_low, estimate.ci_high) == pytest.approx(tuple(intervals[name]))
        assert estimate.effective_sample_size == pytest.approx(
            (pi / p).sum() ** 2 / ((pi / p) ** 2).sum()
        )
    assert list(evaluate(r, p, pi, n_boot=10)) == ["IPS", "SNIPS"]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ips([1.0], [0.0], [1.0]), ValueError, "propensity must be > 0"),
        (lambda: ips([1.0], [0.5], [1.5]), ValueError, r"target probabilities must be in \[0, 1\]"),
        (lambda: ips([1.0, 0.0], [0.5], [1.0]), ValueError, "must have one length"),
        (lambda: ips([[1.0]], [0.5], [1.0]), ValueError, "reward must be 1-D"),
        (lambda: ips([np.nan], [0.5], [1.0]), ValueError, "reward must be finite"),
        (lambda: evaluate([1.0], [0.5], [1.0], n_boot=1), ValueError, "n_boot must be"),
        (lambda: evaluate([1.0], [0.5], [1.0], alpha=1.0), ValueError, "alpha must be"),
        (lambda: evaluate([1.0], [0.5], [1.0], q_logged=[0.1]), ValueError, "together"),
        (lambda: evaluate([], [], []), ValueError, "reward must not be empty"),
    ],
)
def test_bad_inputs_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_intervals_cover_the_truth_in_the_simulated_world():
    world = experiment_world.world()
    ranker = experiment_world.ranker()
    logging = EpsilonGreedy(0.3, pool=4, max_revenue_loss=0.6)
    target = ScoringConfig(reserve_ecpm=0.5, neg_penalty=0.6)  # another penalty
    contexts = log_contexts(world, ranker, logging, target, requests=1200, seed=0)
    assert contexts.support > 0.95
    rows = {(r.metric, r.estimator): r for r in coverage(contexts, range(30), n_boot=200)}
    for estimator in ("IPS", "DR"):
        for metric in ("clicks", "revenue"):
            row = rows[metric, estimator]
            assert row.coverage >= 0.8, row
            assert abs(row.bias) < 3 * row.std / np.sqrt(row.seeds) + 0.05 * row.truth, row
    # DR's variance is lower than IPS's with a reward model, even a miscalibrated one.
    assert rows["revenue", "DR"].std < rows["revenue", "IPS"].std
    # The target run online agrees with the truth (realized clicks: binomial noise).
    online = online_value(world, ranker, target, requests=1500, seed=5)
    truth = contexts.truth()["clicks"]
    assert abs(online["clicks"] - truth) < 4 * np.sqrt(truth / 1500)
