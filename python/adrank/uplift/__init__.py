"""Uplift (incrementality) models: which impressions an ad changes the outcome of.

Glossary: see :mod:`adrank.uplift.learners` (T-learner, X-learner; torch, for training),
:mod:`adrank.uplift.serving` (an exported learner scored without torch) and
:mod:`adrank.uplift.metrics` (Qini, AUUC, uplift by decile).

Names load on first use, so a serving process that imports ``adrank.uplift.serving`` (or
:class:`UpliftScorer` from here) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "LinearLearner": "adrank.uplift.learners",
    "TLearner": "adrank.uplift.learners",
    "XLearner": "adrank.uplift.learners",
    "LinearWeights": "adrank.uplift.serving",
    "UpliftModel": "adrank.uplift.serving",
    "UpliftScorer": "adrank.uplift.serving",
    "load_uplift": "adrank.uplift.serving",
    "save_uplift": "adrank.uplift.serving",
    "auuc": "adrank.uplift.metrics",
    "qini_coefficient": "adrank.uplift.metrics",
    "qini_curve": "adrank.uplift.metrics",
    "uplift_by_decile": "adrank.uplift.metrics",
    "uplift_curve": "adrank.uplift.metrics",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'adrank.uplift' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
