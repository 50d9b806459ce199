"""The text report of ``adrank train``: per task AUC, log loss and calibration."""

from __future__ import annotations

from typing import Any

import numpy as np

from adrank.training.metrics import auc

__all__ = ["format_calibration", "format_report", "oracle_for", "oracle_metrics"]


def oracle_for(table: Any, rows: np.ndarray) -> dict[str, float] | None:
    """Oracle AUCs on ``rows`` of a synthetic log; None for a log without true probabilities."""
    if "p_click" not in table.column_names:
        return None
    return oracle_metrics(table.take(rows))


def oracle_metrics(impressions: Any) -> dict[str, float]:
    """AUC of the true probabilities against the labels: the ceiling for any model.

    Returns ``{"click": auc, "conversion": auc, "negative": auc}``; conversion is scored as
    pCTCVR (``p_click * p_conversion``) over all impressions, as the ESMM model is.
    """

    def column(name: str) -> np.ndarray:
        return impressions.column(name).to_numpy()

    return {
        "click": auc(column("click"), column("p_click")),
        "conversion": auc(column("conversion"), column("p_click") * column("p_conversion")),
        "negative": auc(column("negative"), column("p_negative")),
    }


def format_report(metrics: dict[str, Any], oracle: dict[str, float] | None = None) -> str:
    lines = ["held-out metrics", f"{'task':<12}{'AUC':>8}{'oracle':>8}{'log loss':>10}{'calib':>8}"]
    for task, m in metrics.items():
        reference = f"{oracle[task]:8.4f}" if oracle else f"{'-':>8}"
        lines.append(
            f"{task:<12}{m['auc']:8.4f}{reference}{m['log_loss']:10.4f}{m['calibration']:8.3f}"
        )
    for task, m in metrics.items():
        ratios = " ".join(f"{b['ratio']:.2f}" for b in m["calibration_deciles"])
        lines.append(f"{task} calibration by decile (predicted / observed): {ratios}")
    return "\n".join(lines)


def format_calibration(
    chosen: dict[str, Any], before: dict[str, Any] | None, after: dict[str, Any]
) -> str:
    """The calibration each head got, and its held-out log loss and calibration before/after."""
    lines = [f"{'calibration':<12}{'kind':>10}{'log loss':>18}{'calib':>16}"]
    for task, entry in chosen.items():
        old, new = (before or after)[task], after[task]
        lines.append(
            f"{task:<12}{entry['kind']:>10}{old['log_loss']:9.4f}->{new['log_loss']:.4f}"
            f"{old['calibration']:9.3f}->{new['calibration']:.3f}"
        )
    return "\n".join(lines)
