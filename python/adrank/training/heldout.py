"""The held-out split saved beside a checkpoint, so that another run scores the same rows.

Glossary: ``<checkpoint>.heldout.npy`` holds the held-out row numbers (int64, 0-based among
the rows kept after bad rows were skipped); ``<checkpoint>.heldout.json`` says which log (its
resolved path, or null for a drawn one), how many rows it had, and the seed and fraction that
reproduce the split with :func:`adrank.training.loop.split_holdout`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from adrank.training.loop import TrainConfig

__all__ = ["HeldOut", "load_heldout", "save_heldout"]

_FORMAT = "adrank-heldout-1"


@dataclasses.dataclass(frozen=True)
class HeldOut:
    rows: np.ndarray
    data: str | None
    num_rows: int
    seed: int
    fraction: float

    def matches(self, path: Path, num_rows: int) -> bool:
        """Whether a log at ``path`` of ``num_rows`` rows is the one this split is of."""
        return self.data == str(Path(path).resolve()) and self.num_rows == num_rows


def _paths(checkpoint: Path) -> tuple[Path, Path]:
    return Path(f"{checkpoint}.heldout.json"), Path(f"{checkpoint}.heldout.npy")


def save_heldout(
    checkpoint: str | Path,
    rows: np.ndarray,
    *,
    data: str | Path | None,
    num_rows: int,
    config: TrainConfig,
) -> None:
    meta, array = _paths(Path(checkpoint))
    meta.parent.mkdir(parents=True, exist_ok=True)
    np.save(array, np.asarray(rows, dtype=np.int64))
    payload = {
        "format": _FORMAT,
        "data": None if data is None else str(Path(data).resolve()),
        "num_rows": int(num_rows),
        "seed": config.seed,
        "holdout": config.holdout,
        "rows_file": array.name,
    }
    meta.write_text(json.dumps(payload, indent=2) + "\n")


def load_heldout(checkpoint: str | Path) -> HeldOut | None:
    """The split saved beside ``checkpoint``, or None when there is none."""
    meta, array = _paths(Path(checkpoint))
    if not meta.exists() or not array.exists():
        return None
    try:
        payload = json.loads(meta.read_text())
    except ValueError as error:
        raise ValueError(f"{meta}: not valid JSON: {error}") from None
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{meta}: not an adrank held-out split (format {_FORMAT!r})")
    return HeldOut(
        np.load(array),
        payload["data"],
        int(payload["num_rows"]),
        int(payload["seed"]),
        float(payload["holdout"]),
    )
