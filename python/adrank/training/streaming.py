"""Training on a log larger than memory: batches stream from the reader, are hashed, trained
on and dropped; the held-out rows are chosen by a hash of their row number, so no index of
the log is ever held, and are scored in a second pass once training is done.

Glossary: a *chunk* is ``chunk_rows`` rows of the log as the reader yields them, shuffled
within itself (there is no global shuffle: a log in time order trains in time order, chunk by
chunk); *row number* counts kept rows from 0 in log order; a row is held out when
``splitmix64(row number + seed * golden) / 2**64 < holdout``, which a seed reproduces exactly.

With ``TrainConfig.calibration``, *calibration rows* are chosen the same way among the rows not
held out (``calibration_fraction`` of them, by a second salt of the seed), never trained on;
the scoring pass predicts them too, the maps are fitted on them
(:mod:`adrank.training.calibrate`), and the held-out metrics are the calibrated model's (the
uncalibrated ones beside them), as in memory.

Memory: the model, one chunk's raw columns and hashed ids, and the held-out and calibration
rows' labels and scores (a few float64 per such row per task). Dense inputs are standardized
with the statistics of the first chunk's training rows.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch

from adrank.data.log_errors import BadRowBudget
from adrank.data.readers import LogReader
from adrank.features.log_check import check_against_log, column_kinds
from adrank.features.pipeline import FeaturePipeline
from adrank.features.schema import FeatureSchema
from adrank.models.ranker import MultiTaskRanker, RankerConfig
from adrank.training.evaluation import SCORE_OF
from adrank.training.log_data import schema_for_log
from adrank.training.loop import MIN_STEPS, Stepper, TrainConfig, TrainResult, predict
from adrank.training.metrics import task_metrics

__all__ = ["heldout_mask", "train_streaming"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_CALIBRATION_SALT = 0x5CA1AB1E  # the calibration rows' seed: another draw than the held-out one


def heldout_mask(rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Which of ``rows`` (row numbers, int64 [B]) are held out: a fixed function of each
    number and ``seed``, so any pass over the log picks the same rows."""
    with np.errstate(over="ignore"):
        x = rows.astype(np.uint64) + np.uint64(seed) * _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction


@dataclasses.dataclass
class _Pass:
    """One read of the log: its chunks hashed, with their row numbers and held-out masks."""

    reader: LogReader
    schema: FeatureSchema
    config: TrainConfig
    budget: BadRowBudget

    def __iter__(self):
        kinds = {c: k for c, k in column_kinds(self.schema).items()}
        pipeline = FeaturePipeline(self.schema)
        start = 0
        checked = False
        for batch in self.reader.batches(kinds, columns=list(kinds), budget=self.budget):
            if not checked:
                check_against_log(self.schema, batch.table.schema, str(self.reader.path))
                checked = True
            features = pipeline(batch.table)
            rows = np.arange(start, start + len(features), dtype=np.int64)
            start += len(features)
            held = heldout_mask(rows, self.config.holdout, self.config.seed)
            calibration = np.zeros(len(rows), dtype=bool)
            if self.config.calibration != "none":
                fraction, seed = self.config.calibration_fraction, self.config.seed
                calibration = ~held & heldout_mask(rows, fraction, seed + _CALIBRATION_SALT)
            yield features, rows, held, calibration


def train_streaming(
    reader: LogReader,
    schema: FeatureSchema,
    *,
    config: TrainConfig | None = None,
    model_config: RankerConfig | None = None,
    budget: BadRowBudget | None = None,
    total_rows: int | None = None,
    on_chunk: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a ranker on ``reader``'s log chunk by chunk; score the held-out rows after.

    ``total_rows`` (the log's row count, when known) sizes the learning-rate decay; without
    it the rates stay constant. ``on_chunk(rows_trained, seconds)`` reports progress.
    ``TrainResult.heldout_rows`` holds the held-out row numbers.
    """
    config = config or TrainConfig()
    budget = budget or BadRowBudget(0)
    schema = schema_for_log(schema, reader, need_labels=True)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = MultiTaskRanker(schema, model_config)
    kept = (1.0 - config.holdout) * (
        1.0 - (config.calibration_fraction if config.calibration != "none" else 0.0)
    )
    train_rows = None if total_rows is None else round(total_rows * kept)
    steps = config.epochs * -(-train_rows // config.batch_size) if train_rows else 2**62
    stepper = Stepper(model, config, steps)
    history = []
    trained, started, step_count = 0, time.perf_counter(), 0
    for epoch in range(config.epochs):
        # Bad rows are reported on the first pass only; later passes skip the same rows.
        quiet = BadRowBudget(budget.limit, report=lambda _: None) if epoch else budget
        model.train()
        sums: dict[str, float] = {}
        seen = 0
        for features, _, held, calibration in _Pass(reader, schema, config, quiet):
            part = features.take(np.flatnonzero(~held & ~calibration))
            if len(part) == 0:
                continue
            if epoch == 0 and trained == 0:
                model.dense.set_dense_statistics(torch.from_numpy(part.dense))
            part = part.take(rng.permutation(len(part)))
            for begin in range(0, len(part), config.batch_size):
                mini = part.take(slice(begin, begin + config.batch_size))
                _, parts = stepper.step(mini)
                step_count += 1
                for task, value in parts.items():
                    sums[task] = sums.get(task, 0.0) + value * len(mini)
            seen += len(part)
            trained += len(part)
            if on_chunk is not None:
                on_chunk(trained, time.perf_counter() - started)
        history.append({task: total / max(seen, 1) for task, total in sums.items()})
    model.eval()
    heldout, calibration_rows = _Scored(), _Scored()
    heldout_rows = []
    quiet = BadRowBudget(budget.limit, report=lambda _: None)
    for features, rows, held, calibration in _Pass(reader, schema, config, quiet):
        heldout_rows.append(rows[held])
        heldout.add(model, features.take(np.flatnonzero(held)))
        calibration_rows.add(model, features.take(np.flatnonzero(calibration)))
    raw = heldout.predictions()
    metrics = heldout.metrics(raw, schema)
    uncalibrated = chosen = None
    if config.calibration != "none":
        from adrank.training.calibrate import calibrated_predictions, fit_calibration_scores

        entries, chosen = fit_calibration_scores(
            model.tasks,
            calibration_rows.labels(),
            calibration_rows.predictions(),
            config.calibration,
            config.seed,
        )
        model.set_calibration(entries)
        uncalibrated = metrics
        metrics = heldout.metrics(calibrated_predictions(model.tasks, entries, raw), schema)
    warnings = []
    if step_count < MIN_STEPS:
        warnings.append(
            f"only {step_count} optimizer steps; fewer than {MIN_STEPS} rarely train a ranker"
        )
    for task, m in metrics.items():
        if m["observed_rate"] in (0.0, 1.0):
            missing = "positive" if m["observed_rate"] == 0.0 else "negative"
            warnings.append(f"the held-out set has no {missing} {task} label: its AUC is nan")
    rows = np.concatenate(heldout_rows) if heldout_rows else np.empty(0, np.int64)
    return TrainResult(model, metrics, history, rows, warnings, uncalibrated, chosen)


class _Scored:
    """Labels and the uncalibrated model's predictions of some rows, gathered chunk by chunk."""

    def __init__(self) -> None:
        self._labels: dict[str, list[np.ndarray]] = {}
        self._predictions: dict[str, list[np.ndarray]] = {}

    def add(self, model: MultiTaskRanker, part) -> None:
        if len(part) == 0:
            return
        for task, values in part.labels.items():
            self._labels.setdefault(task, []).append(values)
        for key, values in predict(model, part).items():
            self._predictions.setdefault(key, []).append(values)

    def labels(self) -> dict[str, np.ndarray]:
        return {task: np.concatenate(parts) for task, parts in self._labels.items()}

    def predictions(self) -> dict[str, np.ndarray]:
        return {key: np.concatenate(parts) for key, parts in self._predictions.items()}

    def metrics(self, predictions: dict[str, np.ndarray], schema: FeatureSchema) -> dict:
        labels = self.labels()
        return {
            task: task_metrics(labels[task], predictions[SCORE_OF[task]])
            for task in schema.labels
            if task in labels
        }
