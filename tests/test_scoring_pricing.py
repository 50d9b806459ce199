"""eCPM scoring and GSP pricing against hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from adrank.orchestrator.pricing import gsp_prices
from adrank.orchestrator.scoring import (
    Objective,
    ScoringConfig,
    bid_to_ecpm_factor,
    ecpm,
    own_bid,
)

# Three campaigns, one per objective (worked by hand in the comments).
OBJECTIVE = np.array([Objective.CPC, Objective.CPM, Objective.OCPM], dtype=np.int8)
BID = np.array([2.0, 15.0, 0.0])
TARGET_CPA = np.array([0.0, 0.0, 50.0])
P_CTR = np.array([0.01, 0.03, 0.02])
P_CVR = np.array([0.5, 0.5, 0.01])
NO_PACING = np.ones(3)


def test_ecpm_by_objective() -> None:
    config = ScoringConfig(reserve_ecpm=1.0, neg_penalty=0.0)
    scores = ecpm(config, OBJECTIVE, BID, TARGET_CPA, NO_PACING, P_CTR, P_CVR, np.zeros(3))
    # CPC: 2.0 * 0.01 * 1000 = 20; CPM: 15; oCPM: 50 * 0.02 * 0.01 * 1000 = 10.
    np.testing.assert_allclose(scores, [20.0, 15.0, 10.0])


def test_pacing_and_negative_feedback_penalty() -> None:
    config = ScoringConfig(reserve_ecpm=1.0, neg_penalty=0.2)
    p_neg = np.array([0.005, 0.0, 0.01])
    pacing = np.array([0.5, 1.0, 1.0])
    scores = ecpm(config, OBJECTIVE, BID, TARGET_CPA, pacing, P_CTR, P_CVR, p_neg)
    # CPC: 20 * 0.5 - 0.2 * 0.005 * 1000 = 9; CPM: 15; oCPM: 10 - 0.2 * 0.01 * 1000 = 8.
    np.testing.assert_allclose(scores, [9.0, 15.0, 8.0])


def test_bid_factor_is_the_derivative_of_ecpm_in_the_bid() -> None:
    config = ScoringConfig(neg_penalty=0.3)
    pacing = np.array([0.7, 0.9, 0.4])
    p_neg = np.array([0.01, 0.02, 0.03])
    bids = own_bid(OBJECTIVE, BID, TARGET_CPA)
    np.testing.assert_allclose(bids, [2.0, 15.0, 50.0])
    base = ecpm(config, OBJECTIVE, BID, TARGET_CPA, pacing, P_CTR, P_CVR, p_neg)
    bumped = ecpm(config, OBJECTIVE, BID + 1, TARGET_CPA + 1, pacing, P_CTR, P_CVR, p_neg)
    np.testing.assert_allclose(bumped - base, bid_to_ecpm_factor(OBJECTIVE, P_CTR, P_CVR, pacing))


def test_gsp_hand_worked() -> None:
    # Winners A (CPC, score 20, factor 10), B (CPM, 15, factor 1), C (oCPM, 10, factor 0.2);
    # the runner-up scores 8 and the reserve is 1.
    prices = gsp_prices(
        scores=np.array([20.0, 15.0, 10.0]),
        runner_up_score=8.0,
        own_bids=np.array([2.0, 15.0, 50.0]),
        factors=np.array([10.0, 1.0, 0.2]),
        penalties=np.zeros(3),
        reserve_ecpm=1.0,
    )
    # A pays 15 / 10 = 1.5 per click, B 10 per mille, C 8 / 0.2 = 40 per conversion.
    np.testing.assert_allclose(prices, [1.5, 10.0, 40.0])


def test_gsp_penalty_raises_the_price_to_keep_the_position() -> None:
    # A's score is 20 - 1 (penalty) = 19; to stay above 15 it needs 10 b - 1 >= 15: b = 1.6.
    prices = gsp_prices(
        np.array([19.0]), 15.0, np.array([2.0]), np.array([10.0]), np.array([1.0]), 1.0
    )
    np.testing.assert_allclose(prices, [1.6])


def test_gsp_never_above_the_bid_nor_below_the_reserve() -> None:
    # Tie with the next: the least bid that keeps the position is the own bid.
    tie = gsp_prices(
        np.array([15.0, 15.0]), None, np.array([1.5, 15.0]), np.array([10.0, 1.0]), np.zeros(2), 2.0
    )
    assert tie[0] == pytest.approx(1.5)
    # No runner-up: the last winner pays the reserve, 2.0 eCPM = 2.0 per mille.
    assert tie[1] == pytest.approx(2.0)
    # A runner-up below the reserve does not lower the price below the reserve.
    low = gsp_prices(np.array([30.0]), 0.1, np.array([3.0]), np.array([10.0]), np.zeros(1), 5.0)
    np.testing.assert_allclose(low, [0.5])
    # A zero factor (pCTR 0) cannot be priced by position: it pays its own bid.
    zero = gsp_prices(np.array([0.0]), None, np.array([3.0]), np.array([0.0]), np.zeros(1), 0.0)
    np.testing.assert_allclose(zero, [3.0])
    assert gsp_prices(np.array([]), None, np.array([]), np.array([]), np.array([]), 1.0).size == 0


def test_objective_parse_and_config_errors() -> None:
    assert Objective.parse("ocpm") is Objective.OCPM
    with pytest.raises(ValueError, match="objective must be one of"):
        Objective.parse("CPA")
    with pytest.raises(ValueError, match="reserve_ecpm must be"):
        ScoringConfig(reserve_ecpm=-1.0)
    with pytest.raises(ValueError, match="neg_penalty must be"):
        ScoringConfig(neg_penalty=float("nan"))
