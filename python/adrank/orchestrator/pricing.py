"""Generalized second-price (GSP) pricing of the chosen creatives.

Glossary: ``k`` winners in rank order; ``score_i`` their eCPM; ``factor_i = d ecpm / d bid``
(see :func:`adrank.orchestrator.scoring.bid_to_ecpm_factor`); ``penalty_i`` the part of the eCPM
that does not scale with the bid (the negative-feedback penalty).

Winner ``i`` pays the least bid that keeps its position, never above its own bid and never
below the bid that meets the reserve::

    next_i  = score_{i+1}  (for the last winner: the runner-up's score, or the reserve if none)
    least_i = (max(next_i, reserve) + penalty_i) / factor_i
    price_i = min(own_bid_i, least_i)

The price is in the campaign's own unit: per thousand impressions (CPM), per click (CPC), per
conversion (oCPM, whose bid is the target CPA).
"""

from __future__ import annotations

import numpy as np


def gsp_prices(
    scores: np.ndarray,
    runner_up_score: float | None,
    own_bids: np.ndarray,
    factors: np.ndarray,
    penalties: np.ndarray,
    reserve_ecpm: float,
) -> np.ndarray:
    """Prices of ``k`` winners given in rank order (all arrays [k]); float64 [k]."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return np.empty(0, dtype=np.float64)
    tail = reserve_ecpm if runner_up_score is None else float(runner_up_score)
    next_scores = np.append(scores[1:], tail)
    target = np.maximum(next_scores, reserve_ecpm) + penalties
    least = np.full(scores.shape, np.inf)
    np.divide(target, factors, out=least, where=factors > 0)
    return np.minimum(own_bids, least)
