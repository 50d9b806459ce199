"""A trained ranker on disk: its schema text, its config and its weights in one file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from adrank.features.schema import FeatureSchema, parse_schema
from adrank.models.ranker import MultiTaskRanker, RankerConfig

__all__ = ["load_checkpoint", "save_checkpoint"]

_FORMAT = "adrank-ranker-1"


def save_checkpoint(path: str | Path, model: MultiTaskRanker, metrics: Any = None) -> Path:
    """Write ``model`` (with the schema it was built from) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": _FORMAT,
        "schema": model.schema.text,
        "config": dataclasses.asdict(model.config),
        "state_dict": model.state_dict(),
        "metrics": metrics,
    }
    torch.save(payload, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[MultiTaskRanker, FeatureSchema, Any]:
    """(model in eval mode, its schema, the metrics saved with it) from ``path``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not its own
        raise ValueError(f"{path} is not an adrank checkpoint: {error}") from None
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an adrank checkpoint (format {_FORMAT!r})")
    schema = parse_schema(payload["schema"], source=f"{path}:schema")
    model = MultiTaskRanker(schema, RankerConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, schema, payload["metrics"]
