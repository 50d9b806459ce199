"""A synthetic day of ad traffic replayed through the Ranker, with pacing on and off."""

from adrank.simulation.experiment import DayRun, Experiment, day_run, run_experiment
from adrank.simulation.replay import DayResult, simulate_day
from adrank.simulation.report import write_report
from adrank.simulation.world import SimClock, SyntheticWorld, make_world, simulation_world

__all__ = [
    "DayResult",
    "DayRun",
    "Experiment",
    "SimClock",
    "SyntheticWorld",
    "day_run",
    "make_world",
    "run_experiment",
    "simulate_day",
    "simulation_world",
    "write_report",
]
