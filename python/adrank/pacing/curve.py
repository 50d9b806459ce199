"""The expected share of a day's traffic by time of day: the shape a budget is spent along.

A budget spread evenly over the clock would starve the evening peak and overspend at night;
pacing instead aims at ``budget * cumulative(t)``, the share of the day's traffic expected
before ``t``. The curve is 24 hourly weights (any positive scale), linear within an hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Share of daily requests per local hour for a short-video feed: a night trough at 3-5 h and an
# evening peak at 20-22 h (about 8x the trough). Replace with the placement's measured curve.
DEFAULT_HOURLY_WEIGHTS = (
    2.6, 1.8, 1.2, 0.9, 0.8, 0.9, 1.4, 2.3, 3.2, 3.8, 4.1, 4.4,
    4.6, 4.4, 4.2, 4.2, 4.4, 4.8, 5.4, 6.2, 6.8, 7.0, 6.4, 4.6,
)  # fmt: skip


_HOURS = np.linspace(0.0, 1.0, 25)


@dataclass(frozen=True)
class TrafficCurve:
    """Expected traffic through a day as 24 hourly weights (normalized on use)."""

    hourly_weights: tuple[float, ...] = DEFAULT_HOURLY_WEIGHTS

    def __post_init__(self) -> None:
        weights = np.asarray(self.hourly_weights, dtype=np.float64)
        if weights.shape != (24,):
            raise ValueError(f"hourly_weights must have 24 values, got {weights.size}")
        if not np.isfinite(weights).all() or (weights <= 0).any():
            raise ValueError("hourly_weights must be finite and > 0")
        object.__setattr__(self, "hourly_weights", tuple(float(w) for w in weights))
        knots = np.concatenate([[0.0], np.cumsum(weights / weights.sum())])
        knots[-1] = 1.0
        object.__setattr__(self, "_knots", knots)  # cached: cumulative runs per controller step

    @classmethod
    def flat(cls) -> TrafficCurve:
        return cls((1.0,) * 24)

    @classmethod
    def from_counts(cls, counts: Sequence[float]) -> TrafficCurve:
        """A curve from observed requests per hour (zero hours get a small floor)."""
        counts = np.asarray(counts, dtype=np.float64)
        return cls(tuple(np.maximum(counts, 1e-3 * max(counts.max(), 1.0))))

    @property
    def shares(self) -> np.ndarray:
        """Share of the day's traffic in each hour (float64 [24], sums to 1)."""
        weights = np.asarray(self.hourly_weights)
        return weights / weights.sum()

    def cumulative(self, day_fraction: float | np.ndarray) -> np.ndarray:
        """Share of the day's traffic expected before ``day_fraction`` (0 at 0, 1 at 1)."""
        return np.interp(day_fraction, _HOURS, self._knots)

    def rate(self, day_fraction: float | np.ndarray) -> np.ndarray:
        """Traffic density relative to the day's mean (1.0 = an average hour)."""
        hour = np.minimum((np.asarray(day_fraction) * 24).astype(np.int64), 23)
        return self.shares[hour] * 24.0
