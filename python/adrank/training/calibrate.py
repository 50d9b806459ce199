"""Choosing and fitting each head's post-hoc calibration on rows the model never trained on.

Glossary: *calibration rows* a random part of the training split held back from fitting
(``TrainConfig.calibration_fraction``); *choice* ``"auto"`` (the lowest 2-fold cross-fitted
log loss of identity, Platt, spline and isotonic on the calibration rows, or the simplest of
them within one standard error of it), ``"platt"``,
``"spline"`` or ``"isotonic"`` (:mod:`adrank.models.calibration`); the winner is refitted on
all the calibration rows. The conversion head is calibrated on its raw pCTCVR against the
conversion label over every row, as ESMM scores it (see
:class:`adrank.models.calibration.CalibratedHeads`); click and negative likewise. The held-out
split is never used here, so the held-out metrics of the calibrated model stay out of sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from adrank.features.pipeline import FeatureBatch
from adrank.models.calibration import (
    CalibratedHeads,
    build_map,
    fit_isotonic,
    fit_platt,
    fit_spline,
)
from adrank.models.ranker import MultiTaskRanker

__all__ = [
    "CALIBRATION_CHOICES",
    "apply_entry",
    "calibrated_predictions",
    "choose_calibration",
    "fit_calibration",
    "fit_calibration_scores",
]

CALIBRATION_CHOICES = ("none", "auto", "platt", "spline", "isotonic")
_FITTERS = {"platt": fit_platt, "spline": fit_spline, "isotonic": fit_isotonic}
_SCORE_OF = {"click": "ctr", "conversion": "ctcvr", "negative": "neg"}  # what each map fits
_RATE_OF = {"click": "ctr", "conversion": "cvr", "negative": "neg"}  # each head's rate


def apply_entry(entry: dict[str, Any] | None, scores: np.ndarray) -> np.ndarray:
    """``scores`` through the torch op of ``entry`` (the op that is exported), as float64."""
    raw = torch.from_numpy(np.asarray(scores, dtype=np.float32).reshape(-1, 1))
    with torch.no_grad():
        return build_map(entry)(raw).reshape(-1).double().numpy()


def choose_calibration(
    labels: np.ndarray, scores: np.ndarray, choice: str = "auto", seed: int = 0
) -> tuple[dict[str, Any], dict[str, float]]:
    """(the fitted entry, the cross-fitted log loss of each candidate) for one head."""
    if choice not in CALIBRATION_CHOICES[1:]:
        raise ValueError(f"choice must be one of {list(CALIBRATION_CHOICES[1:])}, got {choice!r}")
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    candidates = ["identity", "platt", "spline", "isotonic"] if choice == "auto" else [choice]
    halves = np.random.default_rng(seed).permutation(len(labels)) % 2 == 0
    row_losses: dict[str, np.ndarray] = {}
    for kind in candidates:
        row_losses[kind] = np.empty(len(labels))
        for fit_rows in (halves, ~halves):
            if kind == "identity":
                predicted = scores[~fit_rows]
            else:
                entry = _FITTERS[kind](labels[fit_rows], scores[fit_rows])
                predicted = apply_entry(entry, scores[~fit_rows])
            row_losses[kind][~fit_rows] = _row_log_loss(labels[~fit_rows], predicted)
    losses = {kind: float(values.mean()) for kind, values in row_losses.items()}
    best = _simplest_within_one_se(row_losses, min(losses, key=losses.__getitem__))
    entry = {"kind": "identity"} if best == "identity" else _FITTERS[best](labels, scores)
    return entry, losses


def _row_log_loss(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Each row's cross-entropy (as :func:`adrank.training.metrics.log_loss` averages it)."""
    p = np.clip(predicted, 1e-7, 1.0 - 1e-7)
    return -(labels * np.log(p) + (1.0 - labels) * np.log1p(-p))


def _simplest_within_one_se(row_losses: dict[str, np.ndarray], best: str) -> str:
    """The first (simplest) candidate whose mean loss is within one standard error of the
    best's (paired over the rows): a more flexible map must earn its place, not win by the
    noise of the calibration rows (which moves a decile's calibration by a few percent)."""
    for kind, values in row_losses.items():
        gap = values - row_losses[best]
        if gap.mean() <= gap.std() / np.sqrt(len(gap)):
            return kind
    return best


def fit_calibration(
    model: MultiTaskRanker, batch: FeatureBatch, choice: str = "auto", seed: int = 0
) -> dict[str, Any]:
    """Calibrate ``model`` in place on ``batch`` (its calibration rows); returns
    ``{task: {"kind", "cross_fitted_log_loss": {candidate: loss}}}``."""
    from adrank.training.loop import predict

    model.set_calibration(None)
    entries, report = fit_calibration_scores(
        model.tasks, batch.labels, predict(model, batch), choice, seed
    )
    model.set_calibration(entries)
    return report


def fit_calibration_scores(
    tasks: tuple[str, ...],
    labels: dict[str, np.ndarray],
    raw: dict[str, np.ndarray],
    choice: str = "auto",
    seed: int = 0,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(the calibration ``{task: entry}``, the report of :func:`fit_calibration`) from the
    calibration rows' labels per task and the uncalibrated model's predictions on them
    (``raw``, as :func:`adrank.training.loop.predict` returns them)."""
    entries: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {}
    for task in tasks:
        task_labels = labels.get(task)
        if task_labels is None:
            continue
        scores = raw[_SCORE_OF[task]]
        if len(task_labels) < 2 or task_labels.min() == task_labels.max():
            continue  # nothing to learn a map from: the head stays as trained
        entries[task], losses = choose_calibration(task_labels, scores, choice, seed)
        report[task] = {"kind": entries[task]["kind"], "cross_fitted_log_loss": losses}
    return entries, report


def calibrated_predictions(
    tasks: tuple[str, ...], calibration: dict[str, Any], raw: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """What the model calibrated with ``calibration`` predicts, from its uncalibrated
    predictions ``raw`` (the keys of :func:`adrank.training.loop.predict`), through the same
    op (:class:`CalibratedHeads`)."""
    keys = [_RATE_OF[task] for task in tasks]
    heads = CalibratedHeads(tasks, calibration)
    with torch.no_grad():
        columns = [
            torch.from_numpy(np.asarray(raw[k], dtype=np.float32)).reshape(-1, 1) for k in keys
        ]
        rates = heads(columns)  # [B, 1] each, as the model's heads
    result = {k: r.reshape(-1).double().numpy() for k, r in zip(keys, rates, strict=True)}
    if "cvr" in result:
        result["ctcvr"] = result["ctr"] * result["cvr"]
    return result
