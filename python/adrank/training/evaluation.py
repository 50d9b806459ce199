"""Scoring a trained ranker on a log: per task AUC, log loss, calibration overall and by
decile, bootstrap intervals, and the same per slice of one column.

Glossary: ``B`` rows scored; a *slice* is the rows sharing one value of the ``by`` column;
slices are the ``max_slices`` largest (the rest are counted, not scored).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adrank.features.pipeline import FeatureBatch
from adrank.models.ranker import MultiTaskRanker
from adrank.training.loop import predict
from adrank.training.metrics import bootstrap_intervals, task_metrics

__all__ = ["SCORE_OF", "evaluate_batch", "format_evaluation"]

# Conversion is scored as pCTCVR over all impressions (what ESMM fits).
SCORE_OF = {"click": "ctr", "conversion": "ctcvr", "negative": "neg"}


def _task_report(labels: np.ndarray, scores: np.ndarray, resamples: int, seed: int) -> dict:
    report = task_metrics(labels, scores)
    report["intervals"] = bootstrap_intervals(labels, scores, resamples, seed) if resamples else {}
    return report


def evaluate_batch(
    model: MultiTaskRanker,
    batch: FeatureBatch,
    *,
    by: np.ndarray | None = None,
    by_name: str | None = None,
    resamples: int = 200,
    seed: int = 0,
    max_slices: int = 20,
) -> dict[str, Any]:
    """``{"rows", "tasks": {task: metrics}, "slices": {...}}`` for the rows of ``batch``."""
    if by is not None and len(by) != len(batch):
        raise ValueError(f"by must have one value per row ({len(batch)}), got {len(by)}")
    predictions = predict(model, batch)
    result: dict[str, Any] = {"rows": len(batch), "tasks": {}}
    for task, labels in batch.labels.items():
        scores = predictions[SCORE_OF[task]]
        result["tasks"][task] = _task_report(labels, scores, resamples, seed)
    if by is None:
        return result
    keys = np.array(["<missing>" if v is None else str(v) for v in by], dtype=object)
    values, counts = np.unique(keys, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:max_slices]
    slices = {}
    for index in order:
        rows = keys == values[index]
        slices[str(values[index])] = {
            "rows": int(counts[index]),
            "tasks": {
                task: _task_report(labels[rows], predictions[SCORE_OF[task]][rows], resamples, seed)
                for task, labels in batch.labels.items()
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
