"""ops.auction, the native pass of a request's scoring, eligibility, selection and pricing,
against the reference: the formulas of adrank.orchestrator.scoring and .pricing, numpy's
eligibility masks and ops.select, as the Ranker ran them before the pass. Bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adrank import _native, ops
from adrank.orchestrator import pricing, scoring
from adrank.orchestrator.scoring import Objective, ScoringConfig

ALL = np.uint64(2**64 - 1)


def make_columns(rng: np.random.Generator, rows: int, *, nan_share: float = 0.0) -> dict:
    """A random catalog's columns; bids from a few values, so that scores tie."""
    bid = rng.choice([0.5, 1.0, 2.0, 3.0], rows) * rng.choice([1.0, 1.0, 1.5], rows)
    target_cpa = rng.choice([5.0, 10.0, 20.0], rows)
    if nan_share:
        bid[rng.random(rows) < nan_share] = np.nan
        target_cpa[rng.random(rows) < nan_share] = np.nan
    masks = rng.integers(0, 8, rows).astype(np.uint64)
    masks[rng.random(rows) < 0.4] = ALL
    return {
        "creative_id": rng.permutation(rows).astype(np.int64) * 3 + 100,
        "advertiser_id": rng.integers(0, max(1, rows // 3), rows),
        "category": rng.integers(0, 6, rows),
        "objective": rng.integers(0, 3, rows).astype(np.int8),
        "bid": bid,
        "target_cpa": target_cpa,
        "region_mask": masks,
        "active": rng.random(rows) < 0.85,
    }


def rates(rng: np.random.Generator, size: int, dtype, nan_share: float) -> np.ndarray:
    values = rng.choice([0.0, 0.01, 0.02, 0.05, 0.1], size) + rng.choice([0.0, 0.003], size)
    values[rng.random(size) < nan_share] = np.nan
    return values.astype(dtype)


def auction_ref(c, rows, p_ctr, p_cvr, p_neg, *, k, reserve_ecpm, neg_penalty, cap, region_bit,
                pacing=None, killed=None, blocked=(), seen=(), frequency_cap=1):  # fmt: skip
    """The Ranker's stages 5-7 as they were in Python (scoring.py, ops.select, pricing.py)."""
    config = ScoringConfig(reserve_ecpm=reserve_ecpm, neg_penalty=neg_penalty)
    objective, bid, cpa = c["objective"][rows], c["bid"][rows], c["target_cpa"][rows]
    pacing = np.ones(len(rows)) if pacing is None else np.asarray(pacing, dtype=np.float64)
    unknown = np.zeros_like(p_ctr)
    cvr = unknown if p_cvr is None else p_cvr
    with np.errstate(all="ignore"):
        value = scoring.value_per_mille(objective, bid, cpa, p_ctr, cvr)
        penalty = scoring.neg_feedback_penalty(config, unknown if p_neg is None else p_neg)
        ecpm = value * pacing - penalty
        scores = ecpm.astype(np.float32)
    eligible = c["active"][rows] & (pacing > 0)
    if killed is not None:
        eligible &= ~killed
    masks = c["region_mask"][rows]
    eligible &= (masks == ALL) | ((masks & np.uint64(region_bit)) != 0)
    if len(blocked):
        eligible &= ~np.isin(c["category"][rows], np.asarray(list(blocked), dtype=np.int64))
    if len(seen):
        ids, counts = np.unique(np.asarray(seen, dtype=np.int64), return_counts=True)
        eligible &= ~np.isin(c["creative_id"][rows], ids[counts >= frequency_cap])
    if p_cvr is None:
        eligible &= objective != Objective.OCPM
    _, chosen = ops.select(
        scores,
        min(k + 1, max(len(rows), 1)),
        groups=(c["advertiser_id"][rows], cap),
        eligible=eligible,
        min_score=reserve_ecpm,
    )
    chosen = chosen[chosen >= 0]
    winners, runner_up = chosen[:k], chosen[k:]
    with np.errstate(all="ignore"):
        factor = scoring.bid_to_ecpm_factor(
            objective[winners],
            p_ctr[winners].astype(np.float64),
            cvr[winners].astype(np.float64),
            pacing[winners],
        )
        price = pricing.gsp_prices(
            ecpm[winners],
            float(ecpm[runner_up[0]]) if len(runner_up) else None,
            scoring.own_bid(objective[winners], bid[winners], cpa[winners]),
            factor,
            penalty[winners],
            reserve_ecpm,
        )
    return winners, ecpm[winners], price


def run_both(c, rows, p_ctr, p_cvr, p_neg, **rules):
    columns = ops.auction_catalog(**c)
    got = ops.auction(
        columns,
        rows,
        p_ctr,
        p_cvr,
        p_neg,
        k=rules["k"],
        reserve_ecpm=rules["reserve_ecpm"],
        neg_penalty=rules["neg_penalty"],
        max_per_advertiser=rules["cap"],
        region_bit=rules["region_bit"],
        pacing=rules.get("pacing"),
        killed=rules.get("killed"),
        blocked_categories=np.asarray(list(rules.get("blocked", ())), dtype=np.int64),
        recently_seen=np.asarray(rules.get("seen", ()), dtype=np.int64),
        frequency_cap=rules.get("frequency_cap", 1),
    )
    want = auction_ref(c, rows, p_ctr, p_cvr, p_neg, **rules)
    return got, want


def assert_same(got, want) -> None:
    """Bit for bit: the same winners, and the same float64 eCPM and prices (NaN as NaN)."""
    np.testing.assert_array_equal(got.winners, want[0])
    assert got.winners.dtype == np.int64
    np.testing.assert_array_equal(got.ecpm, want[1], strict=True)
    np.testing.assert_array_equal(got.price, want[2], strict=True)


# --- known answers ---------------------------------------------------------------------------


def test_a_small_auction_by_hand() -> None:
    """CPM 3.0 and 2.0 (one per advertiser), a CPC at 0.001 * 1000 * 1.5 = 1.5, reserve 0.5:
    each pays what keeps it above the next; the last pays the runner-up's eCPM."""
    c = {
        "creative_id": np.array([10, 11, 12, 13]),
        "advertiser_id": np.array([1, 2, 3, 1]),
        "category": np.zeros(4, np.int64),
        "objective": np.array([0, 0, 1, 0], np.int8),
        "bid": np.array([3.0, 2.0, 1.5, 2.5]),
        "target_cpa": np.zeros(4),
        "region_mask": np.full(4, ALL),
        "active": np.ones(4, bool),
    }
    result = ops.auction(
        ops.auction_catalog(**c),
        np.array([0, 1, 2, 3]),
        np.full(4, 0.001, np.float32),
        k=2,
        reserve_ecpm=0.5,
        neg_penalty=0.0,
        max_per_advertiser=1,  # 13 (advertiser 1, 2.5) loses to 10
    )
    np.testing.assert_array_equal(result.winners, [0, 1])
    np.testing.assert_array_equal(result.ecpm, [3.0, 2.0])
    # 10 pays 2.0 (the next eCPM); 11 pays the runner-up 12's eCPM, 1.5 (float32 0.001).
    np.testing.assert_allclose(result.price, [2.0, 1.5], rtol=1e-7)
    assert ops.auction(ops.auction_catalog(**c), [0], np.ones(1), k=1, reserve_ecpm=0.5,
                       neg_penalty=0.0, max_per_advertiser=1).price[0] == 0.5  # fmt: skip


def test_ocpm_needs_a_conversion_head_and_a_penalty_needs_a_negative_head() -> None:
    rng = np.random.default_rng(0)
    c = make_columns(rng, 40)
    c["objective"][:] = Objective.OCPM
    c["active"][:] = True
    c["region_mask"][:] = ALL
    rows = np.arange(40)
    p_ctr = np.full(40, 0.05, np.float32)
    rules = {"k": 5, "reserve_ecpm": 0.5, "neg_penalty": 0.2, "cap": 40, "region_bit": 0}
    got, want = run_both(c, rows, p_ctr, None, np.full(40, 0.01, np.float32), **rules)
    assert_same(got, want)
    assert len(got.winners) == 0  # every campaign is oCPM: none can be valued
    got, want = run_both(c, rows, p_ctr, np.full(40, 0.1, np.float32), None, **rules)
    assert_same(got, want)
    assert len(got.winners) == 5
    # No penalty: eCPM = target_cpa * 0.05 * 0.1 * 1000 exactly.
    expected = c["target_cpa"][got.winners] * np.float64(np.float32(0.05))
    expected = expected * np.float64(np.float32(0.1)) * 1000.0
    np.testing.assert_array_equal(got.ecpm, expected)


def test_the_rules_each_exclude_what_they_name() -> None:
    rng = np.random.default_rng(1)
    n = 60
    c = make_columns(rng, n)
    c["active"][:] = True
    c["region_mask"][:] = ALL
    c["objective"][:] = Objective.CPM
    c["bid"] = np.linspace(10.0, 1.0, n)  # row order is rank order
    rows = np.arange(n)
    p_ctr = np.full(n, 0.05, np.float32)
    base = {"k": 3, "reserve_ecpm": 0.5, "neg_penalty": 0.0, "cap": n, "region_bit": 1}
    c["active"][0] = False
    c["region_mask"][1] = np.uint64(2)  # targets another region
    c["category"][2] = 99
    pacing = np.ones(n)
    pacing[3] = 0.0
    killed = np.zeros(n, bool)
    killed[4] = True
    seen = [c["creative_id"][5]] * 2 + [c["creative_id"][6]]  # 5 at the cap of 2, 6 under
    got, want = run_both(c, rows, p_ctr, None, None, **base, pacing=pacing, killed=killed,
                         blocked={99}, seen=seen, frequency_cap=2)  # fmt: skip
    assert_same(got, want)
    np.testing.assert_array_equal(got.winners, [6, 7, 8])


# --- against the reference, at random --------------------------------------------------------


@st.composite
def auctions(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    num_rows = draw(st.integers(1, 80))
    size = draw(st.integers(0, 120))
    nan_share = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5]))
    c = make_columns(rng, num_rows, nan_share=draw(st.sampled_from([0.0, 0.05])))
    rows = rng.integers(0, num_rows, size)  # repeats allowed, as a request may repeat an id
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    p_ctr = rates(rng, size, dtype, nan_share)
    p_cvr = draw(st.sampled_from([None, "rates"]))
    p_neg = draw(st.sampled_from([None, "rates"]))
    rules = {
        "k": draw(st.integers(0, 130)),
        "reserve_ecpm": draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 1e-3])),
        "neg_penalty": draw(st.sampled_from([0.0, 0.2, 3.0])),
        "cap": draw(st.integers(0, 4)),
        "region_bit": int(draw(st.sampled_from([0, 1, 2, 4]))),
        "frequency_cap": draw(st.integers(1, 3)),
    }
    if draw(st.booleans()):
        pacing = rng.choice([0.0, 0.25, 0.5, 1.0], size)
        pacing[rng.random(size) < nan_share / 4] = np.nan
        rules["pacing"] = pacing
    if draw(st.booleans()):
        rules["killed"] = rng.random(size) < 0.1
    rules["blocked"] = set(rng.integers(0, 6, draw(st.integers(0, 3))).tolist())
    rules["seen"] = rng.choice(c["creative_id"], draw(st.integers(0, 40))).tolist()
    return (
        c,
        rows,
        p_ctr,
        None if p_cvr is None else rates(rng, size, dtype, nan_share),
        None if p_neg is None else rates(rng, size, dtype, nan_share),
        rules,
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(auctions())
def test_equals_the_reference_bit_for_bit(case) -> None:
    c, rows, p_ctr, p_cvr, p_neg, rules = case
    got, want = run_both(c, rows, p_ctr, p_cvr, p_neg, **rules)
    assert_same(got, want)


def test_equals_the_reference_at_serving_size() -> None:
    """1,000 candidates of 4,000 creatives, several advertisers' caps binding: past the size
    where the pass releases the GIL too (2,048 candidates)."""
    rng = np.random.default_rng(5)
    for size in (1000, 5000):
        c = make_columns(rng, 4000)
        rows = rng.choice(4000, size, replace=size > 4000)
        p_ctr, p_cvr, p_neg = (rates(rng, size, np.float32, 0.01) for _ in range(3))
        rules = {"k": 10, "reserve_ecpm": 0.5, "neg_penalty": 0.2, "cap": 2, "region_bit": 2}
        got, want = run_both(c, rows, p_ctr, p_cvr, p_neg, **rules, pacing=rng.random(size))
        assert_same(got, want)
        assert len(got.winners) == 10


def test_no_candidates_and_k_far_above_them() -> None:
    rng = np.random.default_rng(2)
    c = make_columns(rng, 10)
    rules = {"k": 1000, "reserve_ecpm": 0.0, "neg_penalty": 0.0, "cap": 100, "region_bit": 0}
    empty = np.empty(0, np.float32)
    got, want = run_both(c, np.empty(0, np.int64), empty, empty, empty, **rules)
    assert_same(got, want)
    assert len(got.winners) == 0
    c["active"][:] = True
    c["region_mask"][:] = ALL
    rows = np.arange(10)
    got, want = run_both(c, rows, np.full(10, 0.1, np.float32), None, None, **rules)
    assert_same(got, want)
    assert len(got.winners) == int((c["objective"] != Objective.OCPM).sum())


# --- errors ----------------------------------------------------------------------------------


@pytest.fixture
def columns():
    return ops.auction_catalog(**make_columns(np.random.default_rng(3), 5))


RULES = {"k": 2, "reserve_ecpm": 0.5, "neg_penalty": 0.2, "max_per_advertiser": 2}


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"rows": [0, 5]}, IndexError, r"rows\[1\] = 5 is outside the catalog of 5 rows"),
        ({"rows": [-1, 0]}, IndexError, r"rows\[0\] = -1 is outside"),
        ({"rows": [0.5, 1.0]}, TypeError, "rows must hold integers"),
        ({"p_ctr": np.ones(3, np.float32)}, ValueError, r"p_ctr must hold one value per "),
        ({"p_ctr": ["a", "b"]}, TypeError, "p_ctr must hold real numbers"),
        ({"p_cvr": np.ones(1)}, ValueError, r"p_cvr must hold one value per candidate \(2\)"),
        ({"p_neg": np.ones((2, 1))}, ValueError, "p_neg must be 1-D"),
        ({"pacing": np.ones(3)}, ValueError, "pacing must hold one value per candidate"),
        ({"killed": [0, 1]}, TypeError, "killed must hold booleans"),
        ({"k": -1}, ValueError, "k must be >= 0"),
        ({"k": 1.5}, TypeError, "k must be an integer"),
        ({"reserve_ecpm": float("nan")}, ValueError, "reserve_ecpm must be a finite number"),
        ({"reserve_ecpm": -1.0}, ValueError, "reserve_ecpm must be a finite number >= 0"),
        ({"reserve_ecpm": "1"}, TypeError, "reserve_ecpm must be a real number"),
        ({"neg_penalty": float("inf")}, ValueError, "neg_penalty must be a finite number"),
        ({"max_per_advertiser": -1}, ValueError, "max_per_advertiser must be >= 0"),
        ({"frequency_cap": 0}, ValueError, "frequency_cap must be >= 1"),
        ({"region_bit": -1}, ValueError, "region_bit must be >= 0"),
        ({"recently_seen": [1.5]}, TypeError, "recently_seen must hold integers"),
        ({"blocked_categories": [[1, 2]]}, ValueError, "blocked_categories must be 1-D"),
    ],
)
def test_bad_arguments_are_named(columns, change, error, match) -> None:
    arguments = {"rows": [0, 1], "p_ctr": np.full(2, 0.1, np.float32), **RULES, **change}
    rows, p_ctr = arguments.pop("rows"), arguments.pop("p_ctr")
    with pytest.raises(error, match=match):
        ops.auction(columns, rows, p_ctr, **arguments)


def test_bad_catalog_columns_are_named() -> None:
    good = make_columns(np.random.default_rng(4), 5)
    with pytest.raises(ValueError, match=r"objective must hold codes 0 \(CPM\), 1 \(CPC\)"):
        ops.auction_catalog(**{**good, "objective": np.array([0, 1, 2, 3, 0])})
    with pytest.raises(TypeError, match="objective must hold integer codes"):
        ops.auction_catalog(**{**good, "objective": np.zeros(5)})
    with pytest.raises(TypeError, match="bid must hold real numbers"):
        ops.auction_catalog(**{**good, "bid": np.array(["x"] * 5)})
    with pytest.raises(TypeError, match="region_mask must hold integers"):
        ops.auction_catalog(**{**good, "region_mask": np.zeros(5)})
    with pytest.raises(ValueError, match=r"bid must hold one value per creative \(5\), got 4"):
        ops.auction_catalog(**{**good, "bid": np.ones(4)})
    # The native edge: no conversion, and the codes checked there too.
    with pytest.raises(TypeError, match="creative_id must have dtype int64, got float32"):
        _native.AuctionCatalog(*[np.asarray(v, dtype=np.float32) for v in good.values()])
    native = {**good, "objective": np.array([0, 1, 2, 7, 0], np.int8)}
    with pytest.raises(ValueError, match="got 7 at row 3"):
        _native.AuctionCatalog(*native.values())


def test_the_native_edge_refuses_what_the_wrapper_converts(columns) -> None:
    args = [columns, np.array([0, 1]), np.ones(2, np.float32), None, None, None, None]
    rules = [2, 0.5, 0.2, 2, 0, None, None, 1]
    with pytest.raises(TypeError, match="p_ctr must have dtype float32 or float64, got int64"):
        _native.auction(*args[:2], np.ones(2, np.int64), *args[3:], *rules)
    with pytest.raises(TypeError, match="killed must be a numpy array of dtype bool"):
        _native.auction(*args[:6], np.zeros(2, np.uint8), *rules)
    with pytest.raises(ValueError, match="p_ctr is required"):
        _native.auction(*args[:2], None, *args[3:], *rules)
    with pytest.raises(TypeError, match="recently_seen must be a numpy array, got list"):
        _native.auction(*args, *rules[:6], [1, 2], 1)
    with pytest.raises(TypeError, match="rows must have dtype int64, got int32"):
        _native.auction(columns, np.array([0, 1], np.int32), *args[2:], *rules)


def test_threads_get_their_own_answers() -> None:
    """Requests large enough to run without the GIL, from four threads at once: each answer
    is its request's (the pass's buffers are per thread)."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(6)
    c = make_columns(rng, 3000)
    columns = ops.auction_catalog(**c)
    cases = []
    for _ in range(8):
        rows = rng.choice(3000, 4000)
        p_ctr, p_cvr, p_neg = (rates(rng, 4000, np.float32, 0.0) for _ in range(3))
        cases.append((rows, p_ctr, p_cvr, p_neg))
    rules = {"k": 20, "reserve_ecpm": 0.5, "neg_penalty": 0.2, "cap": 2, "region_bit": 1}

    def run(case):
        rows, p_ctr, p_cvr, p_neg = case
        return [
            ops.auction(
                columns,
                rows,
                p_ctr,
                p_cvr,
                p_neg,
                k=20,
                reserve_ecpm=0.5,
                neg_penalty=0.2,
                max_per_advertiser=2,
                region_bit=1,
            )
            for _ in range(20)
        ]

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(run, cases))
    for case, got in zip(cases, answers, strict=True):
        want = auction_ref(c, *case, **rules)
        for answer in got:
            assert_same(answer, want)
