"""Metrics of a probability model on a held-out split: AUC, log loss, calibration.

Glossary: ``B`` rows; ``labels [B]`` in {0, 1}; ``scores [B]`` predicted probabilities.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auc", "bootstrap_intervals", "calibration", "log_loss", "task_metrics"]

_EPS = 1e-7


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels and scores must have equal lengths, got {labels.size} and {scores.size}"
        )
    if labels.size == 0:
        raise ValueError("labels must not be empty")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if np.isnan(scores).any():
        raise ValueError("scores must not contain NaN")
    return labels, scores


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (tied scores count one half); NaN when one class is absent."""
    labels, scores = _check(labels, scores)
    positives = labels.sum()
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # Average ranks over ties (the Mann-Whitney U statistic).
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], sorted_scores.size]
    average_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(scores.size)
    ranks[order] = np.repeat(average_rank, ends - starts)
    u = ranks[labels == 1].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean binary cross-entropy, probabilities clipped to ``[1e-7, 1 - 1e-7]``."""
    labels, scores = _check(labels, scores)
    p = np.clip(scores, _EPS, 1.0 - _EPS)
    return float(-np.mean(labels * np.log(p) + (1.0 - labels) * np.log1p(-p)))


def calibration(labels: np.ndarray, scores: np.ndarray, num_bins: int = 10) -> dict:
    """Predicted over observed rate, overall and per bin of equal counts by predicted score.

    Returns ``{"overall": ratio, "bins": [{"predicted", "observed", "ratio", "count"}, ...]}``;
    a ratio is NaN where the observed rate is 0.
    """
    labels, scores = _check(labels, scores)
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    order = np.argsort(scores, kind="mergesort")
    bins = []
    for rows in np.array_split(order, min(num_bins, labels.size)):
        predicted, observed = scores[rows].mean(), labels[rows].mean()
        bins.append(
            {
                "predicted": float(predicted),
                "observed": float(observed),
                "ratio": float(predicted / observed) if observed > 0 else float("nan"),
                "count": int(rows.size),
            }
        )
    observed = labels.mean()
    overall = scores.mean() / observed if observed > 0 else float("nan")
    return {"overall": float(overall), "bins": bins}


def task_metrics(labels: np.ndarray, scores: np.ndarray) -> dict:
    """AUC, log loss and calibration of one task, plus the observed and predicted rates."""
    calib = calibration(labels, scores)
    return {
        "auc": auc(labels, scores),
        "log_loss": log_loss(labels, scores),
        "calibration": calib["overall"],
        "calibration_deciles": calib["bins"],
        "observed_rate": float(np.mean(labels)),
        "predicted_rate": float(np.mean(scores)),
        "count": int(np.asarray(labels).size),
    }


def bootstrap_intervals(
    labels: np.ndarray,
    scores: np.ndarray,
    resamples: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """``{"auc": [low, high], "log_loss": [...], "calibration": [...]}``: percentile intervals
    over ``resamples`` draws of the rows with replacement (draws without both classes are left
    out of the AUC's; NaN bounds when none is left)."""
    labels, scores = _check(labels, scores)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {"auc": [], "log_loss": [], "calibration": []}
    for _ in range(resamples):
        rows = rng.integers(0, labels.size, labels.size)
        y, p = labels[rows], scores[rows]
        draws["auc"].append(auc(y, p))
        draws["log_loss"].append(log_loss(y, p))
        observed = y.mean()
        draws["calibration"].append(p.mean() / observed if observed > 0 else float("nan"))
    tail = (1.0 - level) / 2.0 * 100.0
    intervals = {}
    for name, values in draws.items():
        finite = np.asarray(values)[np.isfinite(values)]
        if finite.size == 0:
            intervals[name] = [float("nan"), float("nan")]
        else:
            low, high = np.percentile(finite, [tail, 100.0 - tail])
            intervals[name] = [float(low), float(high)]
    return intervals
