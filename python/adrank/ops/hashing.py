"""Feature hashing: raw categorical values to bucket ids, the same at training and at serving.

Glossary: ``N`` values in a column; ``K`` keys (feature slots) in a keyed jagged batch; ``B``
samples per key.

Fast mode (``hash_strings``, ``hash_ids``, ``hash_cross``, ``hash_jagged``)::

    slot_seed  = (seed + slot * 0x9E3779B97F4A7C15) mod 2**64
    h(str)     = xxh3_64(value.encode("utf-8"), slot_seed)        # bytes are hashed as they are
    h(int64)   = xxh3_64(value.to_bytes(8, "little", signed=True), slot_seed)
    h(missing) = fmix64(slot_seed)                                # MurmurHash3's 64-bit finalizer
    bucket     = (h * num_buckets) >> 64                          # Lemire's multiply-shift

A missing value (``None``, float NaN in an object column, an Arrow null) is never an error: it
lands in ``missing_bucket(slot, num_buckets, seed)``, one fixed bucket per slot. An empty string
is a value, not a missing one. The same value in two slots lands in unrelated buckets.

scikit-learn mode (``hash_sklearn``) reproduces ``FeatureHasher(input_type="string")`` bit for
bit, so an existing pipeline moves over without retraining.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from adrank import _native
from adrank.ops._checks import as_int64_array, check_int, check_seed, is_arrow

__all__ = [
    "bucketize",
    "hash_cross",
    "hash_ids",
    "hash_jagged",
    "hash_sklearn",
    "hash_strings",
    "missing_bucket",
]

_SLOT_SEED_MULTIPLIER = 0x9E3779B97F4A7C15
_MASK64 = 2**64 - 1
_INT64_MAX = 2**63 - 1


def _fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _MASK64
    return k ^ (k >> 33)


def missing_bucket(slot: int, num_buckets: int, seed: int = 0) -> int:
    """The bucket a missing value lands in for ``slot``.

    Equal to ``(fmix64(slot_seed) * num_buckets) >> 64``; see the module docstring.
    """
    slot = check_int("slot", slot, minimum=0, maximum=_INT64_MAX)
    num_buckets = check_int("num_buckets", num_buckets, minimum=1, maximum=_INT64_MAX)
    slot_seed = (check_seed(seed) + slot * _SLOT_SEED_MULTIPLIER) & _MASK64
    return (_fmix64(slot_seed) * num_buckets) >> 64


# --- string columns ---------------------------------------------------------------------------


def _arrow_string_column(array: Any) -> _native.StringColumn:
    import pyarrow as pa

    if pa.types.is_string_view(array.type) or pa.types.is_binary_view(array.type):
        array = array.cast(pa.large_binary())
    if pa.types.is_string(array.type) or pa.types.is_binary(array.type):
        offset_type = np.int32
    elif pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type):
        offset_type = np.int64
    else:
        raise TypeError(f"values must be an Arrow string or binary array, got {array.type}")
    validity, offsets, data = array.buffers()
    offsets = np.frombuffer(offsets, dtype=offset_type)[
        array.offset : array.offset + len(array) + 1
    ]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    if validity is not None and array.null_count > 0:
        bitmap = np.frombuffer(validity, dtype=np.uint8)
        return _native.StringColumn.from_arrow(data, offsets, bitmap, array.offset)
    return _native.StringColumn.from_arrow(data, offsets, None, 0)


def _string_column(values: Any) -> _native.StringColumn:
    """Wraps ``values`` for the kernel without building a Python object per value."""
    if isinstance(values, (list, tuple)):
        return _native.StringColumn.from_objects(values)
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"values must be 1-D, got shape {values.shape}")
        if values.dtype.kind == "O":
            return _native.StringColumn.from_objects(values)
        if values.dtype.kind in "SU":
            raw = np.ascontiguousarray(values).view(np.uint8)
            return _native.StringColumn.from_fixed(
                raw, values.dtype.itemsize, values.dtype.kind == "U"
            )
        raise TypeError(f"values must hold strings, got dtype {values.dtype}")
    if is_arrow(values):
        return _arrow_string_column(values)
    if isinstance(values, (str, bytes)):
        raise TypeError("values must be a sequence of strings, got a single string")
    raise TypeError(
        "values must be a list of str, a numpy string/bytes/object array or a pyarrow "
        f"string/binary array, got {type(values).__name__}"
    )


def _keyed_arrays(key_offsets: Sequence[int], slots: Any, num_buckets: Any) -> tuple:
    return (
        np.asarray(key_offsets, dtype=np.int64),
        np.ascontiguousarray(slots, dtype=np.int64),
        np.ascontiguousarray(num_buckets, dtype=np.int64),
    )


@functools.lru_cache(maxsize=1024)
def _one_key(slot: int, num_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """The slots and num_buckets arrays of a one-key call, built once per (slot, num_buckets):
    a serving process hashes the same few slots on every request."""
    slots = np.array([slot], dtype=np.int64)
    buckets = np.array([num_buckets], dtype=np.int64)
    slots.flags.writeable = buckets.flags.writeable = False
    return slots, buckets


def _hash_string_column(
    column: _native.StringColumn, slots: Any, num_buckets: Any, seed: int, key_offsets: Any
) -> np.ndarray:
    out = np.empty(len(column), dtype=np.int64)
    offsets, slot_array, bucket_array = _keyed_arrays(key_offsets, slots, num_buckets)
    _native.hash_strings(column, offsets, slot_array, bucket_array, seed, out)
    return out


def _hash_arrow_dictionary(array: Any, slot: int, num_buckets: int, seed: int) -> np.ndarray:
    """Hashes each distinct value once, then gathers: dictionary-encoded Parquet columns."""
    dictionary = hash_strings(array.dictionary, slot, num_buckets, seed)
    indices = array.indices
    if indices.null_count == 0:
        return dictionary[np.asarray(indices, dtype=np.int64)]
    # Nulls may come with an empty dictionary (every value null): gather only the valid ones.
    valid = np.asarray(indices.is_valid())
    out = np.full(len(indices), missing_bucket(slot, num_buckets, seed), dtype=np.int64)
    out[valid] = dictionary[np.asarray(indices.drop_null(), dtype=np.int64)]
    return out


def hash_strings(values: Any, slot: int, num_buckets: int, seed: int = 0) -> np.ndarray:
    """Hash a column of strings into bucket ids.

    Parameters
    ----------
    values : list[str | bytes | None] | ndarray [N] | pyarrow.Array [N]
        A list, a numpy ``str``/``bytes``/``object`` array, or a pyarrow string, binary or
        dictionary array (read straight from Arrow's buffers). ``str`` is hashed as UTF-8.
        ``None``, NaN and Arrow nulls are missing.
    slot : int
        The feature slot (>= 0); salts the hash so each slot has its own buckets.
    num_buckets : int
        Number of buckets (>= 1).
    seed : int
        A global seed in ``[0, 2**64)``.

    Returns
    -------
    ndarray [N], int64
        Bucket ids in ``[0, num_buckets)``.
    """
    slot = check_int("slot", slot, minimum=0, maximum=_INT64_MAX)
    num_buckets = check_int("num_buckets", num_buckets, minimum=1, maximum=_INT64_MAX)
    seed = check_seed(seed)
    if is_arrow(values):
        import pyarrow as pa

        if isinstance(values, pa.ChunkedArray):
            parts = [hash_strings(chunk, slot, num_buckets, seed) for chunk in values.chunks]
            return np.concatenate(parts) if parts else np.empty(0, np.int64)
        if pa.types.is_dictionary(values.type):
            return _hash_arrow_dictionary(values, slot, num_buckets, seed)
    column = _string_column(values)
    out = np.empty(len(column), dtype=np.int64)
    slot_array, bucket_array = _one_key(slot, num_buckets)
    key_offsets = np.array([0, len(column)], dtype=np.int64)
    _native.hash_strings(column, key_offsets, slot_array, bucket_array, seed, out)
    return out


def _id_column(ids: Any) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(int64 ids, Arrow-style validity bitmap or None, bit offset of the first id)."""
    if type(ids) is np.ndarray and ids.dtype == np.int64 and ids.flags.c_contiguous:
        return ids, None, 0  # as serving passes them; the kernel's edge checks the dimensions
    if is_arrow(ids):
        import pyarrow as pa

        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        if not pa.types.is_integer(ids.type):
            raise TypeError(f"ids must be an Arrow integer array, got {ids.type}")
        if ids.type != pa.int64():
            ids = ids.cast(pa.int64())
        validity, data = ids.buffers()
        values = np.frombuffer(data, dtype=np.int64)[ids.offset : ids.offset + len(ids)]
        if validity is None or ids.null_count == 0:
            return values, None, 0
        return values, np.frombuffer(validity, dtype=np.uint8), ids.offset
    if isinstance(ids, (list, tuple)) and any(v is None for v in ids):
        present = np.fromiter((v is not None for v in ids), dtype=bool, count=len(ids))
        values = as_int64_array("ids", [0 if v is None else v for v in ids])
        return values, np.packbits(present, bitorder="little"), 0
    return as_int64_array("ids", ids), None, 0


def hash_ids(ids: Any, slot: int, num_buckets: int, seed: int = 0) -> np.ndarray:
    """Hash a column of integer ids into bucket ids.

    Parameters
    ----------
    ids : ndarray [N] of integers | list[int | None] | pyarrow integer array [N]
        Ids, hashed as their 8 little-endian bytes (int64; uint64 as the same 64 bits).
        ``None`` and Arrow nulls are missing. Floats are refused: bucketize them instead.
    slot, num_buckets, seed
        As in :func:`hash_strings`.

    Returns
    -------
    ndarray [N], int64
        Bucket ids in ``[0, num_buckets)``.
    """
    slot = check_int("slot", slot, minimum=0, maximum=_INT64_MAX)
    num_buckets = check_int("num_buckets", num_buckets, minimum=1, maximum=_INT64_MAX)
    seed = check_seed(seed)
    values, validity, validity_offset = _id_column(ids)
    out = np.empty(values.size, dtype=np.int64)
    slots, buckets = _one_key(slot, num_buckets)
    offsets = np.array([0, values.size], dtype=np.int64)
    _native.hash_ids(values, validity, validity_offset, offsets, slots, buckets, seed, out)
    return out


def hash_cross(columns: Sequence[Any], slot: int, num_buckets: int, seed: int = 0) -> np.ndarray:
    """Cross two or more int64 columns (bucket ids or raw ids) into one bucket id per row.

    Order-sensitive: ``hash_cross([a, b], ...)`` differs from ``hash_cross([b, a], ...)``.
    ``x = slot_seed; for c in columns: x = xxh3_64(c[i] as 8 bytes, seed=x)``; then reduced.

    Parameters
    ----------
    columns : sequence of ndarray [N], integers
        At least two columns of equal length.
    slot, num_buckets, seed
        As in :func:`hash_strings`.

    Returns
    -------
    ndarray [N], int64
        Bucket ids in ``[0, num_buckets)``.
    """
    slot = check_int("slot", slot, minimum=0, maximum=_INT64_MAX)
    num_buckets = check_int("num_buckets", num_buckets, minimum=1, maximum=_INT64_MAX)
    seed = check_seed(seed)
    if isinstance(columns, np.ndarray) or not isinstance(columns, Sequence):
        raise TypeError("columns must be a sequence (list or tuple) of integer arrays")
    arrays = [
        c
        if type(c) is np.ndarray and c.dtype == np.int64 and c.flags.c_contiguous
        else as_int64_array(f"columns[{j}]", c)  # the kernel's edge checks the dimensions
        for j, c in enumerate(columns)
    ]
    # The kernel checks the count of columns and their lengths.
    out = np.empty(arrays[0].size if arrays else 0, dtype=np.int64)
    _native.hash_cross(arrays, slot, num_buckets, seed, out)
    return out


def bucketize(values: Any, boundaries: Any) -> np.ndarray:
    """Bucketize numbers: ``numpy.searchsorted(boundaries, values, side="right")``, NaN apart.

    Parameters
    ----------
    values : ndarray [N], float32 or float64 (integers are converted to float64)
    boundaries : ndarray [M], strictly increasing, no NaN

    Returns
    -------
    ndarray [N], int64
        In ``[0, M]`` for numbers (``-inf`` gives 0, ``+inf`` gives ``M``); ``M + 1`` for NaN.
    """
    array = np.asarray(values)
    if array.dtype.kind in "iub":
        if array.dtype.kind == "b":
            raise TypeError("values must be numbers, got dtype bool")
        array = array.astype(np.float64)
    elif array.dtype not in (np.float32, np.float64):
        raise TypeError(f"values must be float32 or float64, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {array.shape}")
    edges = np.asarray(boundaries)
    if edges.dtype.kind not in "iuf":
        raise TypeError(f"boundaries must be numbers, got dtype {edges.dtype}")
    if edges.ndim != 1:
        raise ValueError(f"boundaries must be 1-D, got shape {edges.shape}")
    edges = np.ascontiguousarray(edges, dtype=np.float64)  # the kernel checks their order
    out = np.empty(array.size, dtype=np.int64)
    _native.bucketize(np.ascontiguousarray(array), edges, out)
    return out


def hash_sklearn(
    values: Any, n_features: int, alternate_sign: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``FeatureHasher(input_type="string")`` hashing, bit for bit, per value.

    ``h = murmurhash3_32(value.encode("utf-8"), seed=0)`` as int32, ``index = abs(h) %
    n_features`` (``2**31 % n_features`` for ``h == -2**31``), ``sign = +1 if h >= 0 else -1``.

    Parameters
    ----------
    values : as in :func:`hash_strings`, without missing values [N]
    n_features : int in ``[1, 2**31 - 1]``
    alternate_sign : bool
        When False every sign is +1, as in FeatureHasher.

    Returns
    -------
    indices : ndarray [N], int64
    signs : ndarray [N], int8 of -1 or +1
    """
    n_features = check_int("n_features", n_features, minimum=1, maximum=2**31 - 1)
    if not isinstance(alternate_sign, (bool, np.bool_)):
        raise TypeError(f"alternate_sign must be a bool, got {type(alternate_sign).__name__}")
    column = _string_column(values)
    indices = np.empty(len(column), dtype=np.int64)
    signs = np.empty(len(column), dtype=np.int8)
    _native.hash_sklearn(column, n_features, bool(alternate_sign), indices, signs)
    return indices, signs


def hash_jagged(
    values: Any, lengths: Any, slots: Any, num_buckets: Any, seed: int = 0
) -> np.ndarray:
    """Hash a keyed jagged batch (torchrec's KeyedJaggedTensor layout) in one call.

    Values are key-major: all of key 0's values for the ``B`` samples, then key 1's, and so on.
    ``lengths[k * B + b]`` is how many values sample ``b`` has for key ``k``. Each key is hashed
    with its own slot and bucket count, exactly as :func:`hash_strings` / :func:`hash_ids`
    would hash that key's values alone.

    Parameters
    ----------
    values : strings [N] (as in :func:`hash_strings`) or integer ids [N] (numpy or Arrow)
    lengths : ndarray [K * B] or [K, B], integers >= 0, summing to N
    slots : sequence [K] of int >= 0
    num_buckets : int or sequence [K] of int >= 1
    seed : int

    Returns
    -------
    ndarray [N], int64
        Bucket ids in the layout of ``values``; ``lengths`` describes them unchanged.
    """
    seed = check_seed(seed)
    slot_array = _int64_entries("slots", slots, minimum=0)
    num_keys = len(slot_array)
    if num_keys == 0:
        raise ValueError("slots must name at least one key")
    if np.ndim(num_buckets) == 0:
        count = check_int("num_buckets", num_buckets, minimum=1, maximum=_INT64_MAX)
        bucket_array = np.full(num_keys, count, dtype=np.int64)
    else:
        bucket_array = _int64_entries("num_buckets", num_buckets, minimum=1)
        if len(bucket_array) != num_keys:
            raise ValueError(
                f"num_buckets must have one entry per slot ({num_keys}), got {len(bucket_array)}"
            )
    length_array = as_int64_array("lengths", lengths, ndim=None).reshape(-1)
    if length_array.size % num_keys:
        raise ValueError(
            f"lengths must have a multiple of len(slots) = {num_keys} entries, "
            f"got {length_array.size}"
        )
    if (length_array < 0).any():
        raise ValueError("lengths must be >= 0")
    key_offsets = np.zeros(num_keys + 1, dtype=np.int64)
    np.cumsum(length_array.reshape(num_keys, -1).sum(axis=1), out=key_offsets[1:])

    integer_ids = (isinstance(values, np.ndarray) and values.dtype.kind in "iu") or (
        is_arrow(values) and _is_arrow_integer(values)
    )
    if integer_ids:
        ids, validity, validity_offset = _id_column(values)
        _check_total(key_offsets, len(ids))
        out = np.empty(len(ids), dtype=np.int64)
        _native.hash_ids(
            ids, validity, validity_offset, key_offsets, slot_array, bucket_array, seed, out
        )
        return out
    column = _string_column(values)
    _check_total(key_offsets, len(column))
    return _hash_string_column(column, slot_array, bucket_array, seed, key_offsets)


def _int64_entries(name: str, values: Any, *, minimum: int) -> np.ndarray:
    """A 1-D sequence of integers in ``[minimum, 2**63)`` as int64; Python ints of any size
    and uint64 arrays are range-checked before the conversion, so none overflows."""
    array = np.asarray(values)
    if array.dtype.kind == "O":  # Python ints beyond 64 bits (or objects that are not ints)
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
        for j, value in enumerate(array):
            check_int(f"{name}[{j}]", value, minimum=minimum, maximum=_INT64_MAX)
        return array.astype(np.int64)
    if array.dtype.kind in "iu" and array.size:
        low, high = int(array.min()), int(array.max())
        if low < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {low}")
        if high > _INT64_MAX:
            raise ValueError(f"{name} must be <= {_INT64_MAX}, got {high}")
    return as_int64_array(name, array)


def _is_arrow_integer(values: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(values.type)


def _check_total(key_offsets: np.ndarray, num_values: int) -> None:
    if key_offsets[-1] != num_values:
        raise ValueError(f"lengths sum to {key_offsets[-1]} but values has {num_values} entries")
