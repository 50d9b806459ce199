"""adrank.ops.embedding_bag_collection against per-key embedding_bag calls."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adrank
from adrank import EmbeddingTable, _native, ops, quantize_rowwise


@pytest.fixture(autouse=True)
def _restore_defaults():
    yield
    adrank.set_simd("auto")
    adrank.set_num_threads(1)


def make_table(kind: str, num_rows: int, dim: int, seed: int) -> EmbeddingTable:
    rows = np.random.default_rng(seed).standard_normal((num_rows, dim)).astype(np.float32)
    if kind == "int8_rowwise":
        return quantize_rowwise(rows)
    return EmbeddingTable(rows, kind)


def per_key_ref(keys, values, lengths, tables, modes, weights, padding):
    """The collection computed one embedding_bag call per key, concatenated along columns."""
    batch_size = len(lengths) // len(keys)
    key_lengths = lengths.reshape(len(keys), batch_size)
    starts = np.concatenate([[0], np.cumsum(key_lengths.sum(axis=1))])
    pooled = []
    for f, key in enumerate(keys):
        ids = values[starts[f] : starts[f + 1]]
        offsets = np.concatenate([[0], np.cumsum(key_lengths[f])])[:-1].astype(np.int64)
        pooled.append(
            ops.embedding_bag(
                tables[key],
                ids,
                offsets,
                modes.get(key, "sum"),
                per_sample_weights=None if weights is None else weights[starts[f] : starts[f + 1]],
                padding_idx=padding.get(key),
            )
        )
    return np.concatenate(pooled, axis=1)


@st.composite
def collections(draw):
    num_keys = draw(st.integers(1, 5))
    batch_size = draw(st.integers(0, 6))
    same_dim = draw(st.booleans())
    shared = [
        (draw(st.sampled_from(["float32", "float16", "int8_rowwise"])), draw(st.integers(1, 30)))
        for _ in range(draw(st.integers(1, 3)))
    ]
    dims = (
        [8] * len(shared) if same_dim else [draw(st.sampled_from([3, 8, 16, 33])) for _ in shared]
    )
    table_of_key = [draw(st.integers(0, len(shared) - 1)) for _ in range(num_keys)]
    lengths = draw(
        st.lists(st.integers(0, 12), min_size=num_keys * batch_size, max_size=num_keys * batch_size)
    )
    weighted = draw(st.booleans())
    modes = (
        {}
        if weighted
        else {f"k{f}": draw(st.sampled_from(["sum", "mean", "max"])) for f in range(num_keys)}
    )
    return {
        "shared": shared,
        "dims": dims,
        "table_of_key": table_of_key,
        "lengths": np.asarray(lengths, dtype=np.int64),
        "weighted": weighted,
        "modes": modes,
        "pad": draw(st.booleans()),
        "index_dtype": draw(st.sampled_from([np.int32, np.int64])),
        "threads": draw(st.sampled_from([1, 2])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@settings(max_examples=40, deadline=None)
@given(case=collections())
def test_collection_equals_per_key_calls(case):
    adrank.set_num_threads(case["threads"])
    rng = np.random.default_rng(case["seed"])
    shared = [
        make_table(kind, rows, dim, case["seed"] + i)
        for i, ((kind, rows), dim) in enumerate(zip(case["shared"], case["dims"], strict=True))
    ]
    keys = [f"k{f}" for f in range(len(case["table_of_key"]))]
    tables = {key: shared[t] for key, t in zip(keys, case["table_of_key"], strict=True)}
    lengths = case["lengths"]
    batch_size = len(lengths) // len(keys)
    key_totals = lengths.reshape(len(keys), batch_size).sum(axis=1)
    values = np.concatenate(
        [
            rng.integers(0, tables[key].num_rows, total)
            for key, total in zip(keys, key_totals, strict=True)
        ]
        + [np.zeros(0, np.int64)]
    ).astype(case["index_dtype"])
    weights = rng.random(len(values)).astype(np.float32) if case["weighted"] else None
    padding = {key: 0 for key in keys} if case["pad"] else {}
    got = ops.embedding_bag_collection(
        keys,
        values,
        lengths,
        tables,
        case["modes"],
        per_sample_weights=weights,
        padding_idx=padding or None,
    )
    expected = per_key_ref(keys, values, lengths, tables, case["modes"], weights, padding)
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    prepared = ops.EmbeddingBagCollection(keys, tables, case["modes"], padding or None)
    again = prepared(values, lengths, per_sample_weights=weights)
    np.testing.assert_array_equal(again, got)
    assert prepared.dims == tuple(tables[key].dim for key in keys)
    assert prepared.output_width == sum(prepared.dims)
    if len({tables[key].dim for key in keys}) == 1:
        assert got.shape == (batch_size, len(keys), tables[keys[0]].dim)
    else:
        assert got.shape == (batch_size, sum(tables[key].dim for key in keys))


def test_serving_shape_with_caller_owned_output_and_threads():
    rng = np.random.default_rng(9)
    table = make_table("float32", 10000, 16, 1)
    keys = [f"field{f}" for f in range(26)]
    lengths = rng.integers(1, 4, (26, 1000))
    values = rng.integers(0, 10000, lengths.sum())
    buffer = np.full(1000 * 26 * 16 + 8, -7.0, np.float32)
    out = buffer[:-8].reshape(1000, 26, 16)
    adrank.set_num_threads(2)
    result = ops.embedding_bag_collection(
        keys, values, lengths, dict.fromkeys(keys, table), out=out
    )
    assert result is out
    np.testing.assert_array_equal(buffer[-8:], -7.0)
    expected = per_key_ref(
        keys, values, lengths.reshape(-1), dict.fromkeys(keys, table), {}, None, {}
    )
    np.testing.assert_array_equal(out.reshape(1000, -1), expected)


def test_a_prepared_collection_serves_batches_of_any_size():
    tables = {"ad": make_table("float32", 50, 8, 1), "user": make_table("int8_rowwise", 30, 4, 2)}
    prepared = ops.EmbeddingBagCollection(["ad", "user"], tables, {"user": "mean"}, {"ad": -1})
    assert (prepared.keys, prepared.dims, prepared.output_width) == (("ad", "user"), (8, 4), 12)
    assert repr(prepared) == "EmbeddingBagCollection(keys=['ad', 'user'], dims=[8, 4])"
    rng = np.random.default_rng(4)
    for batch_size in (0, 1, 7, 3):
        lengths = rng.integers(0, 4, (2, batch_size))
        values = np.concatenate(
            [rng.integers(0, 50, lengths[0].sum()), rng.integers(0, 30, lengths[1].sum())]
        )
        expected = ops.embedding_bag_collection(
            ["ad", "user"], values, lengths, tables, {"user": "mean"}, padding_idx={"ad": -1}
        )
        assert expected.shape == (batch_size, 12)
        np.testing.assert_array_equal(prepared(values, lengths), expected)
        strided = np.repeat(lengths.reshape(-1), 2)[::2]  # int64, 1-D, not contiguous
        np.testing.assert_array_equal(prepared(values, strided), expected)
        out = np.empty((batch_size, 12), np.float32)
        assert prepared(values, lengths.reshape(-1), out=out) is out
        np.testing.assert_array_equal(out, expected)


def test_a_prepared_collection_takes_numpy_inputs_of_any_integer_layout():
    """numpy inputs try the kernel first; what it refuses is converted, or refused by name."""
    table = make_table("float16", 20, 4, 3)
    prepared = ops.EmbeddingBagCollection(["a", "b"], {"a": table, "b": table})
    values = np.array([1, 2, 3, 19, 5], np.int64)
    lengths = np.array([[1, 2], [0, 2]], np.int64)
    expected = per_key_ref(
        ["a", "b"], values, lengths.reshape(-1), {"a": table, "b": table}, {}, None, {}
    )
    for ids in (
        values,
        values.astype(np.int32),
        values.astype(np.uint16),
        np.repeat(values, 2)[::2],
    ):
        for counts in (lengths, lengths.astype(np.int32), np.repeat(lengths.reshape(-1), 2)[::2]):
            np.testing.assert_array_equal(prepared(ids, counts).reshape(2, -1), expected)
    with pytest.raises(TypeError, match="values must hold integers"):
        prepared(values.astype(np.float32), lengths)
    with pytest.raises(IndexError, match=r"values\[3\] = 20 is out of range \[0, 20\) \(field 1\)"):
        prepared(values + 1, lengths)
    with pytest.raises(ValueError, match="lengths sum to 3 but values has 5"):
        prepared(values, lengths - np.eye(2, dtype=np.int64))


def test_native_collection_keeps_its_tables_and_checks_its_lists():
    sum_mode = _native.PoolingMode.sum
    table = EmbeddingTable(np.arange(12, dtype=np.float32).reshape(3, 4))
    native = _native.Collection([table._native], [sum_mode], [-1])
    assert native.width == 4
    del table  # the collection owns what it reads
    out = np.empty((1, 4), np.float32)
    native(np.array([2]), np.array([1]), None, out)
    np.testing.assert_array_equal(out, [[8, 9, 10, 11]])
    with pytest.raises(ValueError, match="at least one field"):
        _native.Collection([], [], [])
    with pytest.raises(ValueError, match="one entry per table"):
        _native.Collection([TABLE._native], [sum_mode, sum_mode], [-1])
    with pytest.raises(TypeError, match=r"tables\[0\] must be a Table, got str"):
        _native.Collection(["table"], [sum_mode], [-1])
    with pytest.raises(TypeError, match="incompatible constructor arguments"):
        _native.Collection([TABLE._native], [0], [-1])  # a code, not a PoolingMode


TABLE = EmbeddingTable(np.zeros((10, 4), np.float32))


def prepared_then_called(keys, values, lengths, tables, modes="sum", **kwargs):
    """embedding_bag_collection's arguments, through a prepared EmbeddingBagCollection."""
    collection = ops.EmbeddingBagCollection(keys, tables, modes, kwargs.pop("padding_idx", None))
    return collection(values, lengths, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"keys": "a"}, TypeError, "keys must be a sequence of str"),
        ({"keys": []}, ValueError, "keys must name at least one field"),
        ({"tables": [TABLE]}, TypeError, "tables must be a mapping"),
        ({"keys": ["a", "c"]}, ValueError, "tables has no table for key 'c'"),
        ({"modes": "avg"}, ValueError, "modes must be 'sum', 'mean' or 'max'"),
        ({"modes": {"b": "avg"}}, ValueError, r"modes\['b'\] must be"),
        ({"modes": 3}, TypeError, "modes must be a str or a mapping"),
        ({"padding_idx": 3}, TypeError, "padding_idx must be a mapping"),
        ({"padding_idx": {"a": 10}}, ValueError, r"padding_idx\['a'\] must be in \[-10, 10\)"),
        ({"lengths": [1, 1, 1]}, ValueError, "lengths must hold a multiple of 2 entries"),
        ({"lengths": [3, -1, 1, 1]}, ValueError, r"lengths\[1\] = -1"),
        ({"lengths": [1, 1, 1, 0]}, ValueError, "lengths sum to 3 but values has 4"),
        ({"lengths": [1, 1, 1, 9]}, ValueError, "lengths sum to more than len"),
        ({"values": [0.5] * 4}, TypeError, "values must hold integers"),
        (
            {"values": [1, 2, 3, 10]},
            IndexError,
            r"values\[3\] = 10 is out of range \[0, 10\) \(field 1\)",
        ),
        (
            {"modes": {"b": "max"}, "per_sample_weights": np.ones(4, np.float32)},
            ValueError,
            r"only supported with mode='sum' \(field 1\)",
        ),
        ({"per_sample_weights": np.ones(3, np.float32)}, ValueError, "one weight per id"),
        ({"out": np.zeros((2, 3, 4), np.float32)}, ValueError, "out must hold 16 items, got 24"),
        ({"out": np.zeros((2, 8), np.float64)}, TypeError, "out must have dtype float32"),
    ],
)
@pytest.mark.parametrize("pool", [ops.embedding_bag_collection, prepared_then_called])
def test_errors(kwargs, error, match, pool):
    arguments = {
        "keys": ["a", "b"],
        "values": [1, 2, 3, 4],
        "lengths": [1, 1, 1, 1],
        "tables": {"a": TABLE, "b": TABLE},
        **kwargs,
    }
    with pytest.raises(error, match=match):
        pool(**arguments)


def test_native_collection_checks_its_lists():
    sum_mode = _native.PoolingMode.sum
    native = TABLE._native
    values = np.zeros(2, np.int64)
    lengths = np.ones(2, np.int64)
    out = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="at least one field"):
        _native.embedding_bag_collection([], [], [], values, lengths, None, out)
    with pytest.raises(ValueError, match="one entry per table"):
        _native.embedding_bag_collection(
            [native], [sum_mode, sum_mode], [-1], values, lengths, None, out
        )
    with pytest.raises(TypeError, match=r"tables\[0\] must be a Table"):
        _native.embedding_bag_collection([None], [sum_mode], [-1], values, lengths, None, out)
    with pytest.raises(TypeError, match="lengths must have dtype int64"):
        _native.embedding_bag_collection(
            [native], [sum_mode], [-1], values, lengths.astype(np.int32), None, out
        )


def test_collection_outputs_without_out_are_never_shared_with_a_kept_result():
    rng = np.random.default_rng(12)
    keys = ["a", "b"]
    tables = {key: make_table("float32", 500, 32, seed) for seed, key in enumerate(keys)}
    collection = ops.EmbeddingBagCollection(keys, tables)
    lengths = rng.integers(1, 4, (2, 2048))  # 2048 x 2 x 32 floats: 512 KiB, a pooled size
    values = rng.integers(0, 500, lengths.sum())
    kept = collection(values, lengths)
    expected = kept.copy()
    other = collection(rng.integers(0, 500, lengths.sum()), lengths)
    assert not np.shares_memory(kept, other)
    np.testing.assert_array_equal(kept, expected)
    address = other.ctypes.data
    del other
    assert collection(values, lengths).ctypes.data == address  # dropped, so reused
