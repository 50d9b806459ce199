"""AUC, log loss and calibration against scikit-learn and plain references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss as sklearn_log_loss
from sklearn.metrics import roc_auc_score

from adrank.training.metrics import auc, calibration, log_loss, task_metrics


def auc_ref(labels, scores) -> float:
    """Every (positive, negative) pair: 1 when ordered right, 1/2 when tied."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from([0.1, 0.2, 0.5, 0.7, 0.9])),
        min_size=2,
        max_size=40,
    )
)
def test_auc_matches_references_with_ties(pairs):
    labels = np.array([p[0] for p in pairs])
    scores = np.array([p[1] for p in pairs])
    if labels.min() == labels.max():
        assert np.isnan(auc(labels, scores))
        return
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert auc(labels, scores) == pytest.approx(auc_ref(labels, scores))


def test_log_loss_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = rng.random(500)
    assert log_loss(labels, scores) == pytest.approx(sklearn_log_loss(labels, scores))
    assert np.isfinite(log_loss([1, 0], [0.0, 1.0]))  # clipped, not infinite


def test_calibration_overall_and_by_decile():
    labels = np.array([0] * 90 + [1] * 10)
    scores = np.full(100, 0.12)
    result = calibration(labels, scores)
    assert result["overall"] == pytest.approx(1.2)
    assert len(result["bins"]) == 10
    assert sum(b["count"] for b in result["bins"]) == 100
    no_positive = calibration(np.zeros(4), np.full(4, 0.5), num_bins=2)
    assert np.isnan(no_positive["overall"])
    assert all(np.isnan(b["ratio"]) for b in no_positive["bins"])
    assert len(calibration([1, 0], [0.5, 0.5], num_bins=10)["bins"]) == 2


def test_task_metrics_keys():
    metrics = task_metrics(np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.3, 0.6]))
    assert metrics["auc"] == 1.0
    assert metrics["observed_rate"] == 0.5
    assert metrics["count"] == 4
    assert len(metrics["calibration_deciles"]) == 4


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([0, 1], [0.5], "equal lengths"),
        ([], [], "must not be empty"),
        ([0, 2], [0.1, 0.2], "0 or 1"),
        ([0, 1], [0.1, float("nan")], "NaN"),
    ],
)
def test_errors(labels, scores, match):
    for function in (auc, log_loss, calibration):
        with pytest.raises(ValueError, match=match):
            function(labels, scores)


def test_calibration_needs_a_bin():
    with pytest.raises(ValueError, match="num_bins must be >= 1"):
        calibration([0, 1], [0.1, 0.2], num_bins=0)
