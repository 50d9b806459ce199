"""Data-quality gates on a log before training: declarative rules (pandera), drift (PSI).

Glossary: see :mod:`adrank.quality.rules` (the rules), :mod:`adrank.quality.settings` (their
thresholds), :mod:`adrank.quality.psi` (drift) and :mod:`adrank.quality.gate` (the report).
"""

from adrank.quality.gate import Finding, QualityError, QualityReport, check_frame, to_frame
from adrank.quality.psi import population_stability_index
from adrank.quality.settings import QualitySettings, load_settings

__all__ = [
    "Finding",
    "QualityError",
    "QualityReport",
    "QualitySettings",
    "check_frame",
    "load_settings",
    "population_stability_index",
    "to_frame",
]
