"""The thresholds of the data-quality gates, each a setting with a default, readable from TOML.

Glossary: *error* a finding that stops ``adrank train``; *warning* one that is printed and lets
it go on; *PSI* population stability index of a column against the reference log.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["QualitySettings", "load_settings"]


@dataclasses.dataclass(frozen=True)
class QualitySettings:
    """Thresholds (rates are fractions of rows); columns a rule reads are skipped when absent."""

    # A feature column's nulls above this warn, and above that stop training. Generous by
    # default: public logs (Criteo) miss many values of some columns, which the pipeline fills.
    null_rate_warning: float = 0.5
    null_rate_error: float = 0.95
    label_rate_min: float = 1e-4  # a label rate outside [min, max] warns
    label_rate_max: float = 0.5
    id_column: str = "impression_id"  # duplicates are an error
    timestamp_column: str = "timestamp"  # seconds since the epoch
    timestamp_min: float = 946_684_800.0  # 2000-01-01
    timestamp_max: float | None = None  # None: now plus one day
    click_time_column: str = "click_time"
    conversion_time_column: str = "conversion_time"
    attribution_window_s: float = 7 * 86_400.0  # a conversion later than this after its click
    late_conversion_rate_error: float = 0.01  # ... warns; above this share of conversions, error
    psi_bins: int = 10
    psi_warning: float = 0.1
    psi_error: float = 0.25

    def __post_init__(self) -> None:
        for name in ("null_rate_warning", "null_rate_error", "label_rate_min", "label_rate_max"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.null_rate_warning > self.null_rate_error:
            raise ValueError("null_rate_warning must be <= null_rate_error")
        if self.label_rate_min > self.label_rate_max:
            raise ValueError("label_rate_min must be <= label_rate_max")
        if self.attribution_window_s <= 0:
            raise ValueError(f"attribution_window_s must be > 0, got {self.attribution_window_s}")
        if self.psi_bins < 2:
            raise ValueError(f"psi_bins must be >= 2, got {self.psi_bins}")
        if not 0.0 < self.psi_warning <= self.psi_error:
            raise ValueError("psi_warning must be > 0 and <= psi_error")


def load_settings(path: str | Path | None) -> QualitySettings:
    """Settings from a TOML file's ``[quality]`` table (or its top level); defaults for None."""
    if path is None:
        return QualitySettings()
    path = Path(path)
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"{path}: cannot read quality settings: {error}") from None
    data = data.get("quality", data)
    known = {f.name for f in dataclasses.fields(QualitySettings)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown quality setting {unknown[0]!r} (known: {sorted(known)})")
    return QualitySettings(**data)
