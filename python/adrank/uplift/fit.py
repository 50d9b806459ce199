"""Fitting an uplift learner beside the ranker (``adrank train --uplift``) and reporting it.

Glossary: *treatment* the log's ``treatment`` column (1: the ad shown, 0: withheld); *outcome*
its ``converted`` column; *held-out rows* the ranker's held-out split, never fitted here, on
which the Qini coefficient, AUUC and the observed uplift by decile are reported
(:mod:`adrank.uplift.metrics`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adrank.features.pipeline import FeatureBatch
from adrank.features.schema import FeatureSchema
from adrank.uplift.learners import TLearner, XLearner
from adrank.uplift.metrics import auuc, qini_coefficient, uplift_by_decile

__all__ = ["OUTCOME_COLUMN", "TREATMENT_COLUMN", "UPLIFT_LEARNERS", "fit_uplift", "format_uplift"]

TREATMENT_COLUMN = "treatment"
OUTCOME_COLUMN = "converted"
UPLIFT_LEARNERS = {"t": TLearner, "x": XLearner}


def fit_uplift(
    kind: str,
    schema: FeatureSchema,
    batch: FeatureBatch,
    treatment: np.ndarray,
    outcome: np.ndarray,
    heldout_rows: np.ndarray,
    *,
    epochs: int = 2,
    seed: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """(the learner fitted on every row but ``heldout_rows``, its held-out report)."""
    if kind not in UPLIFT_LEARNERS:
        raise ValueError(f"uplift learner must be one of {sorted(UPLIFT_LEARNERS)}, got {kind!r}")
    treatment = np.asarray(treatment).astype(np.int64).reshape(-1)
    outcome = np.asarray(outcome).astype(np.float64).reshape(-1)
    held = np.zeros(len(batch), dtype=bool)
    held[heldout_rows] = True
    fit_rows = np.flatnonzero(~held)
    learner = UPLIFT_LEARNERS[kind](schema, epochs=epochs, seed=seed)
    learner.fit(batch.take(fit_rows), treatment[fit_rows], outcome[fit_rows])
    report: dict[str, Any] = {"learner": kind, "fit_rows": len(fit_rows)}
    t, y = treatment[held], outcome[held]
    if held.any() and 0 < t.sum() < len(t):
        score = learner.predict(batch.take(np.flatnonzero(held)))
        report.update(
            heldout_rows=int(held.sum()),
            qini=qini_coefficient(y, t, score),
            auuc=auuc(y, t, score),
            observed_by_decile=[d["observed"] for d in uplift_by_decile(y, t, score)],
        )
    return learner, report


def format_uplift(report: dict[str, Any]) -> str:
    """The report of :func:`fit_uplift` as lines for a person."""
    name = {"t": "T-learner", "x": "X-learner"}[report["learner"]]
    lines = [f"uplift ({name}, fitted on {report['fit_rows']:,} rows)"]
    if "qini" in report:
        deciles = " ".join(f"{d:+.4f}" for d in report["observed_by_decile"])
        lines.append(
            f"  held-out ({report['heldout_rows']:,} rows): Qini {report['qini']:.5f}, "
            f"AUUC {report['auuc']:.5f} per row"
        )
        lines.append(f"  observed uplift by decile of prediction (highest first): {deciles}")
    return "\n".join(lines)
