"""The auction of one request (scoring, eligibility, capped selection, GSP pricing) as one
native pass (``ops.auction``) against the numpy path the Ranker ran before it: the formulas of
adrank.orchestrator.scoring and .pricing, numpy masks for the rules and ``ops.select``.

    .venv/bin/python -m pytest bench/bench_auction.py --benchmark-only

C in {1e3, 1e4} candidates drawn from a catalog of 4,000 (1e3) or 40,000 (1e4) creatives, mixed
objectives, k = 10, 2 per advertiser, a region, two blocked categories and 30 impressions of
frequency history. Requests rotate through four inputs, as a server sees fresh candidates each
time. Both paths' answers are checked equal once, outside the timed calls.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from adrank import ops
from adrank.orchestrator import pricing, scoring
from adrank.orchestrator.scoring import ScoringConfig

SIZES = [1_000, 10_000]
K = 10
CAP = 2
ROTATION = 4
CONFIG = ScoringConfig(reserve_ecpm=0.5, neg_penalty=0.2)
ALL = np.uint64(2**64 - 1)
BLOCKED = np.array([3, 5], dtype=np.int64)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import adrank

    adrank.set_num_threads(1)


def _catalog(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = rng.integers(1, 16, rows).astype(np.uint64)
    masks[rng.random(rows) < 0.5] = ALL
    return {
        "creative_id": np.arange(rows, dtype=np.int64) * 7 + 1,
        "advertiser_id": rng.integers(0, rows // 20, rows),
        "category": rng.integers(0, 30, rows),
        "objective": rng.integers(0, 3, rows).astype(np.int8),
        "bid": rng.uniform(0.5, 20.0, rows),
        "target_cpa": rng.uniform(5.0, 50.0, rows),
        "region_mask": masks,
        "active": rng.random(rows) < 0.9,
    }


def _requests(catalog: dict, size: int) -> list[dict]:
    rng = np.random.default_rng(size)
    rows_total = len(catalog["creative_id"])
    requests = []
    for _ in range(ROTATION):
        rows = rng.choice(rows_total, size, replace=False).astype(np.int64)
        rates = [rng.uniform(0, hi, size).astype(np.float32) for hi in (0.1, 0.2, 0.02)]
        seen = rng.choice(catalog["creative_id"][rows], 30)
        requests.append(
            {"rows": rows, "rates": rates, "pacing": rng.uniform(0.2, 1.0, size), "seen": seen}
        )
    return requests


def _numpy_auction(c: dict, request: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Ranker's stages 5-7 before the native pass."""
    rows, (p_ctr, p_cvr, p_neg), pacing = request["rows"], request["rates"], request["pacing"]
    objective, bid, cpa = c["objective"][rows], c["bid"][rows], c["target_cpa"][rows]
    value = scoring.value_per_mille(objective, bid, cpa, p_ctr, p_cvr)
    penalty = scoring.neg_feedback_penalty(CONFIG, p_neg)
    ecpm = value * pacing - penalty
    eligible = c["active"][rows] & (pacing > 0)
    masks = c["region_mask"][rows]
    eligible &= (masks == ALL) | ((masks & np.uint64(2)) != 0)
    eligible &= ~np.isin(c["category"][rows], BLOCKED)
    seen, counts = np.unique(request["seen"], return_counts=True)
    eligible &= ~np.isin(c["creative_id"][rows], seen[counts >= 2])
    _, chosen = ops.select(
        ecpm.astype(np.float32),
        K + 1,
        groups=(c["advertiser_id"][rows], CAP),
        eligible=eligible,
        min_score=CONFIG.reserve_ecpm,
    )
    chosen = chosen[chosen >= 0]
    winners, runner_up = chosen[:K], chosen[K:]
    factor = scoring.bid_to_ecpm_factor(
        objective[winners],
        p_ctr[winners].astype(np.float64),
        p_cvr[winners].astype(np.float64),
        pacing[winners],
    )
    price = pricing.gsp_prices(
        ecpm[winners],
        float(ecpm[runner_up[0]]) if len(runner_up) else None,
        scoring.own_bid(objective[winners], bid[winners], cpa[winners]),
        factor,
        penalty[winners],
        CONFIG.reserve_ecpm,
    )
    return winners, ecpm[winners], price


def _native_auction(columns, request: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return ops.auction(
        columns,
        request["rows"],
        *request["rates"],
        k=K,
        reserve_ecpm=CONFIG.reserve_ecpm,
        neg_penalty=CONFIG.neg_penalty,
        max_per_advertiser=CAP,
        region_bit=2,
        pacing=request["pacing"],
        blocked_categories=BLOCKED,
        recently_seen=request["seen"],
        frequency_cap=2,
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("role", ["adrank", "baseline"])
def test_auction(benchmark, size: int, role: str) -> None:
    catalog = _catalog(size * 4, seed=size)
    columns = ops.auction_catalog(**catalog)
    requests = _requests(catalog, size)
    for request in requests:  # the same answer, bit for bit
        got, want = _native_auction(columns, request), _numpy_auction(catalog, request)
        assert len(got[0]) == K
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
    cycle = itertools.cycle(requests)
    if role == "adrank":

        def run():
            return _native_auction(columns, next(cycle))
    else:

        def run():
            return _numpy_auction(catalog, next(cycle))

    benchmark.group = f"auction of {size} candidates, k={K}"
    benchmark.extra_info.update(role=role, items=size)
    benchmark(run)
