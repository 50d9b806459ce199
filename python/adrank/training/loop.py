"""Training the multi-task ranker: a held-out split, minibatch Adam, metrics per task, and
optionally post-hoc calibration (:mod:`adrank.training.calibrate`).

Deterministic for a seed: the split, the initial weights and the batch order come from it, and
torch runs on a fixed number of threads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from adrank.features.pipeline import FeatureBatch, FeaturePipeline
from adrank.features.schema import FeatureSchema
from adrank.models.ranker import MultiTaskRanker, RankerConfig, esmm_loss
from adrank.training.metrics import task_metrics

__all__ = [
    "MIN_STEPS",
    "Stepper",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "fit",
    "predict",
    "split_holdout",
    "to_torch",
    "train",
    "training_warnings",
]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: Adagrad for the embedding tables, Adam for the dense part."""

    epochs: int = 1
    batch_size: int = 1024
    learning_rate: float = 1e-2
    embedding_learning_rate: float = 1e-1
    embedding_weight_decay: float = 0.0
    # {table name: decay} for tables that need their own (a large id table whose rows see a
    # few hundred rows each shrinks more than a small one); the rest take the one above.
    table_weight_decay: Mapping[str, float] = dataclasses.field(default_factory=dict)
    holdout: float = 0.2
    seed: int = 0
    threads: int = 1
    progress: bool = False
    # Post-hoc calibration (adrank.training.calibrate): "none", "auto", "platt", "spline",
    # "isotonic",
    # fitted on calibration_fraction of the training rows, which the model does not fit.
    calibration: str = "none"
    calibration_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.learning_rate > 0 and self.embedding_learning_rate > 0):
            raise ValueError("learning rates must be > 0")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")
        if not isinstance(self.table_weight_decay, Mapping):
            raise TypeError(
                "table_weight_decay must be a mapping table -> decay, got "
                f"{type(self.table_weight_decay).__name__}"
            )
        for table, decay in {"*": self.embedding_weight_decay, **self.table_weight_decay}.items():
            if not decay >= 0.0:
                name = (
                    "embedding_weight_decay" if table == "*" else f"table_weight_decay[{table!r}]"
                )
                raise ValueError(f"{name} must be >= 0, got {decay}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.calibration not in ("none", "auto", "platt", "spline", "isotonic"):
            raise ValueError(
                "calibration must be one of none, auto, platt, spline, isotonic, got "
                f"{self.calibration!r}"
            )
        if not 0.0 < self.calibration_fraction < 1.0:
            raise ValueError(
                f"calibration_fraction must be in (0, 1), got {self.calibration_fraction}"
            )


# Fewer optimizer steps than this rarely move a ranker far from its initial weights.
MIN_STEPS = 300


@dataclasses.dataclass
class TrainResult:
    """The trained model, held-out metrics per task, mean losses per epoch, held-out rows, and
    warnings a person should read (too few steps, a held-out set without both classes)."""

    model: MultiTaskRanker
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    heldout_rows: np.ndarray
    warnings: list[str] = dataclasses.field(default_factory=list)
    # With calibration: the held-out metrics before it, and the choice made per task.
    uncalibrated_metrics: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None


def training_warnings(train_rows: int, heldout: FeatureBatch, config: TrainConfig) -> list[str]:
    """What makes held-out figures meaningless: too few steps, a class missing from a task."""
    found = []
    steps = config.epochs * -(-train_rows // config.batch_size)
    if steps < MIN_STEPS:
        found.append(
            f"only {steps} optimizer steps ({train_rows:,} training rows, batch size "
            f"{config.batch_size}, {config.epochs} epoch(s)); fewer than {MIN_STEPS} rarely "
            "train a ranker: lower --batch-size or raise --epochs"
        )
    for task, labels in heldout.labels.items():
        positives = int(labels.sum())
        if positives == 0 or positives == len(labels):
            missing = "positive" if positives == 0 else "negative"
            found.append(
                f"the held-out set ({len(labels):,} rows) has no {missing} {task} label: its "
                f"AUC is undefined (nan); use a larger log or --holdout"
            )
    return found


def split_holdout(num_rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows), a random split of ``range(num_rows)`` for ``seed``."""
    rows = np.random.default_rng(seed).permutation(num_rows)
    held = max(1, round(num_rows * fraction))
    if held >= num_rows:
        raise ValueError(f"{num_rows} rows leave none to train on with holdout {fraction}")
    return np.sort(rows[held:]), np.sort(rows[:held])


def to_torch(
    batch: FeatureBatch,
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """The model's inputs of a batch as tensors (no copy)."""
    sparse = {
        name: (torch.from_numpy(f.values), torch.from_numpy(f.offsets))
        for name, f in batch.sparse.items()
    }
    return sparse, torch.from_numpy(batch.dense)


def _minibatches(batch: FeatureBatch, size: int):
    for start in range(0, len(batch), size):
        yield batch.take(slice(start, start + size))


class Stepper:
    """The optimizers of one training run and one step of them on a minibatch.

    Tables learn with Adagrad, as DLRM's do: a row with no gradient does not move, and a rare
    id's row is not pushed as hard as Adam's normalized steps push it (those break the
    calibration of rare labels). Dense gradients: at these sizes one step over every row costs
    less than coalescing sparse gradients (measured: 10x faster steps). The learning rates
    decay linearly to zero over ``total_steps``: the last steps settle instead of jittering,
    which is what calibration on a short run depends on. Each table decays with
    ``config.table_weight_decay``'s value for it, else ``embedding_weight_decay``.
    """

    def __init__(self, model: MultiTaskRanker, config: TrainConfig, total_steps: int) -> None:
        self.model = model
        tables = model.sparse.tables
        unknown = sorted(set(config.table_weight_decay) - set(tables))
        if unknown:
            raise ValueError(
                f"table_weight_decay: no table {unknown[0]!r} in the schema (tables: "
                f"{sorted(tables)})"
            )
        groups = [
            {
                "params": [table],
                "weight_decay": config.table_weight_decay.get(name, config.embedding_weight_decay),
            }
            for name, table in tables.items()
        ]
        self.optimizers = [
            torch.optim.Adagrad(groups, lr=config.embedding_learning_rate),
            torch.optim.Adam(model.dense.parameters(), lr=config.learning_rate),
        ]
        total = max(1, total_steps)
        self.schedulers = [
            torch.optim.lr_scheduler.LambdaLR(o, lambda step: max(0.0, 1.0 - step / total))
            for o in self.optimizers
        ]

    def step(self, part: FeatureBatch) -> tuple[float, dict[str, float]]:
        """One optimizer step on ``part``: (the loss, each task's part of it)."""
        sparse, dense = to_torch(part)
        labels = {task: torch.from_numpy(label) for task, label in part.labels.items()}
        loss, parts = esmm_loss(self.model.logits(sparse, dense), labels)
        for optimizer in self.optimizers:
            optimizer.zero_grad()
        loss.backward()
        for optimizer, scheduler in zip(self.optimizers, self.schedulers, strict=True):
            optimizer.step()
            scheduler.step()
        return float(loss.detach()), parts


def fit(model: MultiTaskRanker, batch: FeatureBatch, config: TrainConfig) -> list[dict[str, float]]:
    """Train ``model`` on every row of ``batch``; returns the mean losses of each epoch."""
    if not batch.labels:
        raise ValueError("the batch has no labels to train on")
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    model.dense.set_dense_statistics(torch.from_numpy(batch.dense))
    stepper = Stepper(model, config, config.epochs * -(-len(batch) // config.batch_size))
    history = []
    model.train()
    for epoch in range(config.epochs):
        shuffled = batch.take(rng.permutation(len(batch)))
        steps = range(0, len(shuffled), config.batch_size)
        progress = _progress(steps, f"epoch {epoch + 1}/{config.epochs}", config.progress)
        sums: dict[str, float] = {}
        for start in progress:
            part = shuffled.take(slice(start, start + config.batch_size))
            loss, parts = stepper.step(part)
            for task, value in parts.items():
                sums[task] = sums.get(task, 0.0) + value * len(part)
            if hasattr(progress, "set_postfix"):
                progress.set_postfix(loss=f"{loss:.4f}")
        history.append({task: total / len(batch) for task, total in sums.items()})
    model.eval()
    return history


def _progress(steps: range, description: str, enabled: bool):
    if not enabled:
        return steps
    from tqdm import tqdm

    return tqdm(steps, desc=description, unit="batch", leave=False)


@torch.no_grad()
def predict(model: MultiTaskRanker, batch: FeatureBatch, batch_size: int = 8192) -> dict:
    """``{"ctr", "cvr", "neg", "ctcvr"}`` probabilities ``[B]`` (float64) for every row; only
    the model's trained tasks (``ctcvr`` with conversion)."""
    model.eval()
    key_of = {"click": "ctr", "conversion": "cvr", "negative": "neg"}
    parts: dict[str, list[np.ndarray]] = {key_of[task]: [] for task in model.tasks}
    for part in _minibatches(batch, batch_size):
        for task, value in model(*to_torch(part)).items():  # the trained tasks only
            parts[key_of[task]].append(value.reshape(-1).double().numpy())
    result = {key: np.concatenate(values) for key, values in parts.items()}
    if "cvr" in result:
        result["ctcvr"] = result["ctr"] * result["cvr"]
    return result


def evaluate(model: MultiTaskRanker, batch: FeatureBatch) -> dict[str, Any]:
    """Per task: AUC, log loss, calibration overall and by decile, on ``batch``.

    Conversion is scored as pCTCVR over all impressions (what ESMM fits).
    """
    predictions = predict(model, batch)
    score_of = {"click": "ctr", "conversion": "ctcvr", "negative": "neg"}
    return {
        task: task_metrics(batch.labels[task], predictions[score_of[task]]) for task in batch.labels
    }


def train(
    columns: Any,
    schema: FeatureSchema,
    *,
    model_config: RankerConfig | None = None,
    config: TrainConfig | None = None,
) -> TrainResult:
    """Hash ``columns`` with ``schema``, hold out a split, train a ranker, evaluate it; with
    ``config.calibration``, calibrate it on rows held back from the training split (the
    metrics are then the calibrated model's, ``uncalibrated_metrics`` the raw one's).

    ``columns`` may also be a :class:`FeatureBatch` already hashed with ``schema``.
    """
    config = config or TrainConfig()
    batch = columns if isinstance(columns, FeatureBatch) else FeaturePipeline(schema)(columns)
    train_rows, heldout_rows = split_holdout(len(batch), config.holdout, config.seed)
    heldout = batch.take(heldout_rows)
    warnings = training_warnings(len(train_rows), heldout, config)
    calibration_rows = None
    if config.calibration != "none":
        shuffled = np.random.default_rng(config.seed + 1).permutation(train_rows)
        held = max(2, round(len(train_rows) * config.calibration_fraction))
        calibration_rows, train_rows = np.sort(shuffled[:held]), np.sort(shuffled[held:])
    torch.manual_seed(config.seed)
    model = MultiTaskRanker(schema, model_config)
    history = fit(model, batch.take(train_rows), config)
    metrics = evaluate(model, heldout)
    if calibration_rows is None:
        return TrainResult(model, metrics, history, heldout_rows, warnings)
    from adrank.training.calibrate import fit_calibration

    chosen = fit_calibration(model, batch.take(calibration_rows), config.calibration, config.seed)
    calibrated = evaluate(model, heldout)
    return TrainResult(model, calibrated, history, heldout_rows, warnings, metrics, chosen)
