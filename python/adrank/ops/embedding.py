"""Embedding lookup: pooled bags of table rows, ``torch.nn.functional.embedding_bag`` semantics.

Glossary: ``R`` rows in a table, ``D`` its dim, ``N`` ids, ``B`` bags (samples), ``F`` fields
(keys) of a keyed jagged batch.

Bag ``b`` is ``indices[offsets[b]:offsets[b + 1]]`` (the last bag runs to the end). ``sum``
adds its rows (times ``per_sample_weights`` when given), ``mean`` divides the sum by the number
of ids counted, ``max`` takes the elementwise maximum. Ids equal to ``padding_idx`` are skipped
and not counted; a bag with no id left is a row of zeros. Tables may be fp32, fp16 or int8
row-wise quantized (see :class:`adrank.EmbeddingTable`); the output is always float32.

Kernels release the GIL and run on ``adrank.set_num_threads(n)`` threads (small calls stay on
one). All arguments are checked before any work starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from adrank import _native
from adrank.embedding_table import EmbeddingTable
from adrank.ops._checks import as_int64_array, check_int
from adrank.ops._output_pool import OutputPool

__all__ = ["EmbeddingBagCollection", "embedding_bag", "embedding_bag_collection"]

# Pooling modes are the C++ enum's names ("sum", "mean", "max"), written once there.
_MODES: dict[str, _native.PoolingMode] = dict(_native.PoolingMode.__members__)
_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
# Outputs of calls without out=: pages already mapped, never memory a caller still holds.
_OUTPUTS = OutputPool()
_NATIVE_TYPE = {
    np.dtype(np.float32): _native.TableType.float32,
    np.dtype(np.float16): _native.TableType.float16,
}


def _index_array(name: str, values: Any) -> np.ndarray:
    """int32 and int64 ids pass through untouched; other integers become int64."""
    if (
        type(values) is np.ndarray
        and values.dtype in _INDEX_DTYPES
        and values.ndim == 1
        and values.flags.c_contiguous
    ):
        return values
    array = np.asarray(values)
    if array.dtype in _INDEX_DTYPES:
        return np.asarray(array, order="C")  # the kernel's edge checks the layout
    return as_int64_array(name, array, ndim=None)


def _native_table(table: Any) -> _native.Table:
    if isinstance(table, EmbeddingTable):
        return table._native
    array = np.asarray(table)
    if array.dtype not in _NATIVE_TYPE:
        raise TypeError(
            "table must be an EmbeddingTable or a float32/float16 array [R, D], "
            f"got {type(table).__name__} of dtype {array.dtype}"
        )
    if array.ndim != 2:
        raise ValueError(f"table must be 2-D [R, D], got shape {array.shape}")
    return _native.Table(np.ascontiguousarray(array), _NATIVE_TYPE[array.dtype])


def _mode(name: str, mode: Any) -> _native.PoolingMode:
    try:
        return _MODES[mode]
    except (KeyError, TypeError):
        raise ValueError(f"{name} must be 'sum', 'mean' or 'max', got {mode!r}") from None


def _padding(name: str, padding_idx: Any, num_rows: int) -> int:
    if padding_idx is None:
        return -1
    padding = check_int(name, padding_idx)
    if not -num_rows <= padding < num_rows:
        raise ValueError(f"{name} must be in [-{num_rows}, {num_rows}), got {padding}")
    return padding + num_rows if padding < 0 else padding


def _weights(per_sample_weights: Any) -> np.ndarray | None:
    """Float weights as float32; the kernel checks their layout, count and mode."""
    if per_sample_weights is None:
        return None
    weights = np.asarray(per_sample_weights)
    if weights.dtype.kind != "f":
        raise TypeError(f"per_sample_weights must hold floats, got dtype {weights.dtype}")
    return np.asarray(weights, dtype=np.float32, order="C")


def embedding_bag(
    table: Any,
    indices: Any,
    offsets: Any = None,
    mode: str = "sum",
    per_sample_weights: Any = None,
    include_last_offset: bool = False,
    padding_idx: int | None = None,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Pool bags of rows of one table, as ``torch.nn.functional.embedding_bag`` does.

    Stricter than torch, which is silently lenient here: ``offsets[0]`` must be 0, offsets must
    not decrease nor exceed ``N``, and with ``include_last_offset=True`` the last offset must
    equal ``N`` (torch silently drops the ids past it).

    Parameters
    ----------
    table : EmbeddingTable or ndarray [R, D] (float32 or float16)
    indices : ndarray [N] of int32 or int64 ids in ``[0, R)``; or [B, L] with ``offsets=None``
        for ``B`` bags of ``L`` ids each (as torch allows).
    offsets : ndarray [B] (or [B + 1] with ``include_last_offset``), int32 or int64
    mode : {"sum", "mean", "max"}
    per_sample_weights : ndarray [N], float, optional
        One weight per id; only with ``mode="sum"``.
    include_last_offset : bool
        ``offsets`` has ``B + 1`` entries, the last one ``N``.
    padding_idx : int, optional
        An id in ``[-R, R)`` (negative counts from the end) that is skipped and not counted.
    out : ndarray [B, D], float32, optional
        Caller-owned, C-contiguous output; returned.

    Returns
    -------
    ndarray [B, D], float32

    Raises
    ------
    IndexError
        An id outside ``[0, R)``; the message gives its position and value.
    TypeError, ValueError
        Any other bad argument, named in the message.
    """
    # The serving path (a table, numpy ids and offsets, a mode name, no weights or padding) goes
    # straight to the kernel; anything it refuses before it writes is converted and checked
    # below, where a genuinely bad argument gets its error.
    if (
        type(table) is EmbeddingTable
        and type(indices) is np.ndarray
        and type(offsets) is np.ndarray
        and per_sample_weights is None
        and padding_idx is None
        and type(include_last_offset) is bool
        and type(mode) is str
        and mode in _MODES
    ):
        try:
            ready = out
            if ready is None:
                num_bags = len(offsets) - include_last_offset
                ready = _OUTPUTS.take((num_bags, table._native.dim))
            _native.embedding_bag(
                table._native, indices, offsets, _MODES[mode], None, include_last_offset, -1, ready
            )
            return ready
        except (TypeError, ValueError):
            pass
    native = _native_table(table)
    mode_code = _mode("mode", mode)
    ids = np.asarray(indices) if offsets is None else _index_array("indices", indices)
    if offsets is None:
        if ids.ndim != 2:
            raise ValueError(f"offsets is required unless indices is 2-D, got shape {ids.shape}")
        if include_last_offset:
            raise ValueError("include_last_offset=True needs offsets")
        num_bags, length = ids.shape
        ids = _index_array("indices", ids.reshape(-1))
        starts = np.arange(0, num_bags * length, max(length, 1), dtype=ids.dtype)
    else:
        starts = _index_array("offsets", offsets)
        if starts.dtype != ids.dtype:
            ids, starts = ids.astype(np.int64), starts.astype(np.int64)
    if not isinstance(include_last_offset, (bool, np.bool_)):
        raise TypeError(
            f"include_last_offset must be a bool, got {type(include_last_offset).__name__}"
        )
    weights = _weights(per_sample_weights)
    padding = _padding("padding_idx", padding_idx, native.num_rows)
    if out is None:
        num_bags = len(starts) - 1 if include_last_offset else len(starts)
        out = _OUTPUTS.take((max(num_bags, 0), native.dim))
    _native.embedding_bag(
        native, ids, starts, mode_code, weights, bool(include_last_offset), padding, out
    )
    return out


class EmbeddingBagCollection:
    """A keyed jagged batch's fields pooled in one call, with tables and modes prepared once.

    A serving process builds one per schema and table set and calls it per request: the keys,
    tables, modes and padding ids are checked and converted here, once, and each call passes
    them to the kernel as they are. Calling it is exactly :func:`embedding_bag_collection`.

    Parameters
    ----------
    keys : sequence [F] of str
    tables : mapping from key to EmbeddingTable (or float32/float16 ndarray [R, D])
        Several keys may share a table.
    modes : "sum" | "mean" | "max", or a mapping from key to one of them (default "sum")
    padding_idx : mapping from key to int in ``[-R, R)``, optional

    Attributes
    ----------
    keys : tuple [F] of str
    dims : tuple [F] of int
        ``D_f``, the dim of each key's table.
    output_width : int
        ``sum of D_f``: the columns of an output row.
    """

    __slots__ = ("_native", "_outputs", "_row_shape", "dims", "keys", "output_width")

    def __init__(
        self,
        keys: Sequence[str],
        tables: Mapping[str, Any],
        modes: str | Mapping[str, str] = "sum",
        padding_idx: Mapping[str, int] | None = None,
    ) -> None:
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Sequence):
            raise TypeError(f"keys must be a sequence of str, got {type(keys).__name__}")
        if not keys:
            raise ValueError("keys must name at least one field")
        if not isinstance(tables, Mapping):
            raise TypeError(
                f"tables must be a mapping from key to table, got {type(tables).__name__}"
            )
        natives = []
        for key in keys:
            if key not in tables:
                raise ValueError(f"tables has no table for key {key!r}")
            natives.append(_native_table(tables[key]))
        if isinstance(modes, str):
            mode_codes = [_mode("modes", modes)] * len(keys)
        elif isinstance(modes, Mapping):
            mode_codes = [_mode(f"modes[{key!r}]", modes.get(key, "sum")) for key in keys]
        else:
            raise TypeError(f"modes must be a str or a mapping, got {type(modes).__name__}")
        if padding_idx is None:
            paddings = [-1] * len(keys)
        elif isinstance(padding_idx, Mapping):
            paddings = [
                _padding(f"padding_idx[{key!r}]", padding_idx.get(key), native.num_rows)
                for key, native in zip(keys, natives, strict=True)
            ]
        else:
            raise TypeError(f"padding_idx must be a mapping, got {type(padding_idx).__name__}")
        self.keys = tuple(keys)
        self.dims = tuple(native.dim for native in natives)
        self.output_width = sum(self.dims)
        # [F, D] per sample when every dim is D, else the dims side by side.
        same_dim = len(set(self.dims)) == 1
        self._row_shape = (len(keys), self.dims[0]) if same_dim else (self.output_width,)
        # The kernel's own prepared fields: a call converts no list of tables or modes.
        self._native = _native.Collection(natives, mode_codes, paddings)
        # Outputs of calls without out=, per collection (one per serving call site).
        self._outputs = OutputPool()

    def __call__(
        self,
        values: Any,
        lengths: Any,
        *,
        per_sample_weights: Any = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Pool every field of a batch: see :func:`embedding_bag_collection` for the layout.

        Parameters
        ----------
        values : ndarray [N], int32 or int64 ids
        lengths : ndarray [F * B] or [F, B], integers >= 0 summing to ``N``
        per_sample_weights : ndarray [N], float, optional (every mode must be "sum")
        out : ndarray [B, F, D] or [B, sum of D_f], float32, optional
            Caller-owned, C-contiguous output; returned.

        Returns
        -------
        ndarray [B, F, D] when every table has dim ``D``, else [B, sum of D_f]; float32.
        """
        # The serving path (numpy ids and lengths as the kernel takes them) goes straight in;
        # anything the kernel refuses before it writes is converted and checked below, where a
        # genuinely bad argument gets its error.
        if (
            type(values) is np.ndarray
            and type(lengths) is np.ndarray
            and per_sample_weights is None
        ):
            ready = out
            if ready is None:
                ready = self._outputs.take((lengths.size // len(self.keys), *self._row_shape))
            try:
                self._native(values, lengths, None, ready)
                return ready
            except (TypeError, ValueError):
                pass
        ids = _index_array("values", values)
        if (
            type(lengths) is np.ndarray
            and lengths.dtype == np.int64
            and lengths.ndim == 1
            and lengths.flags.c_contiguous
        ):
            length_array = lengths
        else:
            length_array = as_int64_array("lengths", lengths, ndim=None).reshape(-1)
        weights = _weights(per_sample_weights)
        if out is None:
            batch_size = length_array.size // len(self.keys)
            out = self._outputs.take((batch_size, *self._row_shape))
        self._native(ids, length_array, weights, out)
        return out

    def __repr__(self) -> str:
        return f"EmbeddingBagCollection(keys={list(self.keys)}, dims={list(self.dims)})"


def embedding_bag_collection(
    keys: Sequence[str],
    values: Any,
    lengths: Any,
    tables: Mapping[str, Any],
    modes: str | Mapping[str, str] = "sum",
    *,
    per_sample_weights: Any = None,
    padding_idx: Mapping[str, int] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Pool every field of a keyed jagged batch in one call, on one dispatch onto the threads.

    The batch is torchrec's ``KeyedJaggedTensor`` layout: ``values`` is key-major (all of key
    0's ids for the ``B`` samples, then key 1's, ...) and ``lengths[f * B + b]`` is how many ids
    sample ``b`` has for ``keys[f]``. Field ``f`` is pooled over ``tables[keys[f]]`` with
    ``modes[keys[f]]``, exactly as :func:`embedding_bag` would pool it alone; several keys may
    share a table. A caller that pools the same tables again and again builds an
    :class:`EmbeddingBagCollection` once instead: this function is one built and called.

    Parameters
    ----------
    keys : sequence [F] of str
    values : ndarray [N], int32 or int64 ids
    lengths : ndarray [F * B] or [F, B], integers >= 0 summing to ``N``
    tables : mapping from key to EmbeddingTable (or float32/float16 ndarray [R, D])
    modes : "sum" | "mean" | "max", or a mapping from key to one of them
    per_sample_weights : ndarray [N], float, optional (every mode must be "sum")
    padding_idx : mapping from key to int, optional
    out : ndarray [B, F, D] or [B, sum of D_f], float32, optional
        Caller-owned, C-contiguous output; returned.

    Returns
    -------
    ndarray [B, F, D] when every table has dim ``D``, else [B, sum of D_f]; float32.
        Field ``f`` fills columns ``D_0 + ... + D_{f-1}`` onwards of each row.

    Raises
    ------
    IndexError
        An id outside its table; the message gives its position, value and field number.
    TypeError, ValueError
        Any other bad argument, named in the message.
    """
    collection = EmbeddingBagCollection(keys, tables, modes, padding_idx)
    return collection(values, lengths, per_sample_weights=per_sample_weights, out=out)
