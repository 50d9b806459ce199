"""EmbeddingTable: storage, quantization, files."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch

from adrank import EmbeddingTable, dequantize_rowwise, ops, quantize_rowwise
from adrank.embedding_table import aligned_empty, huge_page_bytes


@pytest.mark.parametrize("shape", [(3, 5), (1000, 64), (20000, 64)])
def test_storage_is_aligned_and_read_only(shape):
    rows = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    table = EmbeddingTable(rows)
    assert table.data.ctypes.data % 64 == 0
    assert (table.num_rows, table.dim, table.dtype) == (*shape, "float32")
    np.testing.assert_array_equal(table.data, rows)
    with pytest.raises(ValueError, match="read-only"):
        table.data[0, 0] = 1.0


def test_large_storage_is_huge_page_aligned():
    array = aligned_empty((1024, 1024), np.float32)
    assert array.ctypes.data % (2 * 1024 * 1024) == 0
    assert array.shape == (1024, 1024)


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux only")
def test_large_storage_is_private_memory_that_can_get_huge_pages():
    """Shared anonymous memory never gets transparent huge pages where shmem_enabled is never
    (this machine kind); private memory advised for them does."""
    from adrank.embedding_table import _smaps_entry

    table = EmbeddingTable(np.ones((1 << 16, 64), np.float32))  # 16 MiB
    perms, huge = _smaps_entry(table.data.ctypes.data)
    assert perms[3] == "p"  # private, not shared
    assert huge == huge_page_bytes(table.data)
    assert huge % (2 * 1024 * 1024) == 0
    small = EmbeddingTable(np.ones((4, 4), np.float32))
    assert huge_page_bytes(small.data) is not None


def test_dtype_conversion_and_repr():
    rows = np.arange(6, dtype=np.float64).reshape(2, 3)
    table = EmbeddingTable(rows, dtype="float16")
    assert table.data.dtype == np.float16
    assert table.nbytes == 12
    assert repr(table) == "EmbeddingTable(dtype='float16', num_rows=2, dim=3)"
    np.testing.assert_array_equal(table.to_float32(), rows)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((np.zeros((2, 3), np.int64),), TypeError, "weights must hold floats"),
        ((np.zeros((2, 3)),), TypeError, "weights must be float32 or float16"),
        ((np.zeros(3, np.float32),), ValueError, r"weights must be 2-D \[R, D\]"),
        ((np.zeros((3, 0), np.float32),), ValueError, "at least one column"),
        ((np.zeros((2, 3), np.float32), "int8"), ValueError, "use quantize_rowwise"),
    ],
)
def test_constructor_errors(args, error, match):
    with pytest.raises(error, match=match):
        EmbeddingTable(*args)


def test_quantize_matches_torch_prepack():
    rows = torch.randn(200, 48)
    expected = torch.ops.quantized.embedding_bag_byte_prepack(rows).numpy()
    table = quantize_rowwise(rows.numpy())
    assert table.dtype == "int8_rowwise"
    assert (table.num_rows, table.dim) == (200, 48)
    assert table.data.shape == expected.shape
    np.testing.assert_allclose(
        table.data[:, 48:].copy().view(np.float32), expected[:, 48:].copy().view(np.float32)
    )
    assert np.abs(table.data[:, :48].astype(int) - expected[:, :48]).max() <= 1
    scale = table.data[:, 48:52].copy().view(np.float32)
    assert (np.abs(dequantize_rowwise(table) - rows.numpy()) <= scale / 2 + 1e-6).all()


def test_quantize_constant_rows_and_from_rowwise():
    rows = np.full((3, 10), 2.5, np.float32)
    table = quantize_rowwise(rows)
    np.testing.assert_allclose(table.to_float32(), rows)
    again = EmbeddingTable.from_rowwise(table.data)
    np.testing.assert_array_equal(again.data, table.data)
    np.testing.assert_array_equal(dequantize_rowwise(table.data), table.to_float32())


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: quantize_rowwise(np.zeros((2, 3), int)), TypeError, "weights must hold floats"),
        (lambda: EmbeddingTable.from_rowwise(np.zeros((2, 9))), TypeError, "dtype uint8"),
        (lambda: EmbeddingTable.from_rowwise(np.zeros((2, 8), np.uint8)), ValueError, "D >= 1"),
        (lambda: dequantize_rowwise(np.zeros((2, 8), np.uint8)), ValueError, r"\[R, D \+ 8\]"),
        (
            lambda: dequantize_rowwise(EmbeddingTable(np.zeros((2, 3), np.float32))),
            ValueError,
            "must be an int8_rowwise table",
        ),
    ],
)
def test_quantize_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def make_tables():
    rows = np.random.default_rng(2).standard_normal((300, 20)).astype(np.float32)
    return [EmbeddingTable(rows), EmbeddingTable(rows, "float16"), quantize_rowwise(rows)]


@pytest.mark.parametrize("mmap_mode", [True, False])
@pytest.mark.parametrize("index", [0, 1, 2])
def test_save_load_round_trip(tmp_path, mmap_mode, index):
    table = make_tables()[index]
    path = tmp_path / "table.safetensors"
    table.save(path)
    loaded = EmbeddingTable.load(path, mmap_mode=mmap_mode, verify=True)
    assert loaded.dtype == table.dtype
    assert loaded.data.ctypes.data % 64 == 0
    np.testing.assert_array_equal(loaded.data, table.data)
    indices = np.arange(300) % 7
    np.testing.assert_array_equal(
        ops.embedding_bag(loaded, indices, [0, 100]), ops.embedding_bag(table, indices, [0, 100])
    )


def test_empty_table_round_trip(tmp_path):
    path = tmp_path / "empty.safetensors"
    EmbeddingTable(np.zeros((0, 4), np.float32)).save(path)
    assert EmbeddingTable.load(path).num_rows == 0


def test_file_is_readable_as_safetensors(tmp_path):
    table = make_tables()[1]
    path = tmp_path / "table.safetensors"
    table.save(path)
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    assert header["weight"] == {"dtype": "F16", "shape": [300, 20], "data_offsets": [0, 12000]}
    assert (8 + size) % 64 == 0
    np.testing.assert_array_equal(
        np.frombuffer(raw[8 + size :], np.float16).reshape(300, 20), table.data
    )


def write_read_only(path, data: bytes) -> None:
    """Write a table file the way a finished one is: whole, then read-only."""
    if path.exists():
        path.chmod(0o644)
    path.write_bytes(data)
    path.chmod(0o444)


@pytest.mark.parametrize("mmap_mode", [True, False])
def test_truncated_and_padded_files_are_refused(tmp_path, mmap_mode):
    path = tmp_path / "table.safetensors"
    make_tables()[0].save(path)
    raw = path.read_bytes()
    write_read_only(path, raw[:-1])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        EmbeddingTable.load(path, mmap_mode=mmap_mode)
    write_read_only(path, raw + b"\0")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        EmbeddingTable.load(path, mmap_mode=mmap_mode)


@pytest.mark.parametrize("mmap_mode", [True, False])
def test_corrupt_data_fails_the_checksum(tmp_path, mmap_mode):
    path = tmp_path / "table.safetensors"
    make_tables()[2].save(path)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    write_read_only(path, bytes(raw))
    with pytest.raises(ValueError, match="checksum mismatch"):
        EmbeddingTable.load(path, mmap_mode=mmap_mode, verify=True)
    EmbeddingTable.load(path, mmap_mode=True)  # unverified maps open without reading the data


def test_save_writes_a_read_only_file_in_one_rename(tmp_path):
    path = tmp_path / "table.safetensors"
    first, second = make_tables()[0], EmbeddingTable(np.ones((300, 20), np.float32))
    first.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    mapped = EmbeddingTable.load(path)
    second.save(path)  # over a read-only file: a new file replaces it
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert os.listdir(tmp_path) == ["table.safetensors"]  # no staging file left behind
    np.testing.assert_array_equal(EmbeddingTable.load(path).data, second.data)
    np.testing.assert_array_equal(mapped.data, first.data)  # the old mapping keeps its data


def test_a_failed_save_leaves_nothing_behind(tmp_path):
    with pytest.raises(FileNotFoundError):
        make_tables()[0].save(tmp_path / "missing" / "table.safetensors")
    make_tables()[0].save(tmp_path / "table.safetensors")
    assert os.listdir(tmp_path) == ["table.safetensors"]


@pytest.mark.parametrize("mode", [0o644, 0o464, 0o446, 0o200])
@pytest.mark.parametrize("mmap_mode", [True, False])
def test_writable_files_are_refused(tmp_path, mode, mmap_mode):
    path = tmp_path / "table.safetensors"
    make_tables()[0].save(path)
    path.chmod(mode)
    with pytest.raises(ValueError, match=f"{path}: table files are immutable .* must be read-only"):
        EmbeddingTable.load(path, mmap_mode=mmap_mode)
    path.chmod(0o444)
    EmbeddingTable.load(path, mmap_mode=mmap_mode)


def test_a_file_that_changes_while_opened_is_refused(tmp_path):
    from adrank.embedding_table import _check_unchanged

    path = tmp_path / "table.safetensors"
    make_tables()[0].save(path)
    before = path.stat()
    _check_unchanged(before, path.stat(), path)
    with open(path, "ab") as f:  # a writer still appending
        f.write(b"\0" * 64)
    with pytest.raises(ValueError, match=f"{path}: the file changed .* still being written"):
        _check_unchanged(before, path.stat(), path)


def header_file(tmp_path, header: dict | str, data: bytes = b"") -> str:
    text = (header if isinstance(header, str) else json.dumps(header)).encode(
        "utf-8", "surrogateescape"
    )
    path = tmp_path / "bad.safetensors"
    write_read_only(path, len(text).to_bytes(8, "little") + text + data)
    return path


def good_header(**changes) -> dict:
    """A valid float32 [2, 1] header, with fields of "weight" or "__metadata__" replaced."""
    metadata = {"format": "adrank.embedding_table", "table_type": "float32", "crc32": "0"}
    weight = {"dtype": "F32", "shape": [2, 1], "data_offsets": [0, 8]}
    for key, value in changes.items():
        (metadata if key in metadata else weight)[key] = value
    return {"__metadata__": metadata, "weight": weight}


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ('{"__metadata__": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deep"),
        (json.dumps(good_header()).replace("[2, 1]", "[1e400, 8]"), r"shape \[inf, 8\]"),
        (good_header(shape=[2**62, 4], data_offsets=[0, 2**64]), "invalid float32 table shape"),
        (good_header(shape=[1, 2**33], data_offsets=[0, 2**35]), "invalid float32 table shape"),
        (good_header(shape=[2**31, 2**31]), "invalid float32 table shape"),
        (good_header(shape=[-1, 8]), "invalid float32 table shape"),
        (good_header(shape=[2, -1]), "invalid float32 table shape"),
        (good_header(shape=[2.0, 1]), "invalid float32 table shape"),
        (good_header(shape=[True, 1]), "invalid float32 table shape"),
        (good_header(shape="2, 1"), "invalid float32 table shape"),
        (good_header(shape=[2, 1, 1]), "invalid float32 table shape"),
        (good_header(shape={"rows": 2}), "invalid float32 table shape"),
        (good_header(data_offsets=[0.0, 8.0]), "data_offsets .* do not match"),
        (good_header(data_offsets="0-8"), "data_offsets .* do not match"),
        (good_header(data_offsets=[0, 8, 8]), "data_offsets .* do not match"),
        (good_header(crc32=0), r"not an adrank table file \(crc32"),
        (good_header(crc32="-1"), r"not an adrank table file \(crc32"),
        (good_header(crc32="4294967296"), r"not an adrank table file \(crc32"),
        (good_header(crc32="1" * 5000), r"not an adrank table file \(crc32"),
        (good_header(crc32="\u0661"), r"not an adrank table file \(crc32"),
        (good_header(table_type=["float32"]), "unexpected header"),
        (good_header(table_type=None), "unexpected header"),
        ([1, 2], "not an adrank table file"),
        ("3", "not an adrank table file"),
        ('"text"', "not an adrank table file"),
        ({"__metadata__": [], "weight": {}}, "not an adrank table file"),
        ({"__metadata__": "x", "weight": {}}, "not an adrank table file"),
        ('{"a": 1' + "\udcff", "not an adrank table file"),
    ],
)
def test_crafted_headers_are_value_errors_naming_the_file(tmp_path, header, match):
    path = header_file(tmp_path, header, b"\0" * 8)
    with pytest.raises(ValueError, match=f"{path}: .*{match}"):
        EmbeddingTable.load(path)


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ({"weight": {}}, "not an adrank table file"),
        (
            {
                "__metadata__": {"format": "other", "table_type": "float32", "crc32": "0"},
                "weight": {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]},
            },
            "unexpected header",
        ),
        (
            {
                "__metadata__": {
                    "format": "adrank.embedding_table",
                    "table_type": "float32",
                    "crc32": "0",
                },
                "weight": {"dtype": "F16", "shape": [1, 1], "data_offsets": [0, 4]},
            },
            "unexpected header",
        ),
        (
            {
                "__metadata__": {
                    "format": "adrank.embedding_table",
                    "table_type": "int8_rowwise",
                    "crc32": "0",
                },
                "weight": {"dtype": "U8", "shape": [1, 8], "data_offsets": [0, 8]},
            },
            "invalid int8_rowwise table shape",
        ),
        (
            {
                "__metadata__": {
                    "format": "adrank.embedding_table",
                    "table_type": "float32",
                    "crc32": "0",
                },
                "weight": {"dtype": "F32", "shape": [2, 1], "data_offsets": [0, 4]},
            },
            "do not match shape",
        ),
    ],
)
def test_bad_headers_are_refused(tmp_path, header, match):
    with pytest.raises(ValueError, match=match):
        EmbeddingTable.load(header_file(tmp_path, header, b"\0" * 8))


def test_garbage_files_are_refused(tmp_path):
    path = tmp_path / "garbage.safetensors"
    write_read_only(path, b"abc")
    with pytest.raises(ValueError, match="shorter than its 8-byte header"):
        EmbeddingTable.load(path)
    write_read_only(path, (10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="header length 1000000000 is impossible"):
        EmbeddingTable.load(path)
    write_read_only(path, (4).to_bytes(8, "little") + b"{{{{")
    with pytest.raises(ValueError, match="not an adrank table file"):
        EmbeddingTable.load(path)
