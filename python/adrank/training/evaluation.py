"""Scoring a trained ranker on a log: per task AUC, log loss, calibration overall and by
decile, bootstrap intervals, and the same per slice of one column.

Glossary: ``B`` rows scored; a *slice* is the rows sharing one value of the ``by`` column;
slices are the ``max_slices`` largest (the rest are counted, not scored).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from adrank.data.log_errors import BadRowBudget, LogError
from adrank.data.readers import LogReader
from adrank.features.log_check import check_against_log, column_kinds
from adrank.features.pipeline import FeatureBatch, FeaturePipeline
from adrank.features.schema import FeatureSchema
from adrank.models.ranker import MultiTaskRanker
from adrank.training.log_data import schema_for_log
from adrank.training.loop import predict
from adrank.training.metrics import bootstrap_intervals, task_metrics

__all__ = [
    "SCORE_OF",
    "Scores",
    "evaluate_scores",
    "format_evaluation",
    "score_batch",
    "score_log",
]

# Conversion is scored as pCTCVR over all impressions (what ESMM fits).
SCORE_OF = {"click": "ctr", "conversion": "ctcvr", "negative": "neg"}


def _task_report(labels: np.ndarray, scores: np.ndarray, resamples: int, seed: int) -> dict:
    report = task_metrics(labels, scores)
    report["intervals"] = bootstrap_intervals(labels, scores, resamples, seed) if resamples else {}
    return report


@dataclasses.dataclass
class Scores:
    """What evaluation keeps of each scored row: its labels and scores per task (``[B]``
    each) and its value of the ``by`` column (text, or None without ``--by``)."""

    labels: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    by: np.ndarray | None = None

    def __len__(self) -> int:
        return len(next(iter(self.labels.values())))


def score_batch(
    model: MultiTaskRanker, batch: FeatureBatch, by: np.ndarray | None = None
) -> Scores:
    """The scores of every row of ``batch`` (in memory)."""
    if by is not None and len(by) != len(batch):
        raise ValueError(f"by must have one value per row ({len(batch)}), got {len(by)}")
    predictions = predict(model, batch)
    return Scores(
        dict(batch.labels),
        {task: predictions[SCORE_OF[task]] for task in batch.labels},
        by,
    )


def score_log(
    model: MultiTaskRanker,
    reader: LogReader,
    schema: FeatureSchema,
    *,
    rows: np.ndarray | None = None,
    by: str | None = None,
    budget: BadRowBudget | None = None,
) -> tuple[Scores, int]:
    """(scores of the log's rows, or of ``rows`` only (sorted row numbers), and the number of
    rows the log had), reading it batch by batch: memory holds the scores, not the log."""
    schema = schema_for_log(schema, reader, need_labels=False)
    reader.require([by] if by else [])
    kinds = {c: k for c, k in column_kinds(schema).items() if c in reader.column_names}
    if by:
        kinds.setdefault(by, "string")
    pipeline = FeaturePipeline(schema)
    parts: list[Scores] = []
    start, checked = 0, False
    for batch in reader.batches(kinds, columns=list(kinds), budget=budget):
        if not checked:
            check_against_log(schema, batch.table.schema, str(reader.path))
            checked = True
        features = pipeline(batch.table)
        count = len(features)
        keep = np.arange(count)
        if rows is not None:
            lo, hi = np.searchsorted(rows, [start, start + count])
            keep = rows[lo:hi] - start
        start += count
        if len(keep) == 0:
            continue
        values = None
        if by:
            values = np.array(batch.table.column(by).cast("string").to_pylist(), dtype=object)
            values = values[keep]
        parts.append(score_batch(model, features.take(keep), values))
    if not parts:
        raise LogError(reader.path, "has no rows to score")
    tasks = parts[0].labels
    joined = Scores(
        {t: np.concatenate([p.labels[t] for p in parts]) for t in tasks},
        {t: np.concatenate([p.scores[t] for p in parts]) for t in tasks},
        np.concatenate([p.by for p in parts]) if by else None,
    )
    return joined, start


def evaluate_scores(
    scores: Scores,
    *,
    by_name: str | None = None,
    resamples: int = 200,
    seed: int = 0,
    max_slices: int = 20,
) -> dict[str, Any]:
    """``{"rows", "tasks": {task: metrics}, "slices": {...}}`` of scored rows."""
    result: dict[str, Any] = {"rows": len(scores), "tasks": {}}
    for task, labels in scores.labels.items():
        result["tasks"][task] = _task_report(labels, scores.scores[task], resamples, seed)
    if scores.by is None:
        return result
    keys = np.array(["<missing>" if v is None else str(v) for v in scores.by], dtype=object)
    values, counts = np.unique(keys, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:max_slices]
    slices = {}
    for index in order:
        rows = keys == values[index]
        slices[str(values[index])] = {
            "rows": int(counts[index]),
            "tasks": {
                task: _task_report(labels[rows], scores.scores[task][rows], resamples, seed)
                for task, labels in scores.labels.items()
            },
        }
    result["by"] = by_name
    result["slices"] = slices
    result["slices_left_out"] = int(len(values) - len(order))
    return result


def _interval(report: dict, name: str) -> str:
    bounds = report.get("intervals", {}).get(name)
    return f" [{bounds[0]:.4f}, {bounds[1]:.4f}]" if bounds else ""


def _task_lines(prefix: str, tasks: dict[str, dict]) -> list[str]:
    lines = []
    for task, m in tasks.items():
        lines.append(
            f"{prefix}{task:<11} AUC {m['auc']:.4f}{_interval(m, 'auc')}  "
            f"log loss {m['log_loss']:.4f}{_interval(m, 'log_loss')}  "
            f"calibration {m['calibration']:.3f}{_interval(m, 'calibration')}  "
            f"({m['count']:,} rows, rate {m['observed_rate']:.4f})"
        )
    return lines


def format_evaluation(result: dict[str, Any]) -> str:
    """The text ``adrank evaluate`` prints (95% bootstrap intervals in brackets)."""
    lines = [f"{result['rows']:,} rows scored; [95% bootstrap interval]"]
    lines += _task_lines("", result["tasks"])
    for task, m in result["tasks"].items():
        ratios = " ".join(f"{b['ratio']:.2f}" for b in m["calibration_deciles"])
        lines.append(f"{task} calibration by decile (predicted / observed): {ratios}")
    if "slices" in result:
        lines.append(f"by {result['by']}:")
        for value, part in result["slices"].items():
            lines.append(f"  {result['by']} = {value} ({part['rows']:,} rows)")
            lines += _task_lines("    ", part["tasks"])
        if result["slices_left_out"]:
            lines.append(f"  ({result['slices_left_out']} smaller slices not shown)")
    return "\n".join(lines)
