"""A trained ranker on disk: its schema text, its config, its tasks and its weights in one file.

``tasks`` are the tasks the model was trained on (the schema's labels, ``schema.tasks``): the
model has a tower for each and no other. ``config["model"]`` names the dense architecture
(absent: DCN-v2, the only one before); ``calibration`` the post-hoc map per task, as plain
numbers (None: uncalibrated). A checkpoint written before tasks were recorded holds
three towers; loading keeps only those of the schema's tasks (the others never saw a label).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from adrank.features.schema import TASKS, FeatureSchema, parse_schema
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
        "tasks": list(model.tasks),
        "state_dict": model.state_dict(),
        "metrics": metrics,
        "calibration": model.calibration,
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
    state = payload["state_dict"]
    tasks = payload.get("tasks")
    if tasks is None:  # written before tasks were recorded: one tower per task of TASKS
        state = _keep_towers(state, [TASKS.index(task) for task in model.tasks])
    elif tuple(tasks) != model.tasks:
        raise ValueError(
            f"{path}: the checkpoint's tasks {list(tasks)} differ from its schema's labels "
            f"{list(model.tasks)}"
        )
    model.load_state_dict(state)
    model.set_calibration(payload.get("calibration"))  # absent: written before calibration
    model.eval()
    return model, schema, payload["metrics"]


def _keep_towers(state: dict[str, Any], kept: list[int]) -> dict[str, Any]:
    """``state`` with only the towers at indices ``kept``, renumbered from 0."""
    prefix = "dense.towers."
    result = {}
    for key, value in state.items():
        if key.startswith(prefix):
            index, rest = key[len(prefix) :].split(".", 1)
            if int(index) not in kept:
                continue
            key = f"{prefix}{kept.index(int(index))}.{rest}"
        result[key] = value
    return result
