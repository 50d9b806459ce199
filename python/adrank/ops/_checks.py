"""Argument checks shared by the ``adrank.ops`` wrappers.

Each check names the argument and says what was expected and what came, so a user reading the
exception knows which argument to fix. A check lives in one place, at the edge that can make it:

- here, in Python: what only Python sees: an argument's Python type, a Python int's range
  (beyond int64 it cannot cross into C++), strings to codes; and the conversions the contract
  makes on purpose (never implicitly), e.g. integer arrays of any dtype to int64;
- ``cpp/bindings/``: arrays as they cross: dtype, dimensions, C-contiguity, writability, sizes;
- the kernels' ``validate_*`` (``cpp/src``): values: ranges, offsets, ids, modes, pairings.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

UINT64_MAX = 2**64 - 1


def check_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as a Python int, or raise TypeError/ValueError naming ``name``."""
    if type(value) is int:  # the common case, without the slower checks against the ABC
        result = value
    elif isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    else:
        result = int(value)
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {result}")
    if maximum is not None and result > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {result}")
    return result


def check_seed(seed: Any) -> int:
    return check_int("seed", seed, minimum=0, maximum=UINT64_MAX)


def is_arrow(value: Any) -> bool:
    """True for pyarrow arrays, without importing pyarrow for users who do not have it."""
    return type(value).__module__.split(".")[0] == "pyarrow"


def as_int64_array(name: str, values: Any, *, ndim: int | None = 1) -> np.ndarray:
    """An integer array-like as a C-contiguous int64 array (integers only, never floats)."""
    array = np.asarray(values)
    if array.dtype.kind not in "iu" and not (array.size == 0 and array.dtype.kind == "f"):
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    # order="C", not ascontiguousarray, which would make a 0-D array 1-D behind the C++ checks.
    if array.dtype == np.uint64:
        return np.asarray(array, order="C").view(np.int64)  # same 64 bits, hashed as such
    return np.asarray(array, dtype=np.int64, order="C")
