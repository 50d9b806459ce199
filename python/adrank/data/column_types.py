"""Turning a log's raw columns into the types training needs, finding the rows that do not fit.

Glossary: a *kind* is what a column must become: ``"int"`` (int64 ids; whole floats such as
``260.0`` and floats with NaN, as pandas writes ids with missing values, are read as ids),
``"float"`` (float64), ``"string"`` (UTF-8), ``"label"`` (float64, 0 or 1 on every row) or
``"auto"`` (text columns: the first kind of int, float, string that fits the first batch, then
kept for the rest of the log; typed columns: as they are) or ``"id"`` (``"auto"``, except
that floats become int ids: a categorical column without a ``value_type``). A *bad row* is one
whose value does not convert: :func:`convert_column` returns a mask of them, never raises.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = ["EXPECTED", "KINDS", "convert_column", "decide_kind", "whole_float_ids"]

KINDS = ("auto", "id", "int", "float", "string", "label")
EXPECTED = {
    "int": "an integer id",
    "id": "an integer id",
    "float": "a number",
    "string": "UTF-8 text",
    "label": "0 or 1",
}
_INTEGER_TEXT = re.compile(r"^[+-]?\d+$")
_INT64_LIMIT = 2.0**63


def _is_text(array: Any) -> bool:
    import pyarrow as pa

    t = array.type
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or _is_string(array)


def _is_number(arrow_type: Any) -> bool:
    import pyarrow as pa

    return (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_boolean(arrow_type)
    )


def _is_string(array: Any) -> bool:
    import pyarrow as pa

    t = array.type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def whole_float_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int64 ids, missing mask, bad mask) of float ids: NaN is missing, a fraction is bad."""
    missing = np.isnan(values)
    with np.errstate(invalid="ignore"):
        bad = ~missing & ((values != np.floor(values)) | (np.abs(values) >= _INT64_LIMIT))
    ids = np.where(missing | bad, 0.0, values).astype(np.int64)
    return ids, missing, bad


def _python_values(array: Any) -> list:
    return array.to_pylist()


def _text_to_str(array: Any) -> tuple[Any, np.ndarray]:
    """UTF-8 strings of a binary/string column and the rows that are not valid UTF-8."""
    import pyarrow as pa

    if _is_string(array):
        return array, np.zeros(len(array), dtype=bool)
    try:
        return array.cast(pa.string()), np.zeros(len(array), dtype=bool)
    except pa.ArrowInvalid:
        pass
    values, bad = [], np.zeros(len(array), dtype=bool)
    for i, raw in enumerate(_python_values(array)):
        try:
            values.append(None if raw is None else raw.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(None)
            bad[i] = True
    return pa.array(values, type=pa.string()), bad


def _parse_python(values: list, parse: Any) -> tuple[list, np.ndarray]:
    out, bad = [], np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(parse(value))
        except (ValueError, OverflowError):
            out.append(None)
            bad[i] = True
    return out, bad


def _text_to_float(strings: Any) -> tuple[Any, np.ndarray]:
    import pyarrow as pa

    try:
        return strings.cast(pa.float64()), np.zeros(len(strings), dtype=bool)
    except pa.ArrowInvalid:
        values, bad = _parse_python(_python_values(strings), float)
        return pa.array(values, type=pa.float64()), bad


def _float_to_int(floats: Any) -> tuple[Any, np.ndarray]:
    import pyarrow as pa

    values = floats.to_numpy(zero_copy_only=False).astype(np.float64)
    ids, missing, bad = whole_float_ids(values)
    return pa.array(ids, mask=missing | bad), bad


def _text_to_int(strings: Any) -> tuple[Any, np.ndarray]:
    import pyarrow as pa

    try:
        return strings.cast(pa.int64()), np.zeros(len(strings), dtype=bool)
    except pa.ArrowInvalid:
        pass
    floats, bad = _text_to_float(strings)
    ids, float_bad = _float_to_int(floats)
    return ids, bad | float_bad


def convert_column(array: Any, kind: str) -> tuple[Any, np.ndarray]:
    """(``array`` as ``kind``, bad-row mask [rows]). Nulls stay nulls and are not bad rows,
    except for labels. ``array`` is a pyarrow Array (a ChunkedArray is combined)."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    no_bad = np.zeros(len(array), dtype=bool)
    if kind == "id" and pa.types.is_floating(array.type):
        kind = "int"
    if kind in ("auto", "id"):
        return _text_to_str(array) if pa.types.is_binary(array.type) else (array, no_bad)
    text_bad = no_bad
    if _is_text(array):
        array, text_bad = _text_to_str(array)
        if kind == "string":
            return array, text_bad
    if kind == "string":
        return array.cast(pa.string()), no_bad
    if kind == "int":
        if pa.types.is_integer(array.type) or pa.types.is_boolean(array.type):
            return array.cast(pa.int64()), no_bad
        if pa.types.is_floating(array.type):
            return _float_to_int(array)
        if _is_string(array):
            ids, bad = _text_to_int(array)
            return ids, bad | text_bad
    if kind in ("float", "label"):
        if _is_number(array.type):
            floats, bad = array.cast(pa.float64()), no_bad
        elif _is_string(array):
            floats, bad = _text_to_float(array)
            bad = bad | text_bad
        else:
            return array, np.ones(len(array), dtype=bool)
        if kind == "label":
            values = floats.to_numpy(zero_copy_only=False)
            bad = bad | ~np.isin(values, (0.0, 1.0))  # NaN (missing) is bad too
        return floats, bad
    if kind in KINDS:  # a list or struct column asked to be a scalar
        return array, np.ones(len(array), dtype=bool)
    raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")


def decide_kind(array: Any) -> str:
    """The kind of a text column from its first batch: int, then float, then string.

    Integers past int64 (20-digit ids) are strings, never floats that would lose digits.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    strings, bad = _text_to_str(array)
    if bad.any():
        return "string"
    present = strings.drop_null()
    if len(present) == 0:
        return "string"
    try:
        present.cast(pa.int64())
        return "int"
    except pa.ArrowInvalid:
        pass
    if pc.all(pc.match_substring_regex(present, _INTEGER_TEXT.pattern)).as_py():
        return "string"
    try:
        present.cast(pa.float64())
        return "float"
    except pa.ArrowInvalid:
        return "string"
