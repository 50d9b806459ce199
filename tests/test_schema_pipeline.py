"""The batch feature pipeline against direct calls of adrank's hashing kernels."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adrank import ops
from adrank.features import FeaturePipeline, SparseFeature, parse_schema

SCHEMA = parse_schema(
    """
name = "pipeline"
hash_seed = 7
[labels]
click = "click"
[tables.items]
num_buckets = 1000
dim = 4
[fields.user]
kind = "categorical"
side = "user"
num_buckets = 50
dim = 2
[fields.history]
kind = "multi_valued"
side = "user"
table = "items"
pooling = "sum"
[fields.item]
kind = "categorical"
side = "creative"
table = "items"
[fields.duration]
kind = "numeric_bucketized"
side = "creative"
boundaries = [5.0, 15.0]
dim = 2
[fields.user_x_duration]
kind = "cross"
sources = ["user", "duration"]
num_buckets = 97
dim = 2
[fields.history_x_item]
kind = "cross"
sources = ["history", "item"]
num_buckets = 89
dim = 2
[fields.minutes]
kind = "numeric_dense"
side = "user"
transform = "log1p"
fill = -1.0
[fields.count]
kind = "numeric_dense"
side = "context"
transform = "signed_log1p"
"""
)


def _columns():
    return {
        "user": pa.array(["ann", None, "bob", "ann"]),
        "history": pa.array([[10, 11], [], None, [12]], type=pa.list_(pa.int64())),
        "item": np.array([10, 12, 13, 11], dtype=np.int64),
        "duration": pa.array([3.0, None, 20.0, 15.0]),
        "minutes": pa.array([0.0, 10.0, None, -3.0]),
        "count": np.array([-5, 0, 3, 1000], dtype=np.int64),
        "click": np.array([1, 0, 0, 1], dtype=np.int8),
    }


def test_ids_match_the_kernels_called_directly():
    batch = FeaturePipeline(SCHEMA)(_columns())
    items, user_table = SCHEMA.tables["items"], SCHEMA.tables["user"]
    assert list(batch.sparse) == [
        "user",
        "history",
        "item",
        "duration",
        "user_x_duration",
        "history_x_item",
    ]
    user = ops.hash_strings(["ann", None, "bob", "ann"], user_table.slot, 50, 7)
    np.testing.assert_array_equal(batch.sparse["user"].values, user)
    np.testing.assert_array_equal(batch.sparse["user"].offsets, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(
        batch.sparse["history"].values, ops.hash_ids([10, 11, 12], items.slot, 1000, 7)
    )
    np.testing.assert_array_equal(batch.sparse["history"].offsets, [0, 2, 2, 2, 3])
    # The same id is the same row whether it comes from the sequence or from the item field.
    assert batch.sparse["item"].values[0] == batch.sparse["history"].values[0]
    np.testing.assert_array_equal(batch.sparse["duration"].values, [0, 3, 2, 2])
    cross_slot = SCHEMA.tables["user_x_duration"].slot
    np.testing.assert_array_equal(
        batch.sparse["user_x_duration"].values,
        ops.hash_cross([user, [0, 3, 2, 2]], cross_slot, 97, 7),
    )
    # A sequence crossed with the candidate: each value of the bag with its row's item.
    bag = batch.sparse["history_x_item"]
    np.testing.assert_array_equal(bag.offsets, [0, 2, 2, 2, 3])
    history, item = batch.sparse["history"].values, batch.sparse["item"].values
    cross_slot = SCHEMA.tables["history_x_item"].slot
    np.testing.assert_array_equal(
        bag.values, ops.hash_cross([history, item[[0, 0, 3]]], cross_slot, 89, 7)
    )
    expected_dense = np.stack(
        [
            [0.0, np.log1p(10.0), -1.0, 0.0],
            np.sign([-5, 0, 3, 1000]) * np.log1p(np.abs([-5, 0, 3, 1000])),
        ],
        axis=1,
    )
    np.testing.assert_allclose(batch.dense, expected_dense, rtol=1e-6)
    assert batch.dense.dtype == np.float32
    np.testing.assert_array_equal(batch.labels["click"], [1, 0, 0, 1])


def test_numpy_jagged_pairs_and_strings_are_accepted():
    columns = _columns()
    columns["history"] = (np.array([10, 11, 12]), np.array([0, 2, 2, 2, 3]))
    columns["user"] = np.array(["ann", "x", "bob", "ann"], dtype=object)
    batch = FeaturePipeline(SCHEMA)(columns, with_labels=False)
    assert batch.labels == {}
    np.testing.assert_array_equal(batch.sparse["history"].offsets, [0, 2, 2, 2, 3])


def _take_ref(feature: SparseFeature, rows) -> tuple[list, list]:
    bags = [feature.values[feature.offsets[r] : feature.offsets[r + 1]].tolist() for r in rows]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in bags])]).tolist()
    return [v for b in bags for v in b], offsets


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=8), st.data())
def test_take_matches_a_reference(lengths, data):
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    feature = SparseFeature(np.arange(offsets[-1], dtype=np.int64) * 3, offsets)
    rows = data.draw(st.lists(st.integers(0, max(len(lengths) - 1, 0)), max_size=10))
    if not lengths:
        rows = []
    taken = feature.take(np.asarray(rows, dtype=np.int64))
    values, new_offsets = _take_ref(feature, rows)
    assert taken.values.tolist() == values
    assert taken.offsets.tolist() == new_offsets


def test_batch_take_keeps_rows_together():
    batch = FeaturePipeline(SCHEMA)(_columns())
    part = batch.take([3, 0])
    assert len(part) == 2
    np.testing.assert_array_equal(part.dense, batch.dense[[3, 0]])
    np.testing.assert_array_equal(part.sparse["history"].offsets, [0, 1, 3])
    np.testing.assert_array_equal(part.labels["click"], [1, 1])
    assert len(batch.take(slice(1, 3))) == 2


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda c: c.pop("item"), KeyError, "column 'item' \\(field 'item'\\) is missing"),
        (lambda c: c.pop("click"), KeyError, "label column 'click'"),
        (
            lambda c: c.update(item=np.array([1.0, 2.5, 3, 4])),
            TypeError,
            "column 'item' \\(field 'item'\\): expected integer ids, found 2.5 at row 1 of a float "
            "column: ids must be whole numbers",
        ),
        (
            lambda c: c.update(item=pa.array([1.0, 2, 3, 1e30])),
            TypeError,
            "column 'item' \\(field 'item'\\): expected integer ids, found 1e\\+30 at row 3",
        ),
        (lambda c: c.update(item=np.array([1, 2, 3])), ValueError, "equal lengths"),
        (lambda c: c.update(history=[[1], [], [], []]), TypeError, "pyarrow list array"),
        (lambda c: c.update(history=pa.array([1, 2, 3, 4])), TypeError, "must be a list array"),
        (
            lambda c: c.update(history=(np.array([1, 2]), np.array([1, 1, 2, 2, 2]))),
            ValueError,
            "must start at 0",
        ),
        (
            lambda c: c.update(history=(np.array([1, 2]), np.array([0, 1, 2, 2, 3]))),
            ValueError,
            "has 2 values, expected 3",
        ),
        (lambda c: c.update(click=pa.array([1, None, 0, 1])), ValueError, "missing values"),
        (lambda c: c.update(minutes=np.array(["a", "b", "c", "d"])), TypeError, "numbers"),
    ],
)
def test_errors(change, error, match):
    columns = _columns()
    change(columns)
    with pytest.raises(error, match=match):
        FeaturePipeline(SCHEMA)(columns)


def test_columns_must_be_a_table_or_mapping():
    with pytest.raises(TypeError, match=r"pyarrow\.Table or a mapping"):
        FeaturePipeline(SCHEMA)([1, 2, 3])
    with pytest.raises(ValueError, match="at least one column"):
        FeaturePipeline(SCHEMA)({})


def test_pyarrow_table_input():
    columns = _columns()
    table = pa.table({k: v for k, v in columns.items()})
    batch = FeaturePipeline(SCHEMA)(table)
    np.testing.assert_array_equal(
        batch.sparse["item"].values, FeaturePipeline(SCHEMA)(columns).sparse["item"].values
    )


def test_whole_floats_with_nan_are_ids_with_missing_values():
    """pandas stores int ids with a missing value as floats: they hash as the ids they are."""
    ids = _columns()
    floats = _columns()
    ids["item"] = pa.array([1, None, 3, 4], type=pa.int64())
    floats["item"] = np.array([1.0, np.nan, 3.0, 4.0])
    expected = FeaturePipeline(SCHEMA)(ids).sparse["item"].values
    np.testing.assert_array_equal(FeaturePipeline(SCHEMA)(floats).sparse["item"].values, expected)


def test_python_lists_of_ints_hash_as_ids_and_value_type_decides():
    """Request values arrive as Python lists: ints stay ids unless the field says text."""
    ids = parse_schema(
        '[labels]\nclick = "c"\n[fields.a]\nkind = "categorical"\nside = "user"\n'
        "num_buckets = 100\ndim = 2\n"
    )
    slot = ids.tables["a"].slot
    batch = FeaturePipeline(ids)({"a": [170301, 5]}, with_labels=False)
    np.testing.assert_array_equal(batch.sparse["a"].values, ops.hash_ids([170301, 5], slot, 100))
    text = parse_schema(ids.text.replace('side = "user"', 'side = "user"\nvalue_type = "string"'))
    batch = FeaturePipeline(text)({"a": [170301, 5]}, with_labels=False)
    np.testing.assert_array_equal(
        batch.sparse["a"].values, ops.hash_strings(["170301", "5"], slot, 100)
    )
    as_int = parse_schema(ids.text.replace('side = "user"', 'side = "user"\nvalue_type = "int"'))
    batch = FeaturePipeline(as_int)({"a": ["170301", None]}, with_labels=False)
    np.testing.assert_array_equal(batch.sparse["a"].values, ops.hash_ids([170301, None], slot, 100))
