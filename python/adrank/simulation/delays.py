"""How late spend events reach pacing in a simulated day: one :class:`EventDelays` per world.

Glossary: a *lag* is whole minutes between the minute an ad was shown and the minute its event
is recorded (0: at the end of that same minute). Every event carries its impression's time, so
a click recorded 10 minutes late still counts at the time the ad was served.

Delays are drawn per event: ``uniform`` picks 0..``max`` minutes alike, ``exponential`` draws
``floor(Exp(mean))`` cut at ``max``. The pacing settings a world is paced with
(:meth:`EventDelays.pacing_config`) are told the longest report lag and the attribution window
of the charged events, as a production deployment is told its pipeline's delays. In this world
clicks are charged (CPC) and conversions never are (oCPM pays per impression), so the window is
the clicks'.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from adrank.pacing import PacingConfig


@dataclass(frozen=True)
class Lag:
    """One kind of event's lag distribution, in minutes."""

    shape: str  # uniform | exponential
    max: int  # the longest lag, in minutes
    mean: float = 0.0  # exponential only

    def __post_init__(self) -> None:
        if self.shape not in ("uniform", "exponential"):
            raise ValueError(f"shape must be uniform or exponential, got {self.shape!r}")
        if not (isinstance(self.max, int) and 0 <= self.max <= 24 * 60):
            raise ValueError(f"max must be whole minutes in [0, 1440], got {self.max!r}")
        if self.shape == "exponential" and not self.mean > 0:
            raise ValueError(f"an exponential lag needs a mean > 0, got {self.mean!r}")

    def draw(self, rng: np.random.Generator) -> int:
        if self.max == 0:
            return 0  # no draw: a world without this lag keeps its random stream
        if self.shape == "uniform":
            return int(rng.integers(0, self.max + 1))
        return min(int(rng.exponential(self.mean)), self.max)


@dataclass(frozen=True)
class EventDelays:
    name: str
    impression: Lag  # the report lag of an impression
    click: Lag  # of a click, after its impression's minute
    conversion: Lag  # of a conversion, after its impression's minute

    def pacing_config(self, base: PacingConfig | None = None) -> PacingConfig:
        """``base`` told these delays: the report delay covers the impressions' longest lag,
        the attribution window the clicks' (each plus the minute itself)."""
        base = base or PacingConfig()
        report = 60.0 * (self.impression.max + 1)
        window = 60.0 * (self.click.max + 1)
        return dataclasses.replace(base, report_delay_s=report, attribution_window_s=window)


PROMPT = EventDelays(
    "prompt",  # the default day: everything within a few minutes
    impression=Lag("uniform", 0),
    click=Lag("uniform", 2),
    conversion=Lag("exponential", 60, mean=5.0),
)
SLOW_REPORTS = EventDelays(
    "slow-reports",  # a lagging pipeline: impressions up to 3 minutes late, clicks up to 6
    impression=Lag("uniform", 3),
    click=Lag("uniform", 6),
    conversion=Lag("exponential", 60, mean=10.0),
)
LATE_CLICKS = EventDelays(
    "late-clicks",  # prompt impressions, clicks with a long tail up to 14 minutes
    impression=Lag("uniform", 1),
    click=Lag("exponential", 14, mean=4.0),
    conversion=Lag("exponential", 60, mean=20.0),
)
DELAYS = {d.name: d for d in (PROMPT, SLOW_REPORTS, LATE_CLICKS)}
