"""adrank.ops.topk against a plain NumPy reference (stable argsort, in reference.py) and
torch.topk."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import adrank
from adrank import _native
from adrank.ops import select, topk
from reference import SPECIAL, check_same, rows_ref, select_ref, topk_ref

# --- inputs -------------------------------------------------------------------------------

scores_1d = hnp.arrays(
    np.float32,
    st.integers(0, 80),
    elements=st.one_of(
        st.sampled_from(SPECIAL), st.floats(-10, 10, width=32, allow_subnormal=False)
    ),
)


# --- one request --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(scores=scores_1d, k=st.integers(0, 100))
def test_topk_matches_stable_argsort(scores, k):
    check_same(topk(scores, k), topk_ref(scores, k))


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 1000, 5000])
@pytest.mark.parametrize("k", [0, 1, 10, 500, 6000])
@pytest.mark.parametrize(
    "kind", ["normal", "ties", "sorted", "reversed", "nan", "infinities", "mostly nan"]
)
def test_topk_corner_cases(n, k, kind):
    rng = np.random.default_rng(n * 7 + k)
    scores = {
        "normal": rng.standard_normal(n),
        "ties": rng.integers(0, 3, n),
        "sorted": np.arange(n),
        "reversed": -np.arange(n),
        "nan": np.where(rng.random(n) < 0.5, np.nan, rng.integers(-2, 2, n)),
        "infinities": rng.choice([np.inf, -np.inf, np.nan, 0.0, -0.0], n),
        "mostly nan": np.where(rng.random(n) < 0.995, np.nan, rng.standard_normal(n)),
    }[kind].astype(np.float32)
    check_same(topk(scores, k), topk_ref(scores, k))


def test_all_nan_gives_only_padding():
    values, indices = topk(np.full(5, np.nan, np.float32), 3)
    assert (indices == -1).all()
    assert (values == -np.inf).all()


def test_negative_infinity_is_selected_but_nan_is_not():
    scores = np.array([np.nan, -np.inf, np.nan, -np.inf], np.float32)
    check_same(topk(scores, 3), (np.array([-np.inf] * 3, np.float32), np.array([1, 3, -1])))


def test_negative_zero_ties_with_zero_and_keeps_its_sign():
    values, indices = topk(np.array([-0.0, 0.0, -0.0], np.float32), 3)
    np.testing.assert_array_equal(indices, [0, 1, 2])
    np.testing.assert_array_equal(np.signbit(values), [True, False, True])


def test_other_dtypes_are_converted_to_float32():
    scores = np.array([1.0, 3.0, 2.0])
    check_same(topk(scores, 2), topk_ref(scores.astype(np.float32), 2))
    check_same(topk([1, 3, 2], 2), topk_ref(np.array([1, 3, 2], np.float32), 2))
    strided = np.arange(10, dtype=np.float32)[::2]
    check_same(topk(strided, 2), topk_ref(np.ascontiguousarray(strided), 2))


@pytest.mark.parametrize("n", [1, 100, 10_000])
@pytest.mark.parametrize("k", [1, 7, 100])
def test_topk_matches_torch(n, k):
    """torch's tie order is unspecified: compare the values, and the indices up to the ties at
    the boundary (the tied score that the k-th slot holds)."""
    rng = np.random.default_rng(n + k)
    scores = rng.integers(0, 50, n).astype(np.float32)  # many ties
    kk = min(k, n)
    values, indices = topk(scores, k)
    want_values, want_indices = torch.topk(torch.from_numpy(scores), kk)
    np.testing.assert_array_equal(values[:kk], want_values.numpy())
    boundary = values[kk - 1]
    above = values[:kk] > boundary
    want_above = want_values.numpy() > boundary
    assert set(indices[:kk][above]) == set(want_indices.numpy()[want_above])
    tied = set(np.flatnonzero(scores == boundary))
    assert set(indices[:kk][~above]) <= tied
    assert set(want_indices.numpy()[~want_above]) <= tied


# --- batches ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    scores=hnp.arrays(
        np.float32,
        st.tuples(st.integers(0, 6), st.integers(0, 50)),
        elements=st.sampled_from(SPECIAL),
    ),
    k=st.integers(0, 60),
)
def test_dense_batch_is_each_request_alone(scores, k):
    values, indices = topk(scores, k)
    assert values.shape == indices.shape == (scores.shape[0], k)
    for r in range(scores.shape[0]):
        check_same((values[r], indices[r]), topk_ref(scores[r], k))


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=0, max_size=8),
    k=st.integers(0, 50),
    seed=st.integers(0, 2**32 - 1),
)
def test_jagged_batch_is_each_request_alone(lengths, k, seed):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    scores = rng.choice(np.array(SPECIAL, np.float32), offsets[-1])
    values, indices = topk(scores, k, offsets=offsets)
    assert values.shape == (len(lengths), k)
    for r, request in enumerate(rows_ref(scores, offsets)):
        check_same((values[r], indices[r]), topk_ref(scores[request], k))


def test_batches_use_the_thread_pool_with_the_same_answer():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 20, (64, 3000)).astype(np.float32)
    single = topk(scores, 50)
    before = _native.get_num_threads()
    try:
        _native.set_num_threads(2)
        threaded = topk(scores, 50)
    finally:
        _native.set_num_threads(before)
    check_same(threaded, single)


def test_caller_owned_outputs_are_filled_and_returned():
    scores = np.array([[3, 1, 2], [1, 2, 3]], np.float32)
    values = np.empty((2, 4), np.float32)
    indices = np.empty((2, 4), np.int64)
    got = topk(scores, 4, out=(values, indices))
    assert got[0] is values
    assert got[1] is indices
    np.testing.assert_array_equal(indices, [[0, 2, 1, -1], [2, 1, 0, -1]])


def simd_sweep() -> np.ndarray:
    """Answers of topk and select over a batch with NaN and ties, flattened for comparison."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 100, (8, 5000)).astype(np.float32)
    x[:, ::7] = np.nan
    g = rng.integers(0, 30, x.shape)
    return np.concatenate([topk(x, 40)[1], select(x, 40, (g, 2))[1]])


def simd_sweep_ref() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 100, (8, 5000)).astype(np.float32)
    x[:, ::7] = np.nan
    g = rng.integers(0, 30, x.shape)
    want = [topk_ref(row, 40)[1] for row in x]
    want += [select_ref(row, 40, [(gr, 2)])[1] for row, gr in zip(x, g, strict=True)]
    return np.stack(want)


@pytest.mark.parametrize("simd", ["avx512", "avx2", "generic"])
def test_every_simd_level_gives_the_same_answers(simd):
    """adrank.set_simd switches the scan for the next call; both twins match the reference."""
    try:
        adrank.set_simd(simd)
    except ValueError:
        pytest.skip(f"this CPU cannot run the {simd} kernels")
    try:
        assert adrank.get_simd() == simd
        np.testing.assert_array_equal(simd_sweep(), simd_sweep_ref())
    finally:
        adrank.set_simd("auto")


def bar_and_sort_rows(kind: str) -> np.ndarray:
    """Rows whose answers go through the initial bar of 2k bucket maxima and the bucket sort
    of a few hundred keys, each starting at a different offset from a cache line."""
    rng = np.random.default_rng(len(kind))
    n = 20_003
    x = {
        "normal": rng.standard_normal(n),
        "ties": rng.integers(0, 40, n),
        "specials": np.where(rng.random(n) < 0.2, rng.choice(SPECIAL, n), rng.standard_normal(n)),
        # One far score and the rest within a few ulps: the keys pile into one bucket.
        "piled": np.where(np.arange(n) == 7, 1e30, 1.0 + rng.integers(0, 400, n) * 2.0**-23),
        "crossing zero": rng.standard_normal(n) * 1e-3 - 5e-4,
    }[kind].astype(np.float32)
    return np.concatenate([np.zeros(16, np.float32), x])


@pytest.mark.parametrize("simd", ["avx512", "avx2", "generic"])
@pytest.mark.parametrize("kind", ["normal", "ties", "specials", "piled", "crossing zero"])
def test_bar_and_bucket_sort_match_the_reference_at_every_offset(simd, kind):
    try:
        adrank.set_simd(simd)
    except ValueError:
        pytest.skip(f"this CPU cannot run the {simd} kernels")
    try:
        padded = bar_and_sort_rows(kind)
        for offset in (16, 15, 13, 4):  # 0, 4, 12 and 48 bytes past a 64-byte line
            row = padded[offset:]
            for k in (40, 100, 150):
                check_same(topk(row, k), topk_ref(row, k))
    finally:
        adrank.set_simd("auto")


@pytest.mark.parametrize("simd", ["avx512", "avx2", "generic"])
def test_scores_at_an_odd_byte_offset_match_the_reference(simd):
    """A float32 view one byte off its size's alignment: the scan cannot align its loads and
    must still keep within its hit buffer (all scores tie, so every one is a hit)."""
    try:
        adrank.set_simd(simd)
    except ValueError:
        pytest.skip(f"this CPU cannot run the {simd} kernels")
    try:
        for fill in (0.0, 1.5):
            raw = bytearray(np.full(5001, fill, np.float32).tobytes() + b"\0")
            x = np.frombuffer(raw, np.float32, count=5000, offset=1)
            assert not x.flags.aligned
            for k in (3, 100):
                check_same(topk(x, k), topk_ref(x, k))
            check_same(
                select(x, 100, (np.arange(5000) % 7, 3)),
                select_ref(x, 100, [(np.arange(5000) % 7, 3)]),
            )
    finally:
        adrank.set_simd("auto")


@pytest.mark.parametrize("value", ["generic", "scalar"])
def test_adrank_simd_in_the_environment_is_read_at_load(value):
    """ADRANK_SIMD=generic (or its older name, scalar) forces the portable twins from the start."""
    script = (
        "import sys\n"
        "import numpy as np\n"
        "import adrank\n"
        "assert adrank.get_simd() == 'generic', adrank.get_simd()\n"
        "from test_topk import simd_sweep\n"
        "np.save(sys.stdout.buffer, simd_sweep())\n"
    )
    env = dict(os.environ, ADRANK_SIMD=value, PYTHONPATH=os.path.dirname(__file__))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, check=True, timeout=120
    )
    np.testing.assert_array_equal(np.load(io.BytesIO(result.stdout)), simd_sweep_ref())


def best_simd() -> str:
    adrank.set_simd("auto")
    return adrank.get_simd()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("avx2", lambda best: "generic" if best == "generic" else "avx2"),
        ("avx512", lambda best: best),  # the best the CPU has at or below it
        ("auto", lambda best: best),
        ("sse9", lambda best: best),  # unknown: auto, for a module must load whatever is set
    ],
)
def test_adrank_simd_levels_at_load(value, expected):
    script = "import adrank\nprint(adrank.get_simd())\n"
    env = dict(os.environ, ADRANK_SIMD=value)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, check=True, timeout=60
    )
    assert result.stdout.decode().strip() == expected(best_simd())


# --- k beyond the candidates -----------------------------------------------------------


@pytest.mark.parametrize("layout", ["one", "dense", "jagged"])
def test_k_pads_up_to_the_documented_maximum_and_no_further(layout):
    """k may exceed N by padding up to max(N, 65536); past it a ValueError names k before any
    answer is allocated (k = 2**31 once allocated 24 GB and met the OOM killer)."""
    scores = np.arange(6, dtype=np.float32)
    offsets = None
    if layout == "dense":
        scores = scores.reshape(2, 3)
    elif layout == "jagged":
        offsets = np.array([0, 1, 6, 6])
    values, indices = topk(scores, 65536, offsets=offsets)
    assert values.shape[-1] == 65536
    assert (indices[..., 6:] == -1).all()
    for k in (65537, 2**31, 2**62, 2**63 - 1):
        with pytest.raises(ValueError, match=f"k must be <= 65536 .*, got {k}"):
            topk(scores, k, offsets=offsets)
    with pytest.raises(ValueError, match="k must be <= 9223372036854775807"):
        topk(scores, 2**64, offsets=offsets)


def test_k_up_to_the_request_length_beyond_the_padding_limit():
    scores = np.random.default_rng(5).standard_normal(70_000).astype(np.float32)
    check_same(topk(scores, 70_000), topk_ref(scores, 70_000))
    with pytest.raises(ValueError, match="k must be <= 70000"):
        topk(scores, 70_001)


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": -1}, ValueError, "k must be >= 0"),
        ({"k": 2.0}, TypeError, "k must be an integer"),
        ({"k": True}, TypeError, "k must be an integer"),
        ({"scores": np.array(["a", "b"])}, TypeError, "scores must hold real numbers"),
        ({"scores": np.array([True, False])}, TypeError, "scores must hold real numbers"),
        ({"scores": np.array([1 + 2j])}, TypeError, "scores must hold real numbers"),
        ({"scores": np.zeros((2, 2, 2), np.float32)}, ValueError, "scores must be 1-D or 2-D"),
        ({"scores": np.float32(1.0)}, ValueError, "scores must be 1-D or 2-D"),
        ({"offsets": [0, 2]}, ValueError, "offsets must end at len\\(scores\\) = 3"),
        ({"offsets": [1, 3]}, ValueError, "offsets must start at 0"),
        ({"offsets": [0, 2, 1, 3]}, ValueError, "offsets must not decrease"),
        ({"offsets": []}, ValueError, "offsets must hold at least one entry"),
        ({"offsets": [0.0, 3.0]}, TypeError, "offsets must hold integers"),
        ({"offsets": [[0, 3]]}, ValueError, "offsets must be 1-D"),
        (
            {"scores": np.zeros((1, 3), np.float32), "offsets": [0, 3]},
            ValueError,
            "scores must be 1-D with offsets",
        ),
        ({"out": np.empty(2)}, TypeError, "out must be a pair"),
        ({"out": (np.empty(2, np.float32),)}, TypeError, "out must be a pair"),
        (
            {"out": (np.empty(2, np.float64), np.empty(2, np.int64))},
            TypeError,
            "out values must have dtype float32",
        ),
        (
            {"out": (np.empty(2, np.float32), np.empty(2, np.int32))},
            TypeError,
            "out indices must have dtype int64",
        ),
        (
            {"out": (np.empty(3, np.float32), np.empty(2, np.int64))},
            ValueError,
            "out values must have shape \\(2,\\)",
        ),
        ({"out": ([0.0, 0.0], np.empty(2, np.int64))}, TypeError, "must be a numpy array"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, error, match):
    arguments = {"scores": np.array([1, 2, 3], np.float32), "k": 2, **kwargs}
    with pytest.raises(error, match=match):
        topk(arguments.pop("scores"), arguments.pop("k"), **arguments)


def test_read_only_output_is_refused():
    values = np.empty(2, np.float32)
    values.flags.writeable = False
    with pytest.raises(ValueError, match="values_out must be writable"):
        topk(np.ones(3, np.float32), 2, out=(values, np.empty(2, np.int64)))


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((np.ones(3, np.float64), None, 1, None, None), TypeError, "scores must have dtype"),
        ((np.ones(3, np.float32)[::2], None, 1, None, None), ValueError, "C-contiguous"),
        ((np.ones(3, np.float32), None, -5, None, None), ValueError, "k must be >= 0"),
        (
            (np.ones(3, np.float32), np.array([0, 3], np.int32), 1, None, None),
            TypeError,
            "offsets must have dtype int64",
        ),
        (
            (np.ones(3, np.float32), None, 2, np.empty(3, np.float32), None),
            ValueError,
            "values_out must hold 2 items",
        ),
        (
            (np.ones(3, np.float32), None, 2, None, np.empty(2, np.int32)),
            TypeError,
            "indices_out must have dtype int64",
        ),
    ],
)
def test_kernel_edge_refuses_what_the_wrapper_would_convert(args, error, match):
    with pytest.raises(error, match=match):
        _native.topk(*args)


def test_fast_path_errors_name_the_argument():
    with pytest.raises(ValueError, match="k must be >= 0"):
        topk(np.ones(3, np.float32), -1)
    with pytest.raises(ValueError, match="scores must be 1-D or 2-D"):
        topk(np.ones((1, 1, 1), np.float32), 1)
