"""Feature hashing against independent references (xxhash, mmh3, scikit-learn, numpy) and
against the committed known-answer vectors."""

from __future__ import annotations

import json
from pathlib import Path

import mmh3
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction import FeatureHasher

import adrank
from adrank import ops
from reference import bucket_ref, fmix64_ref, hash_ids_ref, hash_strings_ref, slot_seed_ref

VECTORS = json.loads((Path(__file__).parent / "data" / "hash_vectors.json").read_text())


# --- references ---------------------------------------------------------------------------
# Plain references of our own (slot_seed_ref ... hash_ids_ref) live in reference.py.


def sklearn_ref(values, n_features: int, alternate_sign: bool = True):
    matrix = FeatureHasher(n_features, input_type="string", alternate_sign=alternate_sign)
    return matrix.transform([[v] for v in values]).tocoo()


# --- known answers --------------------------------------------------------------------------


def vector_message(length: int) -> bytes:
    return bytes((i * 167 + length * 13 + 5) % 256 for i in range(length))


@pytest.mark.parametrize("num_buckets", [1, 1000003, 2**63 - 1])
def test_xxh3_known_answers(num_buckets: int) -> None:
    messages = [vector_message(v["length"]) for v in VECTORS["vectors"]]
    for seed in VECTORS["vectors"][0]["xxh3_64"]:
        expected = [bucket_ref(v["xxh3_64"][seed], num_buckets) for v in VECTORS["vectors"]]
        # slot 0 leaves the seed as it is, so these are raw XXH3 values reduced to buckets.
        got = ops.hash_strings(messages, slot=0, num_buckets=num_buckets, seed=int(seed))
        np.testing.assert_array_equal(got, expected)


def test_murmur3_known_answers() -> None:
    messages = [vector_message(v["length"]) for v in VECTORS["vectors"]]
    signed = [
        v["murmur3_32"]["0"] - 2**32 if v["murmur3_32"]["0"] >= 2**31 else v["murmur3_32"]["0"]
        for v in VECTORS["vectors"]
    ]
    indices, signs = ops.hash_sklearn(messages, n_features=2**31 - 1)
    np.testing.assert_array_equal(indices, [abs(h) % (2**31 - 1) for h in signed])
    np.testing.assert_array_equal(signs, [1 if h >= 0 else -1 for h in signed])


def test_vectors_cover_every_length_class() -> None:
    lengths = {v["length"] for v in VECTORS["vectors"]}
    assert set(range(301)) <= lengths
    assert max(lengths) > 4096


# --- fast hash against xxhash ---------------------------------------------------------------

text = st.text(alphabet=st.characters(codec="utf-8"), max_size=300)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.one_of(text, st.binary(max_size=300), st.none()), max_size=40),
    slot=st.integers(0, 2**63 - 1),
    num_buckets=st.integers(1, 2**63 - 1),
    seed=st.integers(0, 2**64 - 1),
)
def test_hash_strings_matches_xxhash(values, slot, num_buckets, seed) -> None:
    got = ops.hash_strings(values, slot, num_buckets, seed)
    np.testing.assert_array_equal(got, hash_strings_ref(values, slot, num_buckets, seed))


@settings(max_examples=100, deadline=None)
@given(
    ids=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50),
    slot=st.integers(0, 1000),
    num_buckets=st.integers(1, 2**63 - 1),
    seed=st.integers(0, 2**64 - 1),
)
def test_hash_ids_matches_xxhash(ids, slot, num_buckets, seed) -> None:
    got = ops.hash_ids(np.array(ids, dtype=np.int64), slot, num_buckets, seed)
    np.testing.assert_array_equal(got, hash_ids_ref(ids, slot, num_buckets, seed))


@pytest.mark.parametrize("simd", ["avx512", "avx2", "generic"])
def test_hash_ids_is_the_same_at_every_simd_level(simd) -> None:
    """hash_ids has an AVX-512 twin (ids without nulls, under 2**32 buckets); every level gives
    the reference's bits, in every length class of its 8-id steps and across keys and chunks."""
    try:
        adrank.set_simd(simd)
    except ValueError:
        pytest.skip(f"this CPU cannot run the {simd} kernels")
    try:
        rng = np.random.default_rng(11)
        for n in [0, 1, 7, 8, 9, 15, 16, 17, 63]:
            ids = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64)
            for num_buckets in [1, 2, 997, 2**32 - 1, 2**32, 2**63 - 1]:
                got = ops.hash_ids(ids, 6, num_buckets, seed=2**64 - 3)
                np.testing.assert_array_equal(got, hash_ids_ref(ids, 6, num_buckets, 2**64 - 3))
        lengths = np.array([5, 60_000, 3, 40_000 - 5, 0, 2, 3], np.int64)  # keys end mid-step
        ids = rng.integers(-(2**40), 2**40, lengths.sum(), dtype=np.int64)
        slots, buckets = [1, 2, 3, 4, 5, 6, 7], [10, 2**20, 2**32 - 1, 3, 2**33, 5, 1]
        adrank.set_num_threads(2)  # chunks start mid-key too
        got = ops.hash_jagged(ids, lengths, slots, buckets, seed=9)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        for k in range(len(slots)):
            part = ids[starts[k] : starts[k + 1]][:300]  # the reference is slow: a prefix each
            np.testing.assert_array_equal(
                got[starts[k] : starts[k] + len(part)], hash_ids_ref(part, slots[k], buckets[k], 9)
            )
        adrank.set_simd("generic")
        np.testing.assert_array_equal(got, ops.hash_jagged(ids, lengths, slots, buckets, seed=9))
    finally:
        adrank.set_simd("auto")
        adrank.set_num_threads(1)


def test_hash_ids_extremes_and_dtypes() -> None:
    extremes = [-(2**63), -1, 0, 1, 2**63 - 1]
    expected = hash_ids_ref(extremes, 7, 10**9)
    np.testing.assert_array_equal(ops.hash_ids(np.array(extremes), 7, 10**9), expected)
    as_uint = np.array(extremes, dtype=np.int64).view(np.uint64)
    np.testing.assert_array_equal(ops.hash_ids(as_uint, 7, 10**9), expected)
    small = np.array([-5, 0, 5], dtype=np.int8)
    np.testing.assert_array_equal(ops.hash_ids(small, 7, 100), hash_ids_ref([-5, 0, 5], 7, 100))


def test_buckets_stay_in_range_and_spread() -> None:
    got = ops.hash_ids(np.arange(200_000), slot=1, num_buckets=1000)
    assert got.min() == 0
    assert got.max() == 999
    counts = np.bincount(got, minlength=1000)
    assert 100 < counts.min() <= counts.max() < 300  # 200 expected per bucket
    assert (ops.hash_ids(np.arange(100), 1, 1) == 0).all()


# --- slots and missing values ---------------------------------------------------------------


def test_slots_salt_the_hash() -> None:
    values = [f"creative_{i}" for i in range(5000)]
    a = ops.hash_strings(values, slot=1, num_buckets=2**40)
    b = ops.hash_strings(values, slot=2, num_buckets=2**40)
    assert (a != b).all()
    # Unrelated, not shifted: the bucket order of the values differs between slots.
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.05


def test_missing_values_land_in_the_documented_bucket() -> None:
    bucket = ops.missing_bucket(slot=4, num_buckets=1000, seed=9)
    assert bucket == bucket_ref(fmix64_ref(slot_seed_ref(9, 4)), 1000)
    values = np.array([None, float("nan"), "x", None], dtype=object)
    got = ops.hash_strings(values, 4, 1000, seed=9)
    assert got[0] == got[1] == got[3] == bucket
    assert ops.missing_bucket(5, 1000, 9) != bucket or ops.missing_bucket(6, 1000, 9) != bucket
    ids = ops.hash_ids([3, None, 5], 4, 1000, seed=9)
    np.testing.assert_array_equal(ids, hash_ids_ref([3, None, 5], 4, 1000, 9))
    # An empty string is a value, hashed as zero bytes, not a missing one.
    assert ops.hash_strings([""], 4, 2**62)[0] == bucket_ref(
        xxhash.xxh3_64_intdigest(b"", slot_seed_ref(0, 4)), 2**62
    )


# --- every input layout gives the same answer -----------------------------------------------

LAYOUT_VALUES = ["", "a", "ad_123", "ünïcödé", "emoji 🎬🎥", "with\x00nul", "x" * 500]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda v: list(v), id="list"),
        pytest.param(lambda v: tuple(v), id="tuple"),
        pytest.param(lambda v: np.array(v, dtype=object), id="numpy-object"),
        pytest.param(lambda v: np.array(v), id="numpy-unicode"),
        pytest.param(lambda v: pa.array(v), id="arrow-string"),
        pytest.param(lambda v: pa.array(v, type=pa.large_string()), id="arrow-large-string"),
        pytest.param(lambda v: pa.array(v).cast(pa.string_view()), id="arrow-string-view"),
        pytest.param(lambda v: pa.array([s.encode() for s in v]), id="arrow-binary"),
        pytest.param(lambda v: pa.array(v).dictionary_encode(), id="arrow-dictionary"),
        pytest.param(lambda v: pa.chunked_array([v[:3], v[3:]]), id="arrow-chunked"),
        pytest.param(lambda v: pa.array(["pad", *v])[1:], id="arrow-sliced"),
    ],
)
def test_string_layouts_agree(make) -> None:
    got = ops.hash_strings(make(LAYOUT_VALUES), slot=3, num_buckets=10**12)
    np.testing.assert_array_equal(got, hash_strings_ref(LAYOUT_VALUES, 3, 10**12))


def test_numpy_bytes_strip_trailing_nul_like_numpy() -> None:
    values = np.array([b"abc", b"a\x00b", b"", b"z" * 40])
    expected = hash_strings_ref([bytes(v) for v in values], 2, 997)
    np.testing.assert_array_equal(ops.hash_strings(values, 2, 997), expected)


def test_arrow_nulls_are_missing() -> None:
    for arr in (pa.array(["a", None, "c"]), pa.array(["p", "a", None, "c"])[1:]):
        expected = hash_strings_ref(arr.to_pylist(), 1, 5000)
        np.testing.assert_array_equal(ops.hash_strings(arr, 1, 5000), expected)
    dictionary = pa.DictionaryArray.from_arrays(pa.array([0, None, 1]), pa.array(["u", "v"]))
    np.testing.assert_array_equal(
        ops.hash_strings(dictionary, 1, 5000), hash_strings_ref(["u", None, "v"], 1, 5000)
    )
    ids = pa.array([1, None, 3], type=pa.int32())
    np.testing.assert_array_equal(ops.hash_ids(ids, 2, 77), hash_ids_ref([1, None, 3], 2, 77))
    sliced = pa.array([9, 1, None, 3])[1:]
    np.testing.assert_array_equal(ops.hash_ids(sliced, 2, 77), hash_ids_ref([1, None, 3], 2, 77))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda: pa.array([None, None], pa.string()).dictionary_encode(), id="all-null"
        ),
        pytest.param(
            lambda: pa.DictionaryArray.from_arrays(
                pa.array([None], pa.int8()), pa.array([], pa.string())
            ),
            id="empty-dictionary",
        ),
        pytest.param(
            lambda: pa.array(["a", None, None], pa.string()).dictionary_encode()[1:],
            id="sliced-to-nulls",
        ),
        pytest.param(
            lambda: pa.DictionaryArray.from_arrays(pa.array([1, None, 0]), pa.array([None, "v"])),
            id="null-in-dictionary",
        ),
    ],
)
def test_arrow_dictionary_nulls_hash_to_the_missing_bucket(make) -> None:
    array = make()
    np.testing.assert_array_equal(
        ops.hash_strings(array, 4, 333), hash_strings_ref(array.to_pylist(), 4, 333)
    )
    empty = pa.DictionaryArray.from_arrays(pa.array([], pa.int32()), pa.array([], pa.string()))
    assert ops.hash_strings(empty, 4, 333).shape == (0,)


def test_empty_inputs() -> None:
    for empty in ([], np.array([], dtype=object), pa.array([], type=pa.string())):
        assert ops.hash_strings(empty, 0, 10).shape == (0,)
    assert ops.hash_ids(np.array([], dtype=np.int64), 0, 10).shape == (0,)
    assert ops.bucketize(np.array([]), [1.0]).shape == (0,)


# --- scikit-learn compatibility ------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(text, min_size=1, max_size=40),
    n_features=st.one_of(st.integers(1, 64), st.integers(1, 2**31 - 1)),
    alternate_sign=st.booleans(),
)
def test_hash_sklearn_matches_feature_hasher(values, n_features, alternate_sign) -> None:
    indices, signs = ops.hash_sklearn(values, n_features, alternate_sign=alternate_sign)
    rows = np.arange(len(values))
    ours = scipy.sparse.coo_matrix(
        (signs.astype(np.float64), (rows, indices)), shape=(len(values), n_features)
    ).tocsr()
    theirs = sklearn_ref(values, n_features, alternate_sign).tocsr()
    assert (ours != theirs).nnz == 0


def test_hash_sklearn_int32_min_special_case() -> None:
    # Found by inverting MurmurHash3_x86_32 for a 4-byte input; |INT32_MIN| overflows int32.
    special = b"U\x07o\x83"
    assert mmh3.hash(special, 0, signed=True) == -(2**31)
    for n_features in (3, 1000, 2**20, 2**31 - 1):
        indices, signs = ops.hash_sklearn([special], n_features)
        theirs = sklearn_ref([special], n_features)
        assert indices[0] == theirs.col[0] == 2**31 % n_features
        assert signs[0] == theirs.data[0] == -1


# --- crosses, bucketization, batches --------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    columns=st.integers(2, 4).flatmap(
        lambda m: st.lists(
            st.lists(st.integers(-(2**63), 2**63 - 1), min_size=m, max_size=m), max_size=20
        )
    ),
    slot=st.integers(0, 100),
    seed=st.integers(0, 2**64 - 1),
)
def test_hash_cross_matches_chained_xxhash(columns, slot, seed) -> None:
    if not columns:
        return
    cols = [np.array(c, dtype=np.int64) for c in zip(*columns, strict=True)]
    expected = []
    for row in columns:
        h = slot_seed_ref(seed, slot)
        for value in row:
            h = xxhash.xxh3_64_intdigest(value.to_bytes(8, "little", signed=True), h)
        expected.append(bucket_ref(h, 2**40))
    np.testing.assert_array_equal(ops.hash_cross(cols, slot, 2**40, seed), expected)


def test_hash_cross_is_order_sensitive() -> None:
    a, b = np.arange(1000), np.arange(1000)[::-1].copy()
    assert (ops.hash_cross([a, b], 1, 2**40) != ops.hash_cross([b, a], 1, 2**40)).all()


@settings(max_examples=100, deadline=None)
@given(
    width=st.sampled_from([32, 64]),
    data=st.data(),
)
def test_bucketize_matches_searchsorted(width, data) -> None:
    values = data.draw(st.lists(st.floats(width=width), max_size=50))
    boundaries = data.draw(
        st.lists(st.floats(allow_nan=False, width=width), max_size=10, unique=True)
    )
    edges = np.sort(np.array(boundaries, dtype=np.float64))
    array = np.array(values, dtype=np.float32 if width == 32 else np.float64)
    expected = np.searchsorted(edges, array.astype(np.float64), side="right")
    expected[np.isnan(array)] = len(edges) + 1
    np.testing.assert_array_equal(ops.bucketize(array, edges), expected)


@settings(max_examples=50, deadline=None)
@given(
    per_key=st.lists(
        st.lists(st.lists(st.one_of(text, st.none()), max_size=4), min_size=3, max_size=3),
        min_size=1,
        max_size=5,
    ),
    data=st.data(),
)
def test_hash_jagged_equals_per_key_calls(per_key, data) -> None:
    slots = data.draw(st.lists(st.integers(0, 99), min_size=len(per_key), max_size=len(per_key)))
    buckets = data.draw(
        st.lists(st.integers(1, 2**40), min_size=len(per_key), max_size=len(per_key))
    )
    values = [v for key in per_key for sample in key for v in sample]
    lengths = [len(sample) for key in per_key for sample in key]
    got = ops.hash_jagged(values, lengths, slots, buckets, seed=5)
    expected = [
        ops.hash_strings([v for sample in key for v in sample], slot, n, seed=5)
        for key, slot, n in zip(per_key, slots, buckets, strict=True)
    ]
    np.testing.assert_array_equal(got, np.concatenate(expected))


def test_hash_jagged_integer_ids() -> None:
    values = np.arange(10, dtype=np.int64)
    lengths = np.array([[2, 1], [3, 4]])
    got = ops.hash_jagged(values, lengths, slots=[3, 8], num_buckets=1000)
    expected = np.concatenate(
        [ops.hash_ids(values[:3], 3, 1000), ops.hash_ids(values[3:], 8, 1000)]
    )
    np.testing.assert_array_equal(got, expected)
    arrow = ops.hash_jagged(pa.array(values), lengths.ravel(), [3, 8], [1000, 1000])
    np.testing.assert_array_equal(arrow, expected)


def test_threads_give_the_same_answer() -> None:
    values = [f"v{i}" for i in range(100_000)]
    ids = np.arange(100_000)
    single = ops.hash_strings(values, 1, 10**6), ops.hash_ids(ids, 1, 10**6)
    adrank.set_num_threads(2)
    try:
        assert adrank.get_num_threads() == 2
        np.testing.assert_array_equal(ops.hash_strings(values, 1, 10**6), single[0])
        np.testing.assert_array_equal(ops.hash_ids(ids, 1, 10**6), single[1])
    finally:
        adrank.set_num_threads(1)


def test_real_log_shaped_columns() -> None:
    # Criteo-style: 8-hex-digit ids with empty cells (missing) about 1 in 7.
    rng = np.random.default_rng(0)
    cells = [None if rng.random() < 1 / 7 else f"{rng.integers(2**32):08x}" for _ in range(5000)]
    np.testing.assert_array_equal(
        ops.hash_strings(pa.array(cells), 11, 2**20), hash_strings_ref(cells, 11, 2**20)
    )


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ops.hash_strings(["a", 3], 0, 10), TypeError, r"values\[1\] must be str, bytes"),
        (lambda: ops.hash_strings("abc", 0, 10), TypeError, "single string"),
        (lambda: ops.hash_strings(np.arange(3), 0, 10), TypeError, "values must hold strings"),
        (lambda: ops.hash_strings(np.array([["a"]]), 0, 10), ValueError, "values must be 1-D"),
        (lambda: ops.hash_strings({"a": 1}, 0, 10), TypeError, "values must be a list"),
        (lambda: ops.hash_strings(pa.array([1, 2]), 0, 10), TypeError, "string or binary"),
        (lambda: ops.hash_strings(["a"], -1, 10), ValueError, "slot must be >= 0"),
        (lambda: ops.hash_strings(["a"], 1.5, 10), TypeError, "slot must be an integer"),
        (lambda: ops.hash_strings(["a"], 0, 0), ValueError, "num_buckets must be >= 1"),
        (lambda: ops.hash_strings(["a"], 0, True), TypeError, "num_buckets must be an integer"),
        (lambda: ops.hash_strings(["a"], 0, 10, seed=-1), ValueError, "seed must be >= 0"),
        (lambda: ops.hash_strings(["a"], 0, 10, seed=2**64), ValueError, "seed must be <="),
        (lambda: ops.hash_strings(["\ud800"], 0, 10), ValueError, r"values\[0\] is not valid"),
        (lambda: ops.hash_ids(np.array([1.0]), 0, 10), TypeError, "ids must hold integers"),
        (lambda: ops.hash_ids(np.zeros((2, 2), int), 0, 10), ValueError, "ids must be 1-D"),
        (lambda: ops.hash_ids(pa.array(["a"]), 0, 10), TypeError, "Arrow integer array"),
        (lambda: ops.hash_ids([1], 0, 2**63), ValueError, "num_buckets must be <="),
        (lambda: ops.hash_cross([np.arange(3)], 0, 10), ValueError, "at least 2 columns"),
        (lambda: ops.hash_cross(np.zeros((2, 3), int), 0, 10), TypeError, "columns must be"),
        (lambda: ops.hash_cross([np.arange(3), np.arange(4)], 0, 10), ValueError, "equal length"),
        (lambda: ops.hash_cross([np.arange(3), np.ones(3)], 0, 10), TypeError, r"columns\[1\]"),
        (lambda: ops.bucketize(np.array(["a"]), [1.0]), TypeError, "values must be float"),
        (lambda: ops.bucketize(np.array([True]), [1.0]), TypeError, "values must be numbers"),
        (lambda: ops.bucketize(np.ones((2, 2)), [1.0]), ValueError, "values must be 1-D"),
        (lambda: ops.bucketize(np.ones(2), [2.0, 1.0]), ValueError, "strictly increasing"),
        (lambda: ops.bucketize(np.ones(2), [1.0, 1.0]), ValueError, "strictly increasing"),
        (lambda: ops.bucketize(np.ones(2), [np.nan]), ValueError, "must not contain NaN"),
        (lambda: ops.bucketize(np.ones(2), ["a"]), TypeError, "boundaries must be numbers"),
        (lambda: ops.bucketize(np.ones(2), [[1.0]]), ValueError, "boundaries must be 1-D"),
        (lambda: ops.hash_sklearn(["a", None], 10), ValueError, r"values\[1\] is missing"),
        (lambda: ops.hash_sklearn(["a"], 0), ValueError, "n_features must be >= 1"),
        (lambda: ops.hash_sklearn(["a"], 2**31), ValueError, "n_features must be <="),
        (lambda: ops.hash_sklearn(["a"], 8, alternate_sign=1), TypeError, "alternate_sign"),
        (lambda: ops.hash_jagged(["a"], [1], [], 10), ValueError, "at least one key"),
        (lambda: ops.hash_jagged(["a"], [1], [-1], 10), ValueError, "slots must be >= 0"),
        (lambda: ops.hash_jagged(["a"], [1], [0], [10, 10]), ValueError, "one entry per slot"),
        (lambda: ops.hash_jagged(["a"], [1], [0], [0]), ValueError, "num_buckets must be >= 1"),
        (lambda: ops.hash_jagged(["a"], [1], [0], 2**64), ValueError, "num_buckets must be <="),
        (lambda: ops.hash_jagged(["a"], [1], [0], 2**63), ValueError, "num_buckets must be <="),
        (lambda: ops.hash_jagged(["a"], [1], [0], [2**63]), ValueError, "num_buckets must be <="),
        (
            lambda: ops.hash_jagged(["a"], [1], [0], [2**64]),
            ValueError,
            r"num_buckets\[0\] must be <=",
        ),
        (
            lambda: ops.hash_jagged(["a"], [1], [0], np.array([2**63], np.uint64)),
            ValueError,
            "num_buckets must be <=",
        ),
        (
            lambda: ops.hash_jagged(["a"], [1], [0], [-(2**70)]),
            ValueError,
            r"num_buckets\[0\] must be >= 1",
        ),
        (
            lambda: ops.hash_jagged(["a"], [1], [0], ["x"]),
            TypeError,
            "num_buckets must hold integers",
        ),
        (lambda: ops.hash_jagged(["a"], [1], [2**64], 10), ValueError, r"slots\[0\] must be <="),
        (lambda: ops.hash_jagged(["a"], [1], [2**63], 10), ValueError, "slots must be <="),
        (lambda: ops.hash_jagged(["a"], [1, 0, 0], [0, 1], 10), ValueError, "multiple of"),
        (lambda: ops.hash_jagged(["a"], [2], [0], 10), ValueError, "lengths sum to 2"),
        (lambda: ops.hash_jagged(["a"], [-1, 2], [0], 10), ValueError, "lengths must be >= 0"),
        (lambda: ops.hash_jagged(["a"], [1.0], [0], 10), TypeError, "lengths must hold integer"),
        (lambda: adrank.set_num_threads(0), ValueError, "num_threads must be in"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()


def test_native_layer_rejects_what_the_wrappers_never_send() -> None:
    from adrank import _native

    column = _native.StringColumn.from_objects(["a", "b"])
    out = np.empty(2, dtype=np.int64)
    one = np.array([1], dtype=np.int64)
    with pytest.raises(TypeError, match="out must have dtype int64"):
        _native.hash_strings(column, np.array([0, 2]), one, one, 0, out.astype(np.int32))
    with pytest.raises(ValueError, match="out must hold 2 items"):
        _native.hash_strings(column, np.array([0, 2]), one, one, 0, np.empty(3, np.int64))
    readonly = np.empty(2, np.int64)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writable"):
        _native.hash_strings(column, np.array([0, 2]), one, one, 0, readonly)
    with pytest.raises(ValueError, match="key offsets end at 1"):
        _native.hash_strings(column, np.array([0, 1]), one, one, 0, out)
    with pytest.raises(ValueError, match="key_offsets must have len"):
        _native.hash_strings(column, np.array([0, 1, 2]), one, one, 0, out)
    with pytest.raises(ValueError, match="C-contiguous"):
        _native.hash_ids(np.arange(4)[::2], None, 0, np.array([0, 2]), one, one, 0, out)
    past_end = _native.StringColumn.from_arrow(
        np.zeros(2, np.uint8), np.array([0, 5], np.int32), None, 0
    )
    with pytest.raises(ValueError, match="offsets run past the data buffer"):
        _native.hash_strings(past_end, np.array([0, 1]), one, one, 0, np.empty(1, np.int64))
    decreasing = _native.StringColumn.from_arrow(
        np.zeros(8, np.uint8), np.array([0, 5, 2], np.int32), None, 0
    )
    with pytest.raises(ValueError, match="offsets must not decrease"):
        _native.hash_strings(decreasing, np.array([0, 2]), one, one, 0, out)
    with pytest.raises(ValueError, match="validity holds 8 bits"):
        _native.StringColumn.from_arrow(
            np.zeros(8, np.uint8), np.zeros(10, np.int32), np.zeros(1, np.uint8), 0
        )
    with pytest.raises(ValueError, match="not a multiple of itemsize"):
        _native.StringColumn.from_fixed(np.zeros(7, np.uint8), 4, True)
