"""Ads logs: readers for the formats logs come in, the synthetic short-video log generator,
generated logs in public layouts, and the Criteo reader."""

from adrank.data.criteo import read_criteo
from adrank.data.log_errors import BadRowBudget, LogError
from adrank.data.readers import FORMATS, LogReader, open_log
from adrank.data.synthetic import (
    SyntheticConfig,
    SyntheticLog,
    generate_log,
    read_log,
)

__all__ = [
    "FORMATS",
    "BadRowBudget",
    "LogError",
    "LogReader",
    "SyntheticConfig",
    "SyntheticLog",
    "generate_log",
    "open_log",
    "read_criteo",
    "read_log",
]
