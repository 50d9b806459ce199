"""Uplift (incrementality) models: which impressions an ad changes the outcome of.

Glossary: see :mod:`adrank.uplift.learners` (T-learner, X-learner) and
:mod:`adrank.uplift.metrics` (Qini, AUUC, uplift by decile).
"""

from adrank.uplift.learners import LinearLearner, TLearner, XLearner
from adrank.uplift.metrics import (
    auuc,
    qini_coefficient,
    qini_curve,
    uplift_by_decile,
    uplift_curve,
)

__all__ = [
    "LinearLearner",
    "TLearner",
    "XLearner",
    "auuc",
    "qini_coefficient",
    "qini_curve",
    "uplift_by_decile",
    "uplift_curve",
]
