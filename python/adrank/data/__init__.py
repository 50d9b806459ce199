"""Ads logs: the synthetic short-video log generator and the Criteo reader."""

from adrank.data.criteo import read_criteo
from adrank.data.synthetic import (
    SyntheticConfig,
    SyntheticLog,
    generate_log,
    read_log,
)

__all__ = [
    "SyntheticConfig",
    "SyntheticLog",
    "generate_log",
    "read_criteo",
    "read_log",
]
