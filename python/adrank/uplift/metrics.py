"""Uplift metrics: the Qini and uplift curves, their areas, and the uplift by decile.

Glossary: rows sorted by predicted uplift, highest first; at the top ``k`` rows, ``Y_t``,
``Y_c`` are the outcomes summed over the treated and the control rows and ``N_t``, ``N_c``
their counts. *Qini* ``Q(k) = Y_t - Y_c * N_t / N_c`` (incremental outcomes among the
treated); *uplift curve* ``U(k) = (Y_t / N_t - Y_c / N_c) * k``. A random order draws the
straight line from 0 to the last point; *Qini coefficient* and *AUUC* are the areas between
each curve and that line, divided by the number of rows squared (so they read as incremental
outcomes per row, averaged over the cut-offs). Ties in the score are broken by row order.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auuc", "qini_coefficient", "qini_curve", "uplift_by_decile", "uplift_curve"]


def _sorted(outcome, treatment, score):
    outcome = np.asarray(outcome, dtype=np.float64).reshape(-1)
    treatment = np.asarray(treatment).reshape(-1)
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    if not (len(outcome) == len(treatment) == len(score)):
        raise ValueError("outcome, treatment and score must have the same length")
    if len(score) == 0:
        raise ValueError("outcome: no rows")
    if not np.isin(treatment, (0, 1)).all():
        raise ValueError("treatment must be 0 or 1")
    order = np.argsort(-score, kind="stable")
    return outcome[order], treatment[order] == 1


def _cumulative(outcome, treatment, score):
    y, t = _sorted(outcome, treatment, score)
    n_t, n_c = np.cumsum(t), np.cumsum(~t)
    y_t, y_c = np.cumsum(y * t), np.cumsum(y * ~t)
    return y_t, y_c, n_t, n_c


def qini_curve(outcome, treatment, score) -> tuple[np.ndarray, np.ndarray]:
    """(rows k = 0..n, Q(k)) of the Qini curve."""
    y_t, y_c, n_t, n_c = _cumulative(outcome, treatment, score)
    q = y_t - y_c * np.divide(n_t, n_c, out=np.zeros(len(n_t)), where=n_c > 0)
    return np.arange(len(q) + 1), np.concatenate([[0.0], q])


def uplift_curve(outcome, treatment, score) -> tuple[np.ndarray, np.ndarray]:
    """(rows k = 0..n, U(k)) of the uplift curve."""
    y_t, y_c, n_t, n_c = _cumulative(outcome, treatment, score)
    rate_t = np.divide(y_t, n_t, out=np.zeros(len(n_t)), where=n_t > 0)
    rate_c = np.divide(y_c, n_c, out=np.zeros(len(n_c)), where=n_c > 0)
    k = np.arange(1, len(y_t) + 1)
    return np.arange(len(k) + 1), np.concatenate([[0.0], (rate_t - rate_c) * k])


def _area_over_random(k: np.ndarray, curve: np.ndarray) -> float:
    random = curve[-1] * k / k[-1]
    gap = curve - random
    return float(np.sum((gap[1:] + gap[:-1]) / 2.0) / float(k[-1]) ** 2)


def qini_coefficient(outcome, treatment, score) -> float:
    return _area_over_random(*qini_curve(outcome, treatment, score))


def auuc(outcome, treatment, score) -> float:
    return _area_over_random(*uplift_curve(outcome, treatment, score))


def uplift_by_decile(outcome, treatment, score, true_uplift=None) -> list[dict]:
    """Per decile of predicted uplift (highest first): rows, the mean prediction, the observed
    uplift (treated rate - control rate) and, when given, the mean true uplift."""
    y, t = _sorted(outcome, treatment, score)
    order = np.argsort(-np.asarray(score, dtype=np.float64).reshape(-1), kind="stable")
    predicted = np.asarray(score, dtype=np.float64).reshape(-1)[order]
    truth = None if true_uplift is None else np.asarray(true_uplift, dtype=np.float64)[order]
    result = []
    for part in np.array_split(np.arange(len(y)), 10):
        if len(part) == 0:
            continue
        treated, control = part[t[part]], part[~t[part]]
        observed = float("nan")
        if len(treated) and len(control):
            observed = float(y[treated].mean() - y[control].mean())
        row = {"rows": len(part), "predicted": float(predicted[part].mean()), "observed": observed}
        if truth is not None:
            row["true"] = float(truth[part].mean())
        result.append(row)
    return result
