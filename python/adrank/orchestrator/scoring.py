"""Scoring: predicted rates and bids to the eCPM that ranks candidates.

Glossary: ``C`` candidates of one request. All arrays are ``[C]``; money is in the account
currency, eCPM per thousand impressions.

Per candidate, by the campaign's objective::

    value  = bid                                  CPM   (bid per thousand impressions)
    value  = bid * p_ctr * 1000                   CPC   (bid per click)
    value  = target_cpa * p_ctr * p_cvr * 1000    oCPM  (target cost per conversion)
    ecpm   = value * pacing - neg_penalty * p_neg * 1000
    score  = ecpm, eligible only where ecpm >= reserve_ecpm

``pacing`` is the campaign's multiplier in [0, 1] (1.0 where pacing is off); ``neg_penalty``
prices one negative-feedback event (a skip, a hide, a report) in currency, so a creative users
dislike must bid more to win the same slot.

*Bidding for incremental conversions* (``ScoringConfig.value = "incremental"``): an oCPM
campaign is valued by the conversions the impression *causes*, not the ones that follow it
(many of which would have happened anyway). ``p_ctr * p_cvr``, the conversions per impression,
becomes ``max(uplift, 0)``, the uplift model's predicted ``P(converted | shown) -
P(converted | withheld)`` (:mod:`adrank.uplift.serving`); CPM and CPC are unchanged::

    value  = target_cpa * max(uplift, 0) * 1000   oCPM, value = "incremental"

The native pass keeps its formula: it gets :func:`incremental_conversion_rate`,
``max(uplift, 0) / p_ctr``, in place of ``p_cvr`` (equal to the line above up to rounding), so
pricing prices the same value.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Objective(IntEnum):
    """How a campaign bids; stored as int8 in the catalog."""

    CPM = 0
    CPC = 1
    OCPM = 2

    @classmethod
    def parse(cls, name: str) -> Objective:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"objective must be one of CPM, CPC, OCPM, got {name!r}") from None


VALUES = ("conversions", "incremental")


@dataclass(frozen=True)
class ScoringConfig:
    """Settings of the eCPM formula (see the module docstring). ``value``: what an oCPM
    campaign's conversions are counted as, one of :data:`VALUES` (``"conversions"``, all
    predicted ones; ``"incremental"``, those the impression causes, from the ranker's uplift
    model)."""

    reserve_ecpm: float = 0.5
    neg_penalty: float = 0.2
    value: str = "conversions"

    def __post_init__(self) -> None:
        if self.value not in VALUES:
            raise ValueError(f"value must be one of {list(VALUES)}, got {self.value!r}")
        if not (np.isfinite(self.reserve_ecpm) and self.reserve_ecpm >= 0):
            raise ValueError(f"reserve_ecpm must be a finite number >= 0, got {self.reserve_ecpm}")
        if not (np.isfinite(self.neg_penalty) and self.neg_penalty >= 0):
            raise ValueError(f"neg_penalty must be a finite number >= 0, got {self.neg_penalty}")


def value_per_mille(
    objective: np.ndarray,
    bid: np.ndarray,
    target_cpa: np.ndarray,
    p_ctr: np.ndarray,
    p_cvr: np.ndarray,
) -> np.ndarray:
    """What one thousand impressions are worth to each advertiser, by objective (float64 [C])."""
    return np.select(
        [objective == Objective.CPM, objective == Objective.CPC],
        [bid, bid * p_ctr * 1000.0],
        default=target_cpa * p_ctr * p_cvr * 1000.0,
    )


def bid_to_ecpm_factor(
    objective: np.ndarray, p_ctr: np.ndarray, p_cvr: np.ndarray, pacing: np.ndarray
) -> np.ndarray:
    """``d ecpm / d bid``: eCPM gained per unit of the campaign's own bid (float64 [C]).

    For oCPM the bid is the target CPA. Pricing uses it to turn an eCPM into a bid.
    """
    per_unit = np.select(
        [objective == Objective.CPM, objective == Objective.CPC],
        [np.ones_like(p_ctr, dtype=np.float64), p_ctr * 1000.0],
        default=p_ctr * p_cvr * 1000.0,
    )
    return per_unit * pacing


def ecpm(
    config: ScoringConfig,
    objective: np.ndarray,
    bid: np.ndarray,
    target_cpa: np.ndarray,
    pacing: np.ndarray,
    p_ctr: np.ndarray,
    p_cvr: np.ndarray,
    p_neg: np.ndarray,
) -> np.ndarray:
    """The ranking score of each candidate (float64 [C]); see the module docstring."""
    value = value_per_mille(objective, bid, target_cpa, p_ctr, p_cvr)
    return value * pacing - neg_feedback_penalty(config, p_neg)


def neg_feedback_penalty(config: ScoringConfig, p_neg: np.ndarray) -> np.ndarray:
    """The eCPM each candidate loses to its predicted negative feedback (float64 [C]).

    It does not scale with the bid: pricing adds it back when it turns an eCPM into a bid.
    """
    return (config.neg_penalty * 1000.0) * p_neg.astype(np.float64)


def own_bid(objective: np.ndarray, bid: np.ndarray, target_cpa: np.ndarray) -> np.ndarray:
    """The bid in the campaign's own unit: target CPA for oCPM, the bid otherwise."""
    return np.where(objective == Objective.OCPM, target_cpa, bid)


def incremental_conversion_rate(uplift: np.ndarray, p_ctr: np.ndarray) -> np.ndarray:
    """``max(uplift, 0) / p_ctr`` (float64 [C]; 0 where ``p_ctr`` is 0): the conversion rate
    that makes ``p_ctr * rate`` the incremental conversions per impression, passed to the
    native pass in place of ``p_cvr`` (see the module docstring)."""
    uplift = np.asarray(uplift, dtype=np.float64)
    p_ctr = np.asarray(p_ctr, dtype=np.float64)
    if uplift.shape != p_ctr.shape:
        raise ValueError(f"uplift has shape {uplift.shape}, p_ctr {p_ctr.shape}")
    gain = np.maximum(np.nan_to_num(uplift, nan=0.0), 0.0)
    return np.divide(gain, p_ctr, out=np.zeros_like(gain), where=p_ctr > 0)
