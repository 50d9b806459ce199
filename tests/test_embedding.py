"""adrank.ops.embedding_bag against torch.nn.functional.embedding_bag and a plain reference."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import adrank
from adrank import EmbeddingTable, _native, ops, quantize_rowwise
from reference import embedding_bag_ref

ISAS = ["avx512", "avx2", "generic"]  # "avx512" needs BW + VL too, else it runs the AVX2 twin
SUM = _native.PoolingMode.sum
DIMS = [1, 3, 8, 16, 17, 40, 64, 72, 130]


def use_isa(isa: str) -> None:
    try:
        adrank.set_simd(isa)
    except ValueError:
        pytest.skip(f"this CPU cannot run the {isa} kernels")


@pytest.fixture(autouse=True)
def _restore_defaults():
    yield
    adrank.set_simd("auto")
    adrank.set_num_threads(1)


@st.composite
def bag_cases(draw):
    num_rows = draw(st.integers(1, 40))
    lengths = draw(st.lists(st.integers(0, 100), min_size=0, max_size=8))
    num_ids = sum(lengths)
    return {
        "num_rows": num_rows,
        "dim": draw(st.sampled_from(DIMS)),
        "indices": draw(st.lists(st.integers(0, num_rows - 1), min_size=num_ids, max_size=num_ids)),
        "offsets": np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
        if lengths
        else np.zeros(0, int),
        "mode": draw(st.sampled_from(["sum", "mean", "max"])),
        "weighted": draw(st.booleans()),
        "padding": draw(st.one_of(st.none(), st.integers(-num_rows, num_rows - 1))),
        "index_dtype": draw(st.sampled_from([np.int32, np.int64])),
        "table_dtype": draw(st.sampled_from([np.float32, np.float16])),
        "include_last_offset": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=40, deadline=None)
@given(case=bag_cases())
def test_matches_torch(isa, case):
    use_isa(isa)
    rng = np.random.default_rng(case["seed"])
    rows = rng.standard_normal((case["num_rows"], case["dim"])).astype(case["table_dtype"])
    indices = np.asarray(case["indices"], dtype=case["index_dtype"])
    offsets = np.asarray(case["offsets"], dtype=case["index_dtype"])
    if case["include_last_offset"]:
        offsets = np.append(offsets, len(indices)).astype(case["index_dtype"])
    mode = case["mode"]
    weights = None
    if case["weighted"] and mode == "sum":
        weights = rng.standard_normal(len(indices)).astype(case["table_dtype"])
    got = ops.embedding_bag(
        EmbeddingTable(rows),
        indices,
        offsets,
        mode,
        per_sample_weights=weights,
        include_last_offset=case["include_last_offset"],
        padding_idx=case["padding"],
    )
    # torch on the same values in fp32, so only the summation order differs.
    expected = F.embedding_bag(
        torch.from_numpy(indices),
        torch.from_numpy(rows.astype(np.float32)),
        torch.from_numpy(offsets),
        mode=mode,
        per_sample_weights=None
        if weights is None
        else torch.from_numpy(weights.astype(np.float32)),
        include_last_offset=case["include_last_offset"],
        padding_idx=case["padding"],
    ).numpy()
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    bag_offsets = offsets[:-1] if case["include_last_offset"] else offsets
    padding = None if case["padding"] is None else case["padding"] % case["num_rows"]
    reference = embedding_bag_ref(rows, indices, bag_offsets, mode, weights, padding)
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_float16_table_matches_torch_float16(mode):
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((100, 24)).astype(np.float16)
    indices = rng.integers(0, 100, 300)
    offsets = np.arange(0, 300, 7)
    got = ops.embedding_bag(EmbeddingTable(rows), indices, offsets, mode)
    expected = F.embedding_bag(
        torch.from_numpy(indices), torch.from_numpy(rows), torch.from_numpy(offsets), mode=mode
    ).numpy()
    assert expected.dtype == np.float16
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=2e-3, atol=2e-2)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("dim", [1, 8, 20, 64, 136])
def test_int8_rowwise_matches_dequantized_reference(isa, mode, dim):
    use_isa(isa)
    rng = np.random.default_rng(dim)
    table = quantize_rowwise(rng.standard_normal((60, dim)).astype(np.float32))
    indices = rng.integers(0, 60, 400)
    offsets = np.sort(rng.integers(0, 401, 30))
    offsets[0] = 0
    weights = rng.random(400).astype(np.float32) if mode == "sum" else None
    got = ops.embedding_bag(table, indices, offsets, mode, per_sample_weights=weights)
    reference = embedding_bag_ref(table.to_float32(), indices, offsets, mode, weights)
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-4)


def test_int8_rowwise_matches_torch_quantized_op():
    # torch's op pools by sum whatever mode it is given, so only sum is compared.
    rng = np.random.default_rng(7)
    packed = torch.ops.quantized.embedding_bag_byte_prepack(torch.randn(80, 32))
    indices = torch.from_numpy(rng.integers(0, 80, 500))
    offsets = torch.arange(0, 500, 9)
    expected = torch.ops.quantized.embedding_bag_byte_rowwise_offsets(
        packed, indices, offsets, mode=0
    ).numpy()
    table = EmbeddingTable.from_rowwise(packed.numpy())
    got = ops.embedding_bag(table, indices.numpy(), offsets.numpy(), "sum")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_corner_cases():
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    # No bags, an empty bag, all-padding bags in every mode.
    assert ops.embedding_bag(rows, np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0, 3)
    assert ops.embedding_bag(rows, [], [0], include_last_offset=True).shape == (0, 3)
    for mode in ["sum", "mean", "max"]:
        got = ops.embedding_bag(rows, [2, 2, 1], [0, 0, 2], mode, padding_idx=2)
        np.testing.assert_array_equal(got, [[0, 0, 0], [0, 0, 0], [3, 4, 5]])
    # Negative padding_idx counts from the end, as in torch.
    got = ops.embedding_bag(rows, [3, 0], [0], "mean", padding_idx=-1)
    np.testing.assert_array_equal(got, [[0, 1, 2]])
    # 2-D indices without offsets: fixed-length bags.
    got = ops.embedding_bag(rows, np.array([[0, 1], [2, 3]]), None, "max")
    np.testing.assert_array_equal(got, [[3, 4, 5], [9, 10, 11]])
    # Max keeps negative values and -inf.
    negative = np.array([[-5.0, -np.inf], [-7.0, -np.inf]], np.float32)
    np.testing.assert_array_equal(ops.embedding_bag(negative, [0, 1], [0], "max"), [[-5, -np.inf]])
    # Other integer dtypes and mixed int32/int64 ids and offsets are converted on purpose.
    mixed = ops.embedding_bag(rows, np.array([1, 2], np.uint8), np.array([0], np.int32))
    np.testing.assert_array_equal(mixed, [[9, 11, 13]])
    # Torch tensors are read through numpy.
    np.testing.assert_array_equal(
        ops.embedding_bag(torch.from_numpy(rows), torch.tensor([1, 2]), torch.tensor([0])), mixed
    )


@pytest.mark.parametrize("dim", [3, 64])
def test_caller_owned_output_and_guards(dim):
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((50, dim)).astype(np.float32)
    indices = rng.integers(0, 50, 200)
    offsets = np.arange(0, 200, 10)
    buffer = np.full(20 * dim + 16, 12345.0, dtype=np.float32)
    out = buffer[: 20 * dim].reshape(20, dim)
    result = ops.embedding_bag(rows, indices, offsets, "max", out=out)
    assert result is out
    np.testing.assert_array_equal(buffer[20 * dim :], 12345.0)
    np.testing.assert_allclose(out, embedding_bag_ref(rows, indices, offsets, "max"), rtol=1e-6)


def test_threads_give_identical_results():
    rng = np.random.default_rng(4)
    table = EmbeddingTable(rng.standard_normal((5000, 64)).astype(np.float32))
    lengths = rng.integers(0, 50, 4096)
    indices = rng.integers(0, 5000, lengths.sum())
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for mode in ["sum", "mean", "max"]:
        adrank.set_num_threads(1)
        single = ops.embedding_bag(table, indices, offsets, mode)
        adrank.set_num_threads(2)
        np.testing.assert_array_equal(ops.embedding_bag(table, indices, offsets, mode), single)


def test_one_table_shared_by_python_threads():
    rng = np.random.default_rng(5)
    table = quantize_rowwise(rng.standard_normal((1000, 32)).astype(np.float32))
    indices = rng.integers(0, 1000, 20000)
    offsets = np.arange(0, 20000, 20)
    expected = ops.embedding_bag(table, indices, offsets)
    results = [None] * 4

    def work(i):
        results[i] = ops.embedding_bag(table, indices, offsets)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_array_equal(result, expected)


# --- errors -----------------------------------------------------------------------------------

ROWS = np.zeros((10, 4), np.float32)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "median"}, ValueError, "mode must be 'sum', 'mean' or 'max'"),
        ({"indices": [0.5]}, TypeError, "indices must hold integers"),
        ({"indices": [[0, 1]]}, ValueError, "indices must be 1-D"),
        ({"offsets": [[0]]}, ValueError, "offsets must be 1-D"),
        ({"offsets": [1]}, ValueError, r"offsets\[0\] must be 0, got 1"),
        ({"offsets": [0, 3, 2]}, ValueError, r"offsets must not decrease: offsets\[2\] = 2"),
        ({"offsets": [0, 5]}, ValueError, r"offsets\[1\] = 5 exceeds len\(indices\) = 4"),
        ({"offsets": []}, ValueError, "offsets is empty but indices holds 4 ids"),
        (
            {"offsets": [0, 2], "include_last_offset": True},
            ValueError,
            "the last offset must equal len",
        ),
        (
            {"offsets": [], "include_last_offset": True},
            ValueError,
            "at least one entry with include_last_offset",
        ),
        ({"include_last_offset": 1}, TypeError, "include_last_offset must be a bool"),
        ({"indices": [0, 1, 2, 10]}, IndexError, r"indices\[3\] = 10 is out of range \[0, 10\)"),
        ({"indices": [0, -1, 2, 3]}, IndexError, r"indices\[1\] = -1 is out of range"),
        (
            {"indices": np.array([0, 1, 99, 3], np.int32), "offsets": np.array([0], np.int32)},
            IndexError,
            r"indices\[2\] = 99",
        ),
        (
            {"mode": "mean", "per_sample_weights": np.ones(4, np.float32)},
            ValueError,
            "per_sample_weights is only supported with mode='sum'",
        ),
        ({"per_sample_weights": np.ones(3)}, ValueError, r"one weight per id \(4\), got 3"),
        ({"per_sample_weights": np.ones(4, int)}, TypeError, "per_sample_weights must hold float"),
        ({"per_sample_weights": np.ones((4, 1))}, ValueError, "per_sample_weights must be 1-D"),
        ({"padding_idx": 10}, ValueError, r"padding_idx must be in \[-10, 10\), got 10"),
        ({"padding_idx": -11}, ValueError, "padding_idx must be in"),
        ({"padding_idx": 1.0}, TypeError, "padding_idx must be an integer"),
        ({"table": np.zeros((10, 4), np.int64)}, TypeError, "table must be an EmbeddingTable"),
        ({"table": np.zeros(10, np.float32)}, ValueError, "table must be 2-D"),
        ({"table": np.zeros((10, 0), np.float32)}, ValueError, "table dim must be >= 1"),
        ({"offsets": None}, ValueError, "offsets is required unless indices is 2-D"),
        ({"out": np.zeros((1, 4), np.float64)}, TypeError, "out must have dtype float32"),
        ({"out": np.zeros((2, 4), np.float32)}, ValueError, "out must have 1 rows, got 2"),
        ({"out": np.zeros((1, 5), np.float32)}, ValueError, "out must hold 4 items, got 5"),
        ({"out": np.zeros(4, np.float32)}, ValueError, "out must be at least 2-D"),
        ({"out": np.zeros((1, 8), np.float32)[:, ::2]}, ValueError, "out must be C-contiguous"),
    ],
)
def test_errors(kwargs, error, match):
    arguments = {"table": ROWS, "indices": [0, 1, 2, 3], "offsets": [0], **kwargs}
    with pytest.raises(error, match=match):
        ops.embedding_bag(**arguments)


def test_numpy_inputs_of_any_integer_layout_take_or_leave_the_fast_path():
    """numpy ids and offsets try the kernel first; what it refuses is converted or refused."""
    table = EmbeddingTable(np.arange(40, dtype=np.float32).reshape(10, 4))
    ids = np.array([1, 2, 3, 9])
    want = embedding_bag_ref(table.data, ids, [0, 1], "sum")
    for indices in (ids, ids.astype(np.int32), ids.astype(np.uint8), np.repeat(ids, 2)[::2]):
        for offsets in (np.array([0, 1]), np.array([0, 1], np.int32), np.array([0, 1, 4])):
            last = len(offsets) == 3
            got = ops.embedding_bag(table, indices, offsets, include_last_offset=last)
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="at least one entry with include_last_offset"):
        ops.embedding_bag(table, ids, np.array([], np.int64), include_last_offset=True)
    with pytest.raises(IndexError, match=r"indices\[3\] = 10 is out of range"):
        ops.embedding_bag(table, ids + 1, np.array([0]))
    with pytest.raises(ValueError, match="mode must be 'sum', 'mean' or 'max'"):
        ops.embedding_bag(table, ids, np.array([0]), mode="median")


def test_read_only_output_is_refused():
    out = np.zeros((1, 4), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writable"):
        ops.embedding_bag(ROWS, [0], [0], out=out)


def test_native_layer_checks_what_the_wrapper_converts():
    table = _native.Table(ROWS, _native.TableType.float32)
    ids = np.zeros(2, np.int64)
    out = np.zeros((1, 4), np.float32)
    with pytest.raises(TypeError, match="offsets must have the dtype of indices"):
        _native.embedding_bag(table, ids, np.zeros(1, np.int32), SUM, None, False, -1, out)
    with pytest.raises(TypeError, match="indices must have dtype int32 or int64"):
        _native.embedding_bag(table, ids.astype(np.uint64), ids[:1], SUM, None, False, -1, out)
    with pytest.raises(ValueError, match="mode must be sum, mean or max, got 7"):
        _native.embedding_bag(table, ids, ids[:1], _native.PoolingMode(7), None, False, -1, out)
    with pytest.raises(ValueError, match="padding_idx must be -1"):
        _native.embedding_bag(table, ids, ids[:1], SUM, None, False, 10, out)
    weights = np.ones(4, np.float32)[::2]
    with pytest.raises(ValueError, match="per_sample_weights must be C-contiguous"):
        _native.embedding_bag(table, ids, ids[:1], SUM, weights, False, -1, out)
    with pytest.raises(ValueError, match="table type must be 0"):
        _native.Table(ROWS, _native.TableType(5))
    with pytest.raises(TypeError, match="data must have dtype float16"):
        _native.Table(ROWS, _native.TableType.float16)
    with pytest.raises(ValueError, match="int8 rowwise data must have more than 8 columns"):
        _native.Table(np.zeros((3, 8), np.uint8), _native.TableType.int8_rowwise)
    with pytest.raises(ValueError, match="data must be C-contiguous"):
        _native.Table(np.zeros((4, 8), np.float32)[:, ::2], _native.TableType.float32)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        _native.embedding_bag(table, ids, ids[:1], 0, None, False, -1, out)  # a code, not a mode


def test_one_simd_switch_for_every_kernel_family():
    with pytest.raises(ValueError, match="simd must be 'auto', 'avx512', 'avx2' or 'generic'"):
        adrank.set_simd("sse9")
    adrank.set_simd("generic")
    assert adrank.get_simd() == "generic"
    adrank.set_simd("auto")
    assert adrank.get_simd() in ("avx512", "avx2", "generic")


def test_enums_name_the_strings_users_pass():
    assert list(_native.PoolingMode.__members__) == ["sum", "mean", "max"]
    assert list(_native.TableType.__members__) == ["float32", "float16", "int8_rowwise"]
    assert [int(m) for m in _native.PoolingMode.__members__.values()] == [0, 1, 2]
    assert EmbeddingTable(ROWS)._native.type == _native.TableType.float32
    assert quantize_rowwise(ROWS)._native.type == _native.TableType.int8_rowwise


def test_outputs_without_out_reuse_only_memory_no_one_holds():
    """A call without out= may hand back the pages of a result that was dropped (no fresh page
    faults per call), never those of a result, view or tensor someone still holds."""
    rng = np.random.default_rng(9)
    table = EmbeddingTable(rng.standard_normal((1000, 64)).astype(np.float32))
    lengths = rng.integers(1, 5, 2048)  # 2048 x 64 floats: 512 KiB, a pooled size
    indices = rng.integers(0, 1000, lengths.sum())
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    first = ops.embedding_bag(table, indices, offsets)
    address = first.ctypes.data
    del first
    second = ops.embedding_bag(table, indices, offsets, "max")
    assert second.ctypes.data == address  # the dropped result's memory, reused
    kept = second.copy()
    row = second[7]  # a view keeps the whole result held
    tensor = torch.from_numpy(second)
    del second
    third = ops.embedding_bag(table, indices, offsets, "mean")
    assert third.ctypes.data != address
    np.testing.assert_array_equal(row, kept[7])
    np.testing.assert_array_equal(tensor.numpy(), kept)
    np.testing.assert_allclose(
        third, embedding_bag_ref(table.data, indices, offsets, "mean"), rtol=1e-5, atol=1e-6
    )
