"""Uplift: the planted treatment effect of the synthetic world, recovered by the T- and
X-learner with a fixed seed; the metrics against brute-force definitions; errors."""

from __future__ import annotations

import numpy as np
import pytest

from adrank.data import generate_log
from adrank.features import FeaturePipeline, load_schema
from adrank.uplift import (
    LinearLearner,
    TLearner,
    XLearner,
    auuc,
    qini_coefficient,
    qini_curve,
    uplift_by_decile,
    uplift_curve,
)


@pytest.fixture(scope="module")
def experiment():
    log = generate_log(40_000, seed=7, treatment=True).impressions
    schema = load_schema()
    batch = FeaturePipeline(schema)(log)
    treatment = log.column("treatment").to_numpy()
    outcome = log.column("converted").to_numpy()
    truth = log.column("true_uplift").to_numpy()
    fit = np.arange(len(batch)) < 28_000
    return schema, batch, treatment, outcome, truth, fit


def test_the_world_plants_a_known_heterogeneous_effect():
    plain = generate_log(20_000, seed=2).impressions
    log = generate_log(20_000, seed=2, treatment=True).impressions
    assert log.select(plain.column_names).equals(plain)  # the other columns do not move
    truth = log.column("true_uplift").to_numpy()
    assert truth.min() >= 0
    assert truth.std() > 0.3 * truth.mean()  # heterogeneous
    t, y = log.column("treatment").to_numpy(), log.column("converted").to_numpy()
    observed = y[t == 1].mean() - y[t == 0].mean()
    assert observed == pytest.approx(truth.mean(), abs=0.015)


@pytest.mark.parametrize("learner", [TLearner, XLearner])
def test_learners_recover_the_planted_uplift(experiment, learner):
    schema, batch, treatment, outcome, truth, fit = experiment
    model = learner(schema, epochs=2).fit(
        batch.take(np.flatnonzero(fit)), treatment[fit], outcome[fit]
    )
    test = ~fit
    predicted = model.predict(batch.take(np.flatnonzero(test)))
    y, t = outcome[test], treatment[test]
    oracle = qini_coefficient(y, t, truth[test])
    assert qini_coefficient(y, t, predicted) > 0.3 * oracle > 0
    assert auuc(y, t, predicted) > 0
    assert np.corrcoef(predicted, truth[test])[0, 1] > 0.1
    deciles = uplift_by_decile(y, t, predicted, truth[test])
    assert all(d["observed"] > 0 for d in deciles[:3])  # the effect's sign where it is largest
    top = np.mean([d["true"] for d in deciles[:3]])
    bottom = np.mean([d["true"] for d in deciles[-3:]])
    assert top > bottom


def _brute_qini(y, t, score, k):
    top = np.argsort(-score, kind="stable")[:k]
    yt, yc = y[top][t[top] == 1].sum(), y[top][t[top] == 0].sum()
    nt, nc = (t[top] == 1).sum(), (t[top] == 0).sum()
    return yt - yc * nt / nc if nc else yt


def test_curves_match_their_definitions():
    rng = np.random.default_rng(0)
    y, t, score = rng.random(500) < 0.3, rng.integers(0, 2, 500), rng.random(500)
    _, q = qini_curve(y, t, score)
    for cut in (10, 100, 499):
        assert q[cut] == pytest.approx(_brute_qini(y, t, score, cut))
    _, u = uplift_curve(y, t, score)
    top = np.argsort(-score, kind="stable")[:100]
    expected = (y[top][t[top] == 1].mean() - y[top][t[top] == 0].mean()) * 100
    assert u[100] == pytest.approx(expected)
    perfect = y * t - y * (1 - t)  # ranks the treated converters first
    assert qini_coefficient(y, t, perfect) > qini_coefficient(y, t, score)
    assert abs(qini_coefficient(y, t, score)) < 0.05
    assert len(uplift_by_decile(y, t, score)) == 10


def test_uplift_errors(experiment):
    schema, batch, treatment, outcome, _, _ = experiment
    with pytest.raises(ValueError, match="same length"):
        qini_curve([1, 0], [1], [0.1, 0.2])
    with pytest.raises(ValueError, match="treatment must be 0 or 1"):
        auuc([1, 0], [2, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="no rows"):
        qini_coefficient([], [], [])
    with pytest.raises(ValueError, match="loss must be"):
        LinearLearner(schema, "hinge")
    with pytest.raises(ValueError, match="epochs and batch_size"):
        LinearLearner(schema, epochs=0)
    with pytest.raises(ValueError, match="predict before fit"):
        LinearLearner(schema).predict(batch)
    small = batch.take(np.arange(10))
    with pytest.raises(ValueError, match="target has 3 rows"):
        LinearLearner(schema).fit(small, np.zeros(3))
    with pytest.raises(ValueError, match="same rows"):
        TLearner(schema).fit(small, treatment[:9], outcome[:10])
    with pytest.raises(ValueError, match="treated and control"):
        TLearner(schema).fit(small, np.ones(10), outcome[:10])
    with pytest.raises(ValueError, match="treatment must be 0 or 1"):
        XLearner(schema).fit(small, np.full(10, 3), outcome[:10])
