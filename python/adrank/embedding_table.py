"""Embedding tables: fp32, fp16 or int8 row-wise quantized rows, aligned, shareable, mappable.

Glossary: ``R`` rows, ``D`` columns (the dim).

An :class:`EmbeddingTable` owns read-only storage that starts on a 64-byte boundary (rows that
straddle cache lines halve lookup throughput) and, for tables of 2 MiB and more, sits in
private anonymous memory the kernel is asked to back with transparent huge pages (shared
memory never gets them where ``shmem_enabled`` is ``never``; :func:`huge_page_bytes` says what
was granted). A table mapped from its file is page cache, without huge pages; ``load(...,
mmap_mode=False)`` reads it into huge-page memory instead. Being read-only, one table can serve
any number of threads at once.

int8 row-wise quantization is FBGEMM's "byte rowwise" layout, the one
``torch.ops.quantized.embedding_bag_byte_rowwise_offsets`` reads: each row is ``D`` uint8
codes followed by an fp32 ``scale`` and an fp32 ``bias`` (``D + 8`` bytes), and a value is
``code * scale + bias``.

Files are safetensors: one tensor ``"weight"`` (``F32`` [R, D], ``F16`` [R, D] or ``U8``
[R, D + 8] for int8) and metadata naming the table type and a CRC-32 of the data. The data
starts on a 64-byte boundary of the file, so a memory-mapped table is aligned as well.

Table files are immutable once written. A mapped file that shrinks while in use kills the
process (SIGBUS) on the next lookup of a row past its new end, so nothing may rewrite one in
place: :meth:`EmbeddingTable.save` writes a temporary file, makes it read-only (mode 0o444) and
renames it over the path in one step (a process that mapped the old file keeps the old data),
and export only ever writes new files. :meth:`EmbeddingTable.load` refuses a file that anyone
may write (a write bit in its mode) and one whose size or modification time changes while it
is opened (still being written), besides every header field of the wrong type or range.
"""

from __future__ import annotations

import json
import mmap
import os
import stat
import tempfile
import zlib
from typing import Any

import numpy as np

from adrank import _native

__all__ = ["EmbeddingTable", "dequantize_rowwise", "huge_page_bytes", "quantize_rowwise"]

# The table types are the C++ enum's names (the strings table files store), written once there.
_NATIVE_TYPE: dict[str, _native.TableType] = dict(_native.TableType.__members__)
TABLE_TYPES = tuple(_NATIVE_TYPE)
_STORAGE_DTYPE = {"float32": np.float32, "float16": np.float16, "int8_rowwise": np.uint8}
_SAFETENSORS_DTYPE = {"float32": "F32", "float16": "F16", "int8_rowwise": "U8"}
_TRAILER_BYTES = 8  # fp32 scale, fp32 bias after each int8 row's codes
_ALIGNMENT = 64
_HUGE_PAGE = 2 * 1024 * 1024
_FORMAT = "adrank.embedding_table"
_MAX_HEADER_BYTES = 1 << 20
_MAX_DIM = 1 << 20  # columns; a table file with more is refused as corrupt
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
_READ_ONLY = 0o444
_CRC_CHUNK = 64 * 1024 * 1024


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialized C-contiguous array whose data starts on a 64-byte boundary.

    From 2 MiB on, the memory is a private anonymous mapping aligned to 2 MiB and advised for
    transparent huge pages (where the OS allows; otherwise it is plain memory).
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes >= _HUGE_PAGE:
        # Private, not mmap's default shared mapping: only private memory gets huge pages here.
        flags = getattr(mmap, "MAP_PRIVATE", None)
        buffer = (
            mmap.mmap(-1, nbytes + _HUGE_PAGE)
            if flags is None
            else mmap.mmap(-1, nbytes + _HUGE_PAGE, flags=flags)
        )
        if hasattr(mmap, "MADV_HUGEPAGE"):
            buffer.madvise(mmap.MADV_HUGEPAGE)
        raw = np.frombuffer(buffer, dtype=np.uint8)
        alignment = _HUGE_PAGE
    else:
        raw = np.empty(nbytes + _ALIGNMENT, dtype=np.uint8)
        alignment = _ALIGNMENT
    start = -raw.ctypes.data % alignment
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def _smaps_entry(address: int) -> tuple[str, int] | None:
    """(permissions, AnonHugePages in bytes) of this process's mapping that holds ``address``,
    from /proc/self/smaps; None where there is no such file or mapping."""
    try:
        with open("/proc/self/smaps") as smaps:
            inside, perms = False, ""
            for line in smaps:
                head = line.split(maxsplit=2)
                if "-" in head[0] and not head[0].endswith(":"):  # a mapping's first line
                    low, high = (int(bound, 16) for bound in head[0].split("-"))
                    inside, perms = low <= address < high, head[1]
                elif inside and head[0] == "AnonHugePages:":
                    return perms, int(head[1]) * 1024
    except OSError:
        pass
    return None


def huge_page_bytes(array: np.ndarray) -> int | None:
    """Bytes of the mapping holding ``array``'s data that are backed by transparent huge pages
    (Linux; None elsewhere). For a table's storage, whether the huge pages asked for were
    granted: benchmarks record it."""
    entry = _smaps_entry(array.ctypes.data)
    return None if entry is None else entry[1]


def _float_rows(name: str, weights: Any) -> np.ndarray:
    array = np.asarray(weights)
    if array.dtype.kind != "f":
        raise TypeError(f"{name} must hold floats, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D [R, D], got shape {array.shape}")
    if array.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {array.shape}")
    return array


def quantize_rowwise(weights: Any) -> EmbeddingTable:
    """Quantize float rows to int8 row-wise: ``code = round((x - min) / scale)``.

    ``scale = (max - min) / 255`` and ``bias = min`` per row, as FBGEMM's
    ``FloatToFused8BitRowwiseQuantized`` (and ``torch.ops.quantized.embedding_bag_byte_prepack``)
    compute them; a value is recovered within ``scale / 2``.

    Parameters
    ----------
    weights : ndarray [R, D], floating point

    Returns
    -------
    EmbeddingTable
        An ``"int8_rowwise"`` table of ``R`` rows and dim ``D``.
    """
    rows = _float_rows("weights", weights)
    num_rows, dim = rows.shape
    packed = aligned_empty((num_rows, dim + _TRAILER_BYTES), np.uint8)
    step = max(1, (64 * 1024 * 1024) // (4 * dim))  # bounded temporaries for large tables
    for begin in range(0, num_rows, step):
        chunk = rows[begin : begin + step].astype(np.float32)
        low = chunk.min(axis=1, keepdims=True)
        high = chunk.max(axis=1, keepdims=True)
        scale = (high - low) / np.float32(255.0)
        inverse = np.float32(255.0) / (high - low + np.float32(1e-8))
        codes = np.rint((chunk - low) * inverse)
        packed[begin : begin + step, :dim] = np.clip(codes, 0, 255).astype(np.uint8)
        trailer = np.concatenate([scale, low], axis=1).astype(np.float32)
        packed[begin : begin + step, dim:] = trailer.view(np.uint8)
    return EmbeddingTable._wrap(packed, "int8_rowwise")


def dequantize_rowwise(packed: Any) -> np.ndarray:
    """The fp32 rows of int8 row-wise data: ``code * scale + bias``.

    Parameters
    ----------
    packed : EmbeddingTable (``"int8_rowwise"``) or ndarray [R, D + 8], uint8

    Returns
    -------
    ndarray [R, D], float32
    """
    if isinstance(packed, EmbeddingTable):
        if packed.dtype != "int8_rowwise":
            raise ValueError(f"packed must be an int8_rowwise table, got {packed.dtype}")
        packed = packed.data
    data = np.asarray(packed)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] <= _TRAILER_BYTES:
        raise ValueError(
            f"packed must be uint8 [R, D + 8] with D >= 1, got {data.dtype} {data.shape}"
        )
    dim = data.shape[1] - _TRAILER_BYTES
    trailer = np.ascontiguousarray(data[:, dim:]).view(np.float32)
    return data[:, :dim].astype(np.float32) * trailer[:, :1] + trailer[:, 1:]


class EmbeddingTable:
    """A read-only embedding table in fp32, fp16 or int8 row-wise storage.

    ``EmbeddingTable(weights)`` copies float32 or float16 rows (``[R, D]``) into aligned
    storage of the same precision; ``dtype="float16"`` (or ``"float32"``) converts on the way.
    Use :func:`quantize_rowwise` for int8, :meth:`from_rowwise` to adopt already quantized
    rows, and :meth:`load` to open a saved table (memory-mapped by default).

    Attributes
    ----------
    dtype : str
        ``"float32"``, ``"float16"`` or ``"int8_rowwise"``.
    num_rows, dim : int
    data : ndarray
        The storage, read-only: ``[R, D]`` float32/float16, or ``[R, D + 8]`` uint8.
    """

    __slots__ = ("_data", "_dtype", "_native")

    def __init__(self, weights: Any, dtype: str | None = None) -> None:
        rows = _float_rows("weights", weights)
        if dtype is None:
            if rows.dtype not in (np.float32, np.float16):
                raise TypeError(
                    f"weights must be float32 or float16 (or pass dtype=), got {rows.dtype}"
                )
            dtype = str(rows.dtype)
        if dtype not in ("float32", "float16"):
            raise ValueError(
                f"dtype must be 'float32' or 'float16' (use quantize_rowwise for int8), "
                f"got {dtype!r}"
            )
        storage = aligned_empty(rows.shape, _STORAGE_DTYPE[dtype])
        storage[...] = rows
        self._init(storage, dtype)

    @classmethod
    def from_rowwise(cls, packed: Any) -> EmbeddingTable:
        """Adopt int8 row-wise rows (uint8 ``[R, D + 8]``, e.g. from torch's byte prepack)."""
        data = np.asarray(packed)
        if data.dtype != np.uint8:
            raise TypeError(f"packed must have dtype uint8, got {data.dtype}")
        if data.ndim != 2 or data.shape[1] <= _TRAILER_BYTES:
            raise ValueError(f"packed must be [R, D + 8] with D >= 1, got shape {data.shape}")
        storage = aligned_empty(data.shape, np.uint8)
        storage[...] = data
        return cls._wrap(storage, "int8_rowwise")

    @classmethod
    def _wrap(cls, storage: np.ndarray, dtype: str) -> EmbeddingTable:
        table = cls.__new__(cls)
        table._init(storage, dtype)
        return table

    def _init(self, storage: np.ndarray, dtype: str) -> None:
        storage.flags.writeable = False
        self._data = storage
        self._dtype = dtype
        self._native = _native.Table(storage, _NATIVE_TYPE[dtype])

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def num_rows(self) -> int:
        return self._native.num_rows

    @property
    def dim(self) -> int:
        return self._native.dim

    @property
    def data(self) -> np.ndarray:
        return self._data

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    def to_float32(self) -> np.ndarray:
        """The rows as a new float32 array ``[R, D]`` (dequantized for int8)."""
        if self._dtype == "int8_rowwise":
            return dequantize_rowwise(self._data)
        return self._data.astype(np.float32)

    def __repr__(self) -> str:
        return f"EmbeddingTable(dtype={self._dtype!r}, num_rows={self.num_rows}, dim={self.dim})"

    # --- files --------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as a read-only safetensors file (see the module docstring).

        The file appears at ``path`` whole and read-only, in one rename: a reader never sees
        it half written, and a process that mapped an earlier file at ``path`` keeps reading
        the earlier data.
        """
        data = _bytes_of(self._data)
        header = {
            "__metadata__": {
                "format": _FORMAT,
                "table_type": self._dtype,
                "crc32": str(_crc32(data)),
            },
            "weight": {
                "dtype": _SAFETENSORS_DTYPE[self._dtype],
                "shape": list(self._data.shape),
                "data_offsets": [0, self._data.nbytes],
            },
        }
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-(8 + len(text)) % _ALIGNMENT)  # data starts 64-byte aligned
        directory, name = os.path.split(os.fspath(path))
        fd, staging = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory or ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(len(text).to_bytes(8, "little"))
                f.write(text)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                os.fchmod(f.fileno(), _READ_ONLY)
            os.replace(staging, path)
        except BaseException:
            if os.path.exists(staging):
                os.unlink(staging)
            raise

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, mmap_mode: bool = True, verify: bool | None = None
    ) -> EmbeddingTable:
        """Open a table saved by :meth:`save`.

        Parameters
        ----------
        path : str or PathLike
        mmap_mode : bool
            True (default): map the file read-only. Opening costs O(1) in the table's size;
            rows page in on first use. False: read the file into aligned memory.
        verify : bool, optional
            Check the data's CRC-32 (reads every byte). Defaults to False when mapping and
            True when reading. Shape, dtype and the file's size are always checked, so a
            truncated file is refused either way.

        Raises
        ------
        ValueError
            The file is not an adrank table, is truncated or padded, fails its checksum, is
            writable (table files are read-only once written) or is still being written.
        """
        verify = (not mmap_mode) if verify is None else verify
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            _check_immutable(before, path)
            header = _read_header(f, before.st_size, path)
            dtype, shape, data_offset, nbytes, expected_crc = header
            if before.st_size != data_offset + nbytes:
                raise ValueError(
                    f"{path}: expected {data_offset + nbytes} bytes for a {dtype} table of shape "
                    f"{tuple(shape)}, the file has {before.st_size} (truncated or corrupt)"
                )
            if mmap_mode and nbytes > 0:
                try:
                    mapped = mmap.mmap(f.fileno(), before.st_size, access=mmap.ACCESS_READ)
                except ValueError:  # shorter now than a moment ago
                    _check_unchanged(before, os.fstat(f.fileno()), path)
                    raise
                if hasattr(mmap, "MADV_RANDOM"):
                    mapped.madvise(mmap.MADV_RANDOM)  # lookups are random: skip readahead
                raw = np.frombuffer(mapped, dtype=np.uint8, count=nbytes, offset=data_offset)
                storage = raw.view(_STORAGE_DTYPE[dtype]).reshape(shape)
            else:
                storage = aligned_empty(tuple(shape), _STORAGE_DTYPE[dtype])
                f.seek(data_offset)
                view = _bytes_of(storage)
                if f.readinto(view) != nbytes:
                    raise ValueError(f"{path}: the file ended early (truncated)")
            _check_unchanged(before, os.fstat(f.fileno()), path)
        if verify and _crc32(_bytes_of(storage)) != expected_crc:
            raise ValueError(f"{path}: checksum mismatch, the table data is corrupt")
        return cls._wrap(storage, dtype)


def _bytes_of(array: np.ndarray) -> memoryview:
    """The array's bytes as a flat memoryview (also for arrays with no rows)."""
    return memoryview(array.reshape(-1).view(np.uint8))


def _crc32(data: memoryview) -> int:
    crc = 0
    for begin in range(0, len(data), _CRC_CHUNK):
        crc = zlib.crc32(data[begin : begin + _CRC_CHUNK], crc)
    return crc


def _check_immutable(status: os.stat_result, path: Any) -> None:
    """A table file must be a regular file that nobody may write (see the module docstring)."""
    if not stat.S_ISREG(status.st_mode):
        raise ValueError(f"{path}: not a regular file")
    if status.st_mode & _WRITE_BITS:
        raise ValueError(
            f"{path}: table files are immutable once written and must be read-only, this one "
            f"has mode {stat.filemode(status.st_mode)} (EmbeddingTable.save writes them read-only; "
            "chmod a-w the file once it is complete)"
        )


def _check_unchanged(before: os.stat_result, after: os.stat_result, path: Any) -> None:
    """The file kept its size and modification time while it was opened: nobody writes it."""
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise ValueError(
            f"{path}: the file changed while it was opened ({before.st_size} then "
            f"{after.st_size} bytes): it is still being written"
        )


def _short(value: Any, limit: int = 200) -> str:
    """repr(value), cut to ``limit`` characters: headers come from files, of any size."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_count(value: Any, maximum: int) -> bool:
    """A JSON integer in [0, maximum] (not a float such as 1e400, not a bool)."""
    return type(value) is int and 0 <= value <= maximum


def _read_header(f: Any, file_size: int, path: Any) -> tuple[str, list[int], int, int, int]:
    """(table type, shape, data offset, data bytes, crc32) from a safetensors header, every
    field checked for its type and range: a crafted header is a ValueError naming the file."""
    prefix = f.read(8)
    if len(prefix) < 8:
        raise ValueError(f"{path}: not an adrank table file (shorter than its 8-byte header)")
    header_size = int.from_bytes(prefix, "little")
    if header_size > min(file_size - 8, _MAX_HEADER_BYTES):
        raise ValueError(f"{path}: header length {header_size} is impossible (corrupt file)")
    try:
        header = json.loads(f.read(header_size))
        metadata = header["__metadata__"]
        tensor = header["weight"]
        dtype = metadata["table_type"]
        shape = tensor["shape"]
        data_offsets = tensor["data_offsets"]
        crc_text = metadata["crc32"]
    except RecursionError:  # nested deeper than the JSON parser goes
        raise ValueError(f"{path}: not an adrank table file (header nested too deep)") from None
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise ValueError(f"{path}: not an adrank table file ({_short(error)})") from None
    # header, metadata and tensor are dicts here: only a JSON object takes a str subscript.
    if (
        metadata.get("format") != _FORMAT
        or len(header) != 2
        or not isinstance(dtype, str)
        or dtype not in TABLE_TYPES
        or tensor.get("dtype") != _SAFETENSORS_DTYPE[dtype]
    ):
        raise ValueError(f"{path}: not an adrank table file (unexpected header {_short(header)})")
    if not (
        isinstance(crc_text, str)
        and 1 <= len(crc_text) <= 10
        and crc_text.isascii()
        and crc_text.isdigit()
        and int(crc_text) < 2**32
    ):
        raise ValueError(f"{path}: not an adrank table file (crc32 {_short(crc_text)})")
    expected_crc = int(crc_text)
    min_columns = _TRAILER_BYTES + 1 if dtype == "int8_rowwise" else 1
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not _is_count(shape[0], file_size)
        or not _is_count(shape[1], _MAX_DIM + _TRAILER_BYTES)
        or shape[1] < min_columns
    ):
        raise ValueError(f"{path}: invalid {dtype} table shape {_short(shape)}")
    nbytes = shape[0] * shape[1] * np.dtype(_STORAGE_DTYPE[dtype]).itemsize  # exact: Python ints
    if not (
        isinstance(data_offsets, list)
        and len(data_offsets) == 2
        and all(type(o) is int for o in data_offsets)
        and data_offsets == [0, nbytes]
    ):
        raise ValueError(f"{path}: data_offsets {_short(data_offsets)} do not match shape {shape}")
    return dtype, shape, 8 + header_size, nbytes, expected_crc
