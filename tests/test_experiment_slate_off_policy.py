"""Slate off-policy estimators: by hand, the pseudo-inverse against the paper's closed form,
unbiasedness under the additive assumption by exact expectation (and bias without it), a plain
loop reference, their errors, and their intervals' coverage of the truth in the simulated world
(bounded; the sweep is ``bench/ope_coverage.py --slate``)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

import experiment_world
from adrank.experiments.exploration import EpsilonGreedy, SoftmaxExploration
from adrank.experiments.slate_off_policy import (
    EMPTY,
    OUTSIDE,
    SlateDistribution,
    evaluate_slates,
    slate_distribution,
    slate_weights,
)
from adrank.orchestrator.ranker import SelectionConfig
from adrank.orchestrator.scoring import ScoringConfig
from adrank.simulation.slate_off_policy import log_slates, online_slate_value, slate_coverage
from adrank.simulation.world import DAY_START

# Two creatives, two slots: the first slot takes creative 0 with 0.75 (0.5 greedy + 0.5 / 2),
# the second the one left. Slates (0, 1) with 0.75 and (1, 0) with 0.25.
TWO = EpsilonGreedy(0.5, pool=2, max_revenue_loss=1.0)


def test_two_slates_by_hand():
    d = slate_distribution(TWO, [2.0, 1.0], 2)
    assert d.slates.tolist() == [[0, 1], [1, 0]]
    np.testing.assert_allclose(d.probability, [0.75, 0.25])
    np.testing.assert_allclose(d.marginals(), [[0.75, 0.25], [0.25, 0.75]])
    # 1_s of the two slates are orthogonal with |1_s|^2 = 2, so Gamma^+ 1_(1,0) = 2 * 1_(1,0)
    # and PI's weight is 4 for (1, 0), 0 for (0, 1): here it is slate IPS's 1 / 0.25.
    coefficients = d.pi_coefficients([1, 0])
    np.testing.assert_allclose(coefficients, [[0.0, 2.0], [2.0, 0.0]], atol=1e-12)
    shown = [[1, 0], [0, 1], [1, 0]]
    reward = [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    target = [[1, 0]] * 3
    weights = slate_weights(
        shown, target, [d.marginals()] * 3, [0.25, 0.75, 0.25], [coefficients] * 3
    )
    np.testing.assert_allclose(weights.slot, [[4, 4], [0, 0], [4, 4]])
    np.testing.assert_allclose(weights.slate, [4, 0, 4])
    np.testing.assert_allclose(weights.pi, [4, 0, 4])
    np.testing.assert_allclose(weights.slot_mean, [1, 1])
    result = evaluate_slates(reward, weights, n_boot=20)
    assert list(result) == ["slate IPS", "IP", "SNIP", "PI"]
    for name in ("slate IPS", "IP", "PI"):  # (4 * 1 + 0 + 4 * 1) / 3
        assert result[name].value == pytest.approx(8 / 3)
    # SNIP, slot by slot: (4 * 1 + 4 * 0) / 8 and (4 * 0 + 4 * 1) / 8, each times 1.
    assert result["SNIP"].value == pytest.approx(1.0)
    assert result["IP"].effective_sample_size == pytest.approx(64 / 32)


def test_pi_is_the_papers_closed_form_for_a_product_logging_policy():
    """Swaminathan et al. 2017, Example 4: slots drawn independently (mu a product), the PI
    weight is sum_j pi_j(s_j) / mu_j(s_j) - (k - 1)."""
    mu = ([0.75, 0.25], [0.4, 0.6])
    slates = np.array(list(itertools.product(range(2), range(2))))
    probability = np.array([mu[0][a] * mu[1][b] for a, b in slates])
    d = SlateDistribution(slates, probability, pool=2)
    coefficients = d.pi_coefficients([1, 0])
    weights = [coefficients[0, a] + coefficients[1, b] for a, b in slates]
    # (0,0): 0 + 1/0.4 - 1; (0,1): -1; (1,0): 1/0.25 + 1/0.4 - 1; (1,1): 1/0.25 - 1
    np.testing.assert_allclose(weights, [1.5, -1.0, 5.5, 3.0], atol=1e-9)
    assert d.in_range([1, 0])


def _exact(d: SlateDistribution, target, reward) -> dict[str, float]:
    """Each estimator's expectation over the logging policy's slates (a reward per slate)."""
    coefficients = d.pi_coefficients(target)
    marginal = d.marginals()
    out = {"slate IPS": 0.0, "IP": 0.0, "PI": 0.0}
    for slate, p in zip(d.slates, d.probability, strict=True):
        r = reward(slate)  # per slot
        match = [slate[j] == target[j] for j in range(d.k)]
        out["slate IPS"] += p * (all(match) / p) * sum(r)
        out["IP"] += p * sum(m / marginal[j, slate[j]] * r[j] for j, m in enumerate(match))
        out["PI"] += p * sum(coefficients[j, slate[j]] for j in range(d.k)) * sum(r)
    return out


def test_unbiased_under_the_additive_assumption_and_not_without_it():
    policy = SoftmaxExploration(0.4, pool=5, max_revenue_loss=1.0)
    d = slate_distribution(policy, [5.0, 4.0, 3.5, 2.0, 1.0], 3)
    assert len(d.slates) == 5 * 4 * 3
    assert d.probability.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(d.marginals().sum(axis=1), 1.0)
    phi = np.random.default_rng(3).random((3, 5))  # slot x creative
    target = [3, 0, 4]
    truth = sum(phi[j, t] for j, t in enumerate(target))
    additive = _exact(d, target, lambda s: [phi[j, a] for j, a in enumerate(s)])
    for name, value in additive.items():
        assert value == pytest.approx(truth), name
    assert _exact(d, target, lambda s: [1.0, 0.0, 0.0])["PI"] == pytest.approx(1.0)

    # A slot-interaction (creative 0 above creative 3 takes half of 3's reward): only slate
    # IPS stays unbiased.
    def interacting(s):
        r = [phi[j, a] for j, a in enumerate(s)]
        if 0 in s and 3 in s and list(s).index(0) < list(s).index(3):
            r[list(s).index(3)] *= 0.5
        return r

    target = [0, 3, 4]
    truth = phi[0, 0] + 0.5 * phi[1, 3] + phi[2, 4]
    biased = _exact(d, target, interacting)
    assert biased["slate IPS"] == pytest.approx(truth)
    assert abs(biased["IP"] - truth) > 1e-3
    assert abs(biased["PI"] - truth) > 1e-3


def _reference(policy, ecpm, k, target, shown, reward, draws):
    """Loops: the slates by itertools.permutations, probabilities by the chain of draws,
    Gamma entry by entry, PI's coefficients by least squares."""
    pool = len(ecpm)
    probability = {}
    for slate in itertools.permutations(range(pool), k):
        p, left = 1.0, list(range(pool))
        for a in slate:
            draw = policy.slot_probabilities(np.asarray([ecpm[i] for i in left]))
            p *= draw[left.index(a)]
            left.remove(a)
        if p > 0:
            probability[slate] = p
    marginal = np.zeros((k, pool))
    gamma = np.zeros((k * pool, k * pool))
    for slate, p in probability.items():
        for j, a in enumerate(slate):
            marginal[j, a] += p
            for m, b in enumerate(slate):
                gamma[j * pool + a, m * pool + b] += p
    q = np.zeros(k * pool)
    for j, t in enumerate(target):
        q[j * pool + t] = 1.0
    coefficients = np.linalg.lstsq(gamma, q, rcond=None)[0].reshape(k, pool)
    n = len(shown)
    per = {"slate IPS": [], "IP": [], "PI": []}
    for s, r in zip(shown, reward, strict=True):
        per["slate IPS"].append((tuple(s) == tuple(target)) / probability[tuple(s)] * sum(r))
        per["IP"].append(sum((s[j] == target[j]) / marginal[j, s[j]] * r[j] for j in range(k)))
        per["PI"].append(sum(coefficients[j, s[j]] for j in range(k)) * sum(r))
    values = {name: sum(v) / n for name, v in per.items()}

    def snip(rows):
        total = 0.0
        for j in range(k):
            w = [(shown[i][j] == target[j]) / marginal[j, shown[i][j]] for i in rows]
            total += sum(w[x] * reward[i][j] for x, i in enumerate(rows)) / sum(w)
        return total  # every slot of the target can be filled: known mean 1

    values["SNIP"] = snip(range(n))
    boot = {name: [sum(per[name][i] for i in row) / n for row in draws] for name in per}
    boot["SNIP"] = [snip(row) for row in draws]
    intervals = {name: np.quantile(b, [0.05, 0.95]) for name, b in boot.items()}
    return probability, marginal, coefficients, values, intervals


def test_matches_a_plain_loop_reference():
    policy = EpsilonGreedy(0.6, pool=4, max_revenue_loss=0.7)
    ecpm, k, target = [3.0, 2.5, 2.0, 1.0], 3, [1, 0, 2]
    d = slate_distribution(policy, ecpm, k)
    rng = np.random.default_rng(4)
    n = 300
    shown = d.slates[rng.choice(len(d.slates), size=n, p=d.probability)]
    reward = (rng.random((n, k)) < [0.5, 0.3, 0.2]).astype(float)
    draws = np.random.default_rng(11).integers(0, n, size=(40, n))
    probability, marginal, coefficients, values, intervals = _reference(
        policy, ecpm, k, target, shown.tolist(), reward.tolist(), draws
    )
    assert {tuple(s): p for s, p in zip(d.slates.tolist(), d.probability, strict=True)} == (
        pytest.approx(probability)
    )
    np.testing.assert_allclose(d.marginals(), marginal)
    np.testing.assert_allclose(d.pi_coefficients(target), coefficients, atol=1e-9)
    index = {tuple(s): i for i, s in enumerate(d.slates.tolist())}
    weights = slate_weights(
        shown,
        np.tile(target, (n, 1)),
        np.broadcast_to(d.marginals(), (n, k, 4)),
        d.probability[[index[tuple(s)] for s in shown.tolist()]],
        np.broadcast_to(d.pi_coefficients(target), (n, k, 4)),
    )
    result = evaluate_slates(reward, weights, n_boot=40, alpha=0.1, seed=11)
    for name, estimate in result.items():
        assert estimate.value == pytest.approx(values[name]), name
        assert (estimate.ci_low, estimate.ci_high) == pytest.approx(tuple(intervals[name])), name


ONE = dict(
    shown=[[0, 1]],
    target=[[0, 1]],
    marginal=[[[0.5, 0.5], [0.5, 0.5]]],
    slate_propensity=[0.5],
)


def _weights(**changes):
    return slate_weights(**(ONE | changes))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: slate_distribution(TWO, [1.0], 0), "k must be an integer >= 1"),
        (lambda: slate_distribution(TWO, [], 2), "ecpm must be a non-empty 1-D array"),
        (lambda: slate_distribution(TWO, [1.0, 2.0], 2).pi_coefficients([0]), "one entry"),
        (lambda: slate_distribution(TWO, [1.0, 2.0], 2).pi_coefficients([0, 5]), "pool"),
        (lambda: _weights(shown=[0, 1]), r"shown must be a 2-D integer array"),
        (lambda: _weights(target=[[0.0, 1.0]]), r"target must be a 2-D integer array"),
        (lambda: _weights(target=[[0, 1, 1]]), "target must have shown's shape"),
        (lambda: _weights(marginal=[[0.5, 0.5]]), r"marginal must have shape \(n, k, P\)"),
        (lambda: _weights(marginal=[[[1.5, 0.5], [0.5, 0.5]]]), r"probabilities in \[0, 1\]"),
        (lambda: _weights(shown=[[0, 2]]), "shown entries must be pool positions"),
        (lambda: _weights(target=[[0, -3]]), "target entries must be pool positions"),
        (lambda: _weights(slate_propensity=[0.0]), r"slate_propensity must be in \(0, 1\]"),
        (lambda: _weights(slate_propensity=[0.5, 0.5]), "slate_propensity must be 1 finite"),
        (lambda: _weights(marginal=[[[0.0, 1.0], [0.5, 0.5]]]), "marginal must be > 0 where"),
        (lambda: _weights(pi_coefficients=[[1.0]]), "pi_coefficients must be finite"),
        (lambda: evaluate_slates([[1.0, 0.0]], _weights(), n_boot=1), "n_boot must be"),
        (lambda: evaluate_slates([[1.0, 0.0]], _weights(), alpha=0.0), "alpha must be"),
        (lambda: evaluate_slates([[1.0]], _weights()), r"slot_reward must have shape \(1, 2\)"),
        (lambda: evaluate_slates([[np.inf, 0.0]], _weights()), "slot_reward must be finite"),
    ],
)
def test_bad_inputs_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_empty_slots_and_creatives_outside_the_pool_weigh_nothing():
    weights = slate_weights(
        [[0, EMPTY], [1, 0]],
        [[0, OUTSIDE], [1, OUTSIDE]],
        [[[0.5, 0.5], [0.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]],
        [0.5, 0.25],
    )
    np.testing.assert_allclose(weights.slot, [[2, 0], [2, 0]])
    np.testing.assert_allclose(weights.slot_mean, [1, 0])  # slot 2 cannot be filled: no SNIP
    np.testing.assert_allclose(weights.slate, [0, 0])
    assert weights.pi is None
    assert "PI" not in evaluate_slates([[1.0, 0.0], [0.0, 1.0]], weights, n_boot=5)


def test_intervals_cover_the_truth_in_the_simulated_world():
    world = experiment_world.world()
    # A per-advertiser cap above the pool, so that the cap does not keep the target's
    # creatives out of the logging policy's pool (the estimators cannot see those).
    ranker = experiment_world.ranker(selection_config=SelectionConfig(max_per_advertiser=20))
    logging = SoftmaxExploration(0.5, pool=6, max_revenue_loss=1.0)
    target = ScoringConfig(reserve_ecpm=0.5, neg_penalty=0.6)  # another penalty

    # The ranker's logged per-slot propensities multiply to the enumerated slate's probability.
    rng = np.random.default_rng(2)
    while True:
        request = world.request(rng, f"one-{rng.integers(1 << 30)}", DAY_START, 120, 3)
        response = ranker.rank(dataclasses.replace(request, exploration=logging))
        if len(response) == 3:
            break
    d = slate_distribution(logging, response.pool["ecpm"], 3)
    positions = [
        int(np.flatnonzero(response.pool["creative_id"] == c)[0]) for c in response.creative_id
    ]
    at = [i for i, s in enumerate(d.slates.tolist()) if s == positions]
    assert d.probability[at[0]] == pytest.approx(np.prod(response.propensity))

    logged = log_slates(world, ranker, logging, target, requests=800, k=3, candidates=120)
    assert logged.support > 0.99
    rows = {(r.metric, r.estimator): r for r in slate_coverage(logged, range(20), n_boot=200)}
    for estimator in ("IP", "SNIP", "PI"):
        for metric in ("clicks", "revenue"):
            row = rows[metric, estimator]
            assert row.coverage >= 0.8, row
            assert abs(row.bias) < 3 * row.std / np.sqrt(row.seeds) + 0.05 * row.truth, row
    # Under the assumption, the item-position weights vary far less than the whole slate's.
    for metric in ("clicks", "revenue"):
        assert rows[metric, "IP"].std < rows[metric, "slate IPS"].std
    # The target run online agrees with the truth (realized clicks: binomial noise).
    online = online_slate_value(world, ranker, target, requests=1000, k=3, seed=5, candidates=120)
    truth = logged.truth()["clicks"]
    assert abs(online["clicks"] - truth) < 4 * np.sqrt(truth / 1000)
