"""A synthetic day of ad traffic replayed through a ``rank`` callable, with pacing on and off."""

from adrank.simulation.replay import DayResult, simulate_day
from adrank.simulation.report import write_report
from adrank.simulation.standin import StandInRanker
from adrank.simulation.world import SimClock, SyntheticWorld, make_world

__all__ = [
    "DayResult",
    "SimClock",
    "StandInRanker",
    "SyntheticWorld",
    "make_world",
    "simulate_day",
    "write_report",
]
