"""Post-hoc calibration of a trained head: fitted on held-out rows, applied as a torch op.

Glossary: ``raw`` the head's probability before calibration; ``z = logit(raw)``; ``kind``
``"identity"``, ``"platt"`` (``sigmoid(a * z + b)``), ``"spline"`` (``sigmoid(a * z + b +
sum_j c_j * relu(z - k_j))``: Platt with a few hinges ``k_j`` at quantiles of ``z``, so the
map may bend where a model is off in one tail but not the other; fitted as a logistic
regression, kept non-decreasing) or ``"isotonic"`` (a non-decreasing piecewise-linear map of
``raw`` through ``knots`` -> ``values``, fitted by pool-adjacent-violators); a *calibration*
is ``{task: {"kind": ..., parameters}}``, plain numbers, so it is saved inside the checkpoint
beside the weights and read back without pickle.

Every map is built from elementwise ops, broadcasting and a sum (no data-dependent branch,
no search), so they trace into TorchScript and export to ONNX inside the served dense model.
The conversion head is scored (and trained, ESMM) as ``pCTCVR = pCTR * pCVR`` over all
impressions, so its map ``h`` is fitted on the raw pCTCVR against the conversion label, and the
served pCVR is ``min(1, h(raw pCTCVR) / calibrated pCTR)``: the product the pipeline forms is
then ``h``'s calibrated pCTCVR (:class:`CalibratedHeads`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "CALIBRATION_KINDS",
    "CalibratedHeads",
    "CalibrationMap",
    "IsotonicMap",
    "PlattMap",
    "SplineMap",
    "build_map",
    "check_calibration",
    "fit_isotonic",
    "fit_platt",
    "fit_spline",
]

CALIBRATION_KINDS = ("identity", "platt", "spline", "isotonic")
_EPS = 1e-6


def _logit(p: Tensor) -> Tensor:
    p = p.clamp(_EPS, 1.0 - _EPS)
    return torch.log(p) - torch.log1p(-p)


class CalibrationMap(nn.Module):
    """The identity: a head without calibration."""

    def forward(self, raw: Tensor) -> Tensor:
        return raw


class PlattMap(CalibrationMap):
    """``sigmoid(a * logit(raw) + b)``: a linear map on the logit."""

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.register_buffer("a", torch.tensor(float(a)))
        self.register_buffer("b", torch.tensor(float(b)))

    def forward(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(self.a * _logit(raw) + self.b)


class SplineMap(CalibrationMap):
    """``sigmoid(a * z + b + sum_j c_j * relu(z - k_j))``, ``z = logit(raw)``."""

    def __init__(self, a: float, b: float, knots: Any, slopes: Any) -> None:
        super().__init__()
        self.register_buffer("a", torch.tensor(float(a)))
        self.register_buffer("b", torch.tensor(float(b)))
        self.register_buffer("knots", torch.as_tensor(np.asarray(knots, dtype=np.float32)))
        self.register_buffer("slopes", torch.as_tensor(np.asarray(slopes, dtype=np.float32)))

    def forward(self, raw: Tensor) -> Tensor:
        z = _logit(raw)
        hinges = (torch.relu(z - self.knots) * self.slopes).sum(dim=-1, keepdim=True)  # [B, 1]
        return torch.sigmoid(self.a * z + self.b + hinges)


class IsotonicMap(CalibrationMap):
    """Linear interpolation through ``knots`` (increasing) -> ``values`` (non-decreasing),
    constant outside them: ``values[0] + sum_i slope_i * min(relu(raw - knot_i), width_i)``."""

    def __init__(self, knots: Any, values: Any) -> None:
        super().__init__()
        knots = torch.as_tensor(np.asarray(knots, dtype=np.float32))
        values = torch.as_tensor(np.asarray(values, dtype=np.float32))
        widths = (knots[1:] - knots[:-1]).clamp_min(1e-12)
        self.register_buffer("start", values[:1].clone())
        self.register_buffer("knots", knots[:-1].clone())
        self.register_buffer("widths", widths)
        self.register_buffer("slopes", (values[1:] - values[:-1]) / widths)

    def forward(self, raw: Tensor) -> Tensor:
        steps = torch.minimum(torch.relu(raw - self.knots), self.widths)  # [B, K - 1]
        return self.start + (steps * self.slopes).sum(dim=-1, keepdim=True)


def check_calibration(calibration: Any, tasks: tuple[str, ...]) -> dict[str, dict] | None:
    """``calibration`` checked against the model's ``tasks`` (None: not calibrated)."""
    if calibration is None:
        return None
    if not isinstance(calibration, Mapping):
        raise TypeError(f"calibration must be a mapping task -> map, got {calibration!r}")
    for task, entry in calibration.items():
        if task not in tasks:
            raise ValueError(f"calibration: task {task!r} is not one of the model's {tasks}")
        if not isinstance(entry, Mapping) or entry.get("kind") not in CALIBRATION_KINDS:
            raise ValueError(
                f"calibration[{task!r}] must be a mapping with kind in {CALIBRATION_KINDS}"
            )
        if entry["kind"] == "spline":
            knots, slopes = entry.get("knots"), entry.get("slopes")
            if knots is None or slopes is None or len(knots) != len(slopes):
                raise ValueError(f"calibration[{task!r}]: spline needs as many knots as slopes")
        if entry["kind"] == "isotonic":
            knots, values = entry.get("knots"), entry.get("values")
            if knots is None or values is None or len(knots) != len(values) or len(knots) < 2:
                raise ValueError(f"calibration[{task!r}]: isotonic needs >= 2 knots and values")
    return {task: dict(entry) for task, entry in calibration.items()}


def build_map(entry: Mapping[str, Any] | None) -> CalibrationMap:
    """The torch op of one head's calibration entry (identity for None)."""
    if entry is None or entry["kind"] == "identity":
        return CalibrationMap()
    if entry["kind"] == "platt":
        return PlattMap(entry["a"], entry["b"])
    if entry["kind"] == "spline":
        return SplineMap(entry["a"], entry["b"], entry["knots"], entry["slopes"])
    return IsotonicMap(entry["knots"], entry["values"])


class CalibratedHeads(nn.Module):
    """The raw rates of the heads (``tasks`` order) -> the calibrated ones, as one op."""

    def __init__(self, tasks: Sequence[str], calibration: Mapping[str, Any] | None) -> None:
        super().__init__()
        calibration = calibration or {}
        self.maps = nn.ModuleList([build_map(calibration.get(task)) for task in tasks])
        self.conversion = tasks.index("conversion") if "conversion" in tasks else -1
        self.click = tasks.index("click")

    def forward(self, raw: list[Tensor]) -> list[Tensor]:
        rates: list[Tensor] = []
        for index, calibrate in enumerate(self.maps):
            if index == self.conversion:
                ctcvr = calibrate(raw[self.click] * raw[index])
                ctr = self.maps[self.click](raw[self.click]).clamp_min(1e-7)
                rates.append((ctcvr / ctr).clamp(0.0, 1.0))
            else:
                rates.append(calibrate(raw[index]))
        return rates


def _validated(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in length")
    if len(labels) < 2:
        raise ValueError(f"labels: need at least 2 rows to calibrate, got {len(labels)}")
    return labels, scores


def fit_platt(labels: Any, scores: Any, iterations: int = 50) -> dict[str, Any]:
    """Platt scaling by Newton's method on the log loss of ``sigmoid(a * logit(s) + b)``."""
    labels, scores = _validated(labels, scores)
    p = np.clip(scores, _EPS, 1.0 - _EPS)
    x = np.log(p) - np.log1p(-p)
    a, b = 1.0, 0.0
    for _ in range(iterations):
        q = 1.0 / (1.0 + np.exp(-(a * x + b)))
        w = q * (1.0 - q) + 1e-12
        g = np.array([np.sum((q - labels) * x), np.sum(q - labels)])
        h = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        step = np.linalg.solve(h + 1e-9 * np.eye(2), g)
        a, b = a - step[0], b - step[1]
        if np.max(np.abs(step)) < 1e-10:
            break
    return {"kind": "platt", "a": float(a), "b": float(b)}


def _newton_logistic(x: np.ndarray, labels: np.ndarray, ridge: float) -> np.ndarray:
    """Weights ``w`` of ``sigmoid(x @ w)`` by Newton's method on the log loss (+ ridge)."""
    w = np.zeros(x.shape[1])
    for _ in range(50):
        q = 1.0 / (1.0 + np.exp(-(x @ w)))
        g = x.T @ (q - labels) + ridge * w
        h = (x * (q * (1.0 - q) + 1e-12)[:, None]).T @ x + ridge * np.eye(len(w))
        step = np.linalg.solve(h, g)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w


def fit_spline(labels: Any, scores: Any, num_knots: int = 4) -> dict[str, Any]:
    """Platt with hinges: a logistic regression of labels on ``[z, 1, relu(z - k_j)]``,
    ``k_j`` at the ``j / (num_knots + 1)`` quantiles of ``z = logit(scores)``. A hinge that
    would make the map decrease somewhere is dropped and the rest refitted."""
    labels, scores = _validated(labels, scores)
    z = np.log(np.clip(scores, _EPS, 1.0 - _EPS)) - np.log1p(-np.clip(scores, _EPS, 1.0 - _EPS))
    knots = np.unique(np.quantile(z, np.arange(1, num_knots + 1) / (num_knots + 1)))
    ridge = 1e-6 * len(z)  # a hinge with few rows past it stays near 0
    while True:
        x = np.column_stack([z, np.ones_like(z), *(np.maximum(z - k, 0.0) for k in knots)])
        w = _newton_logistic(x, labels, ridge)
        slopes_by_segment = w[0] + np.concatenate([[0.0], np.cumsum(w[2:])])
        if (slopes_by_segment >= 0).all() or len(knots) == 0:
            break
        knots = np.delete(knots, int(np.argmin(slopes_by_segment[1:])))
    if w[0] < 0:  # not even Platt's line rises: keep the rates as they are
        return {"kind": "identity"}
    return {
        "kind": "spline",
        "a": float(w[0]),
        "b": float(w[1]),
        "knots": knots.tolist(),
        "slopes": w[2:].tolist(),
    }


def fit_isotonic(labels: Any, scores: Any, max_knots: int = 256) -> dict[str, Any]:
    """Isotonic regression (pool-adjacent-violators) of labels on scores, as knots at each
    block's mean score and values at its rate; at most ``max_knots`` (blocks merged in order
    of score for a smaller served op). Values are kept inside [1e-6, 1 - 1e-6]."""
    labels, scores = _validated(labels, scores)
    order = np.argsort(scores, kind="stable")
    y, x = labels[order], scores[order]
    # Blocks: [sum of y, sum of x, count]; merge while the previous block's mean is >= this one's.
    sums_y: list[float] = []
    sums_x: list[float] = []
    counts: list[float] = []
    for yi, xi in zip(y, x, strict=True):
        sums_y.append(yi)
        sums_x.append(xi)
        counts.append(1.0)
        while len(sums_y) > 1 and sums_y[-2] * counts[-1] >= sums_y[-1] * counts[-2]:
            last_y, last_x, last_n = sums_y.pop(), sums_x.pop(), counts.pop()
            sums_y[-1] += last_y
            sums_x[-1] += last_x
            counts[-1] += last_n
    sy, sx, n = np.array(sums_y), np.array(sums_x), np.array(counts)
    if len(n) > max_knots:  # merge neighbouring blocks into max_knots groups of equal rows
        group = np.minimum((np.cumsum(n) - n) * max_knots // n.sum(), max_knots - 1).astype(int)
        sy, sx, n = (np.bincount(group, weights=w) for w in (sy, sx, n))
        keep = n > 0
        sy, sx, n = sy[keep], sx[keep], n[keep]
    knots = sx / n
    values = np.clip(sy / n, _EPS, 1.0 - _EPS)
    if len(knots) == 1:  # a single block: a constant map
        knots = np.array([0.0, 1.0])
        values = np.repeat(values, 2)
    return {"kind": "isotonic", "knots": knots.tolist(), "values": values.tolist()}
