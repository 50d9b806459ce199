"""adrank.ops.select against the plain greedy reference (select_ref in reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adrank import _native
from adrank.ops import select
from reference import SPECIAL, check_same, rows_ref, select_ref, topk_ref


@st.composite
def requests(draw, max_n=120):
    """A request with ties, NaN and infinities, and 0-3 group constraints whose ownership can
    be uniform, skewed (one label owns ~90%) or one label for all."""
    n = draw(st.integers(0, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        scores = rng.choice(np.array(SPECIAL, np.float32), n)
    else:
        scores = rng.integers(-3, 4, n).astype(np.float32)
    groups = []
    for _ in range(draw(st.integers(0, 3))):
        ownership = draw(st.sampled_from(["uniform", "skewed", "single", "raw ids"]))
        labels = int(draw(st.integers(1, 20)))
        ids = rng.integers(0, labels, n)
        if ownership == "skewed":
            ids = np.where(rng.random(n) < 0.9, 0, ids)
        elif ownership == "single":
            ids = np.zeros(n, np.int64)
        elif ownership == "raw ids":  # large and negative labels are labels too
            ids = (ids - labels // 2) * 1_000_000_007 + 2**62
        groups.append((ids.astype(np.int64), draw(st.integers(0, 6))))
    eligible = (
        rng.random(n) < draw(st.sampled_from([0.0, 0.5, 1.0])) if draw(st.booleans()) else None
    )
    min_score = draw(st.sampled_from([None, -np.inf, -1.0, 0.0, 2.5, np.inf]))
    return scores, groups, eligible, min_score


@settings(max_examples=300, deadline=None)
@given(request=requests(), k=st.integers(0, 40))
def test_select_matches_greedy_reference(request, k):
    scores, groups, eligible, min_score = request
    got = select(scores, k, groups, eligible, min_score)
    check_same(got, select_ref(scores, k, groups, eligible, min_score))


@pytest.mark.parametrize("n", [0, 1, 100, 5000])
@pytest.mark.parametrize("k", [0, 1, 10, 200])
@pytest.mark.parametrize("cap", [0, 1, 3])
def test_one_advertiser_owning_90_percent(n, k, cap):
    rng = np.random.default_rng(n + k + cap)
    scores = rng.standard_normal(n).astype(np.float32)
    advertisers = np.where(rng.random(n) < 0.9, 42, rng.integers(0, n // 20 + 1, n))
    categories = rng.integers(0, 7, n)
    groups = [(advertisers, cap), (categories, 4 * cap)]
    check_same(select(scores, k, groups), select_ref(scores, k, groups))


def test_zipf_ownership_at_scale():
    rng = np.random.default_rng(11)
    n = 20_000
    scores = rng.standard_normal(n).astype(np.float32)
    advertisers = (rng.zipf(1.3, n) - 1) % (n // 20)
    check_same(select(scores, 300, (advertisers, 3)), select_ref(scores, 300, [(advertisers, 3)]))


def test_without_constraints_select_is_topk():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 9, 3000).astype(np.float32)
    check_same(select(scores, 100), topk_ref(scores, 100))


def test_all_ineligible_gives_only_padding():
    values, indices = select(np.ones(10, np.float32), 4, eligible=np.zeros(10, bool))
    assert (indices == -1).all()
    assert (values == -np.inf).all()


def test_min_score_is_exact_for_values_between_floats():
    scores = np.array([0.1, 0.2], np.float32)
    just_above = float(scores[0]) + 1e-12  # rounds to scores[0] in float32, yet is above it
    np.testing.assert_array_equal(select(scores, 2, min_score=just_above)[1], [1, -1])
    np.testing.assert_array_equal(select(scores, 2, min_score=float(scores[0]))[1], [1, 0])
    np.testing.assert_array_equal(select(scores, 2, min_score=10**400)[1], [-1, -1])
    np.testing.assert_array_equal(select(scores, 2, min_score=-(10**400))[1], [1, 0])
    np.testing.assert_array_equal(select(scores, 2, min_score=-1e39)[1], [1, 0])


def test_min_score_on_the_serving_path_matches_the_checked_path():
    """A float min_score takes the fast path (the Ranker passes one on every request); a numpy
    scalar takes the checked one. Alternating floors must not reuse a stale one."""
    rng = np.random.default_rng(9)
    scores = rng.integers(-3, 4, 300).astype(np.float32)
    ids = rng.integers(0, 5, 300)
    floors = [0.5, 0.5, float(np.float32(0.1)) + 1e-12, -0.0, 0.0, 3.0, -np.inf, np.inf, 1e300]
    for floor in floors + floors[::-1]:
        fast = select(scores, 20, (ids, 2), scores > -2, floor)
        checked = select(scores, 20, (ids, 2), scores > -2, np.float64(floor))
        check_same(fast, checked)
        check_same(fast, select_ref(scores, 20, [(ids, 2)], scores > -2, floor))
    with pytest.raises(ValueError, match="min_score must not be NaN"):
        select(scores, 20, (ids, 2), min_score=float("nan"))


def test_a_single_pair_or_a_list_of_pairs():
    scores = np.array([5, 4, 3, 2], np.float32)
    ids = np.array([1, 1, 2, 2])
    np.testing.assert_array_equal(select(scores, 4, (ids, 1))[1], [0, 2, -1, -1])
    np.testing.assert_array_equal(select(scores, 4, [(ids, 1)])[1], [0, 2, -1, -1])
    np.testing.assert_array_equal(select(scores, 4, [[ids, 1], (ids, 2)])[1], [0, 2, -1, -1])
    both = ((ids, 1), (ids[::-1].copy(), 1))
    np.testing.assert_array_equal(select(scores, 4, both)[1], [0, 2, -1, -1])
    narrow = ids.astype(np.int8)  # converted to int64
    np.testing.assert_array_equal(select(scores, 4, (narrow, 1))[1], [0, 2, -1, -1])


# --- batches ------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 60), min_size=0, max_size=6),
    k=st.integers(0, 30),
    cap=st.integers(0, 4),
    seed=st.integers(0, 2**32 - 1),
    jagged=st.booleans(),
)
def test_batches_are_each_request_alone(lengths, k, cap, seed, jagged):
    rng = np.random.default_rng(seed)
    if not jagged:
        lengths = [lengths[0] if lengths else 0] * len(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    scores = rng.integers(0, 5, offsets[-1]).astype(np.float32)
    scores[rng.random(offsets[-1]) < 0.1] = np.nan
    advertisers = rng.integers(0, 4, offsets[-1])
    categories = rng.integers(0, 3, offsets[-1])
    eligible = rng.random(offsets[-1]) < 0.8
    groups = [(advertisers, cap), (categories, cap + 1)]
    if jagged:
        got = select(scores, k, groups, eligible, 1.0, offsets=offsets)
    else:
        shape = (len(lengths), lengths[0] if lengths else 0)
        dense_groups = [(ids.reshape(shape), c) for ids, c in groups]
        got = select(scores.reshape(shape), k, dense_groups, eligible.reshape(shape), 1.0)
    assert got[0].shape == (len(lengths), k)
    for r, s in enumerate(rows_ref(scores, offsets)):
        want = select_ref(scores[s], k, [(ids[s], c) for ids, c in groups], eligible[s], 1.0)
        check_same((got[0][r], got[1][r]), want)


def test_threaded_batch_gives_the_same_answer():
    rng = np.random.default_rng(9)
    scores = rng.integers(0, 30, (64, 2000)).astype(np.float32)
    advertisers = rng.integers(0, 40, scores.shape)
    single = select(scores, 60, (advertisers, 2))
    before = _native.get_num_threads()
    try:
        _native.set_num_threads(2)
        check_same(select(scores, 60, (advertisers, 2)), single)
    finally:
        _native.set_num_threads(before)


def test_caller_owned_outputs():
    values = np.empty(3, np.float32)
    indices = np.empty(3, np.int64)
    got = select(np.array([1, 2], np.float32), 3, out=(values, indices))
    assert got[0] is values
    assert got[1] is indices
    np.testing.assert_array_equal(indices, [1, 0, -1])


def test_huge_k_is_refused_and_huge_caps_never_bind():
    scores = np.array([5, 4, 3, 2], np.float32)
    ids = np.array([1, 1, 2, 2])
    for k in (65537, 2**31, 2**63 - 1):
        with pytest.raises(ValueError, match=f"k must be <= 65536 .*, got {k}"):
            select(scores, k, (ids, 1))
        with pytest.raises(ValueError, match=f"k must be <= 65536 .*, got {k}"):
            select(scores, k, (ids, 1), min_score=0.0)
    with pytest.raises(ValueError, match="k must be <= 9223372036854775807"):
        select(scores, 2**64, (ids, 1))
    for cap in (2**63 - 1, 2**63, 2**64):
        check_same(select(scores, 65536, (ids, cap)), select_ref(scores, 65536))
        check_same(select(scores, 3, [(ids, cap), (ids, 1)]), select_ref(scores, 3, [(ids, 1)]))


# --- errors -------------------------------------------------------------------------------

IDS = np.array([1, 2, 3])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": -1}, ValueError, "k must be >= 0"),
        ({"groups": (IDS, -1)}, ValueError, "groups\\[0\\] cap must be >= 0"),
        ({"groups": [(IDS, 1), (IDS, -2)]}, ValueError, "groups\\[1\\] cap must be >= 0"),
        ({"groups": (IDS, 1.5)}, TypeError, "groups\\[0\\] cap must be an integer"),
        ({"groups": [(IDS, 1.5)]}, TypeError, "groups\\[0\\] cap must be an integer"),
        ({"groups": [(IDS, True)]}, TypeError, "groups\\[0\\] cap must be an integer"),
        ({"groups": (IDS[:2], 1)}, ValueError, "groups\\[0\\] ids must have the shape"),
        ({"groups": (IDS.astype(float), 1)}, TypeError, "groups\\[0\\] ids must hold integers"),
        ({"groups": [IDS]}, TypeError, "groups\\[0\\] must be an \\(ids, cap\\) pair"),
        ({"groups": IDS}, TypeError, "groups must be an \\(ids, cap\\) pair"),
        ({"groups": 3}, TypeError, "groups must be an \\(ids, cap\\) pair"),
        ({"eligible": np.ones(3)}, TypeError, "eligible must have dtype bool"),
        ({"eligible": np.ones(2, bool)}, ValueError, "eligible must have the shape"),
        ({"min_score": np.nan}, ValueError, "min_score must not be NaN"),
        ({"min_score": "0.5"}, TypeError, "min_score must be a real number"),
        ({"min_score": True}, TypeError, "min_score must be a real number"),
        ({"scores": np.array(["x"])}, TypeError, "scores must hold real numbers"),
        ({"offsets": [0, 1]}, ValueError, "offsets must end at len\\(scores\\) = 3"),
        ({"out": (np.empty(2, np.float32), np.empty(3, np.int64))}, ValueError, "out indices"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, error, match):
    arguments = {"scores": np.array([1, 2, 3], np.float32), "k": 2, **kwargs}
    with pytest.raises(error, match=match):
        select(arguments.pop("scores"), arguments.pop("k"), **arguments)


F32 = np.ones(3, np.float32)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((F32, None, 1, [IDS], [1, 2], None, 0.0), ValueError, "group_ids and caps must pair"),
        ((F32, None, 1, [IDS.astype(np.int32)], [1], None, 0.0), TypeError, "groups\\[0\\] ids"),
        ((F32, None, 1, [IDS[:2]], [1], None, 0.0), ValueError, "one id per score"),
        ((F32, None, 1, [IDS], [-1], None, 0.0), ValueError, "groups\\[0\\] cap must be >= 0"),
        ((F32, None, 1, [], [], np.ones(3, np.uint8), 0.0), TypeError, "eligible must have"),
        ((F32, None, 1, [], [], np.ones(2, bool), 0.0), ValueError, "one flag per score"),
        ((F32, None, 1, [], [], np.ones((3, 1), bool), 0.0), ValueError, "eligible must be"),
        ((F32, None, 1, [], [], None, float("nan")), ValueError, "min_score must not be NaN"),
    ],
)
def test_kernel_edge_checks(args, error, match):
    with pytest.raises(error, match=match):
        _native.select(*args, None, None)
