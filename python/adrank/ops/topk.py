"""Top-k creative selection: exact, deterministic, constrained during the selection.

Glossary: ``N`` candidates in a request; ``B`` requests in a batch; ``K`` slots in the answer;
``T`` candidates in a jagged batch (all requests end to end).

Order: candidate ``i`` ranks above ``j`` when its score is higher, or the scores are equal and
``i < j`` (``-0.0`` equals ``0.0``). NaN never ranks and is never selected. This is the order
of ``numpy.argsort(-scores, kind="stable")`` with NaN removed, so answers are reproducible.

Three layouts of the scores, for both functions:

- one request: ``scores`` ``[N]``; the answer is ``[K]``;
- a dense batch: ``scores`` ``[B, N]``; the answer is ``[B, K]``;
- a jagged batch: ``scores`` ``[T]`` and ``offsets`` ``[B + 1]`` (request ``b`` owns
  ``scores[offsets[b]:offsets[b + 1]]``); the answer is ``[B, K]``.

Answers have a fixed shape, as faiss's: ``(values float32, indices int64)`` sorted best first,
padded with ``(-inf, -1)`` when fewer than ``K`` candidates qualify. Indices count from each
request's first candidate. ``out=(values, indices)`` writes into arrays the caller owns.

``K`` may exceed ``N`` (the rest is padding) up to ``max(N, 65536)``, where ``N`` is the
request's length (in a jagged batch, the mean ``ceil(T / B)``): an answer is never larger than
``max(T, 65536 B)`` entries, so its memory is bounded by the input's whatever ``k`` is asked.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from adrank import _native
from adrank.ops._checks import as_int64_array, check_int

__all__ = ["select", "topk"]

_INT64_MAX = 2**63 - 1


def topk(
    scores: Any,
    k: int,
    *,
    offsets: Any = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best candidates of each request, best first.

    Equal to ``numpy.argsort(-scores, kind="stable")[:k]`` with NaN removed, then padded.

    Parameters
    ----------
    scores : ndarray [N] or [B, N], or [T] with ``offsets``
        float32 (other real dtypes are converted to float32 first).
    k : int >= 0
        Slots in the answer; ``k > N`` is allowed (the rest is padding) up to
        ``max(N, 65536)`` (see the module docstring); a larger ``k`` is a ValueError.
    offsets : ndarray [B + 1] of integers, optional
        A jagged batch: starts at 0, never decreases, ends at ``len(scores)``.
    out : (ndarray float32, ndarray int64), optional
        Where to write the answer, shaped like it.

    Returns
    -------
    values : ndarray [K] or [B, K], float32
        Scores of the chosen candidates; ``-inf`` in padding slots.
    indices : ndarray [K] or [B, K], int64
        Positions within the request; ``-1`` in padding slots.

    Examples
    --------
    >>> topk(np.array([0.5, 2.0, np.nan, 2.0], np.float32), 3)
    (array([2. , 2. , 0.5], dtype=float32), array([1, 3, 0]))
    """
    # The serving path (a float32 array, new outputs) goes straight to the kernel, which checks
    # dtype, layout and k itself; anything it refuses is converted and checked below, where a
    # genuinely bad argument gets its error.
    if type(scores) is np.ndarray and type(k) is int and offsets is None and out is None:
        try:
            return _native.topk(scores, None, k, None, None)
        except (TypeError, ValueError):
            pass
    k = check_int("k", k, minimum=0, maximum=_INT64_MAX)
    array, offset_array = _score_layout(scores, offsets)
    values_out, indices_out = _outputs(out, array, offset_array, k)
    return _native.topk(array, offset_array, k, values_out, indices_out)


def select(
    scores: Any,
    k: int,
    groups: Any = (),
    eligible: Any = None,
    min_score: float | None = None,
    *,
    offsets: Any = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best candidates of each request under eligibility, a score floor and caps.

    Exactly the greedy walk::

        for i in candidates in rank order:
            if k are taken: stop
            if eligible[i] and scores[i] >= min_score and every group of i is under its cap:
                take i

    The caps apply during the walk, not by over-fetching and filtering afterwards, so the
    answer is exact however skewed the groups are.

    Parameters
    ----------
    scores, k, offsets, out
        As in :func:`topk`.
    groups : (ids, cap) or sequence of (ids, cap)
        Each ``ids`` is an integer array shaped like ``scores`` (int64 is used as it is; other
        integer dtypes are converted): any labels, e.g. raw advertiser ids. At most ``cap``
        (an int >= 0; any size, a cap >= k never binds) candidates are taken per distinct
        label, per request. Several pairs apply together (e.g. 2 per advertiser and 4 per
        category).
    eligible : ndarray of bool shaped like ``scores``, optional
        Candidates with False are never taken.
    min_score : float, optional
        Candidates scoring below it are never taken. Not NaN.

    Returns
    -------
    values, indices
        As in :func:`topk`.

    Examples
    --------
    >>> scores = np.array([9, 8, 7, 6, 5], np.float32)
    >>> advertisers = np.array([1, 1, 1, 2, 2])
    >>> select(scores, 3, groups=(advertisers, 2))[1]
    array([0, 1, 3])
    """
    # The serving path, as in topk: float32 scores, int64 ids, int caps and a float (or no)
    # score floor go straight in.
    if (
        type(scores) is np.ndarray
        and type(k) is int
        and offsets is None
        and out is None
        and (min_score is None or type(min_score) is float)
        and (eligible is None or type(eligible) is np.ndarray)
    ):
        ready = _ready_groups(groups)
        if ready is not None:
            try:
                floor = _memo_floor(min_score)
                return _native.select(scores, None, k, *ready, eligible, floor, None, None)
            except (TypeError, ValueError):
                pass
    k = check_int("k", k, minimum=0, maximum=_INT64_MAX)
    array, offset_array = _score_layout(scores, offsets)
    pairs = _group_pairs(groups)
    ids = [as_int64_array(f"groups[{j}] ids", group_ids, ndim=None) for j, (group_ids, _) in pairs]
    # A cap past int64 never binds, as any cap >= k: the kernel sees the largest int64.
    caps = [min(check_int(f"groups[{j}] cap", cap, minimum=0), _INT64_MAX) for j, (_, cap) in pairs]
    mask = None if eligible is None else np.asarray(eligible, order="C")
    floor = _float32_floor(min_score)
    values_out, indices_out = _outputs(out, array, offset_array, k)
    return _native.select(array, offset_array, k, ids, caps, mask, floor, values_out, indices_out)


# --- argument checks ----------------------------------------------------------------------


def _score_layout(scores: Any, offsets: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """scores as float32 and offsets as int64, converted; the kernel's edge checks layouts."""
    array = np.asarray(scores)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"scores must hold real numbers, got dtype {array.dtype}")
    offset_array = None if offsets is None else as_int64_array("offsets", offsets, ndim=None)
    return np.asarray(array, dtype=np.float32, order="C"), offset_array


def _answer_shape(scores: np.ndarray, offsets: np.ndarray | None, k: int) -> tuple[int, ...]:
    if offsets is not None:
        return (offsets.size - 1, k)
    return (scores.shape[0], k) if scores.ndim == 2 else (k,)


def _outputs(
    out: Any, scores: np.ndarray, offsets: np.ndarray | None, k: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if out is None:
        return None, None
    shape = _answer_shape(scores, offsets, k)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError("out must be a pair (values, indices) of arrays")
    for name, array, dtype in (("values", out[0], np.float32), ("indices", out[1], np.int64)):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"out {name} must be a numpy array, got {type(array).__name__}")
        if array.dtype != dtype:
            raise TypeError(f"out {name} must have dtype {np.dtype(dtype)}, got {array.dtype}")
        if array.shape != shape:
            raise ValueError(f"out {name} must have shape {shape}, got {array.shape}")
    return out[0], out[1]


def _group_pairs(groups: Any) -> list[tuple[int, tuple[Any, Any]]]:
    """``(ids, cap)`` or a sequence of them, as numbered pairs."""
    if _is_pair(groups):
        return [(0, (groups[0], groups[1]))]
    if isinstance(groups, np.ndarray) or not isinstance(groups, Sequence):
        raise TypeError("groups must be an (ids, cap) pair or a sequence of such pairs")
    pairs = []
    for j, pair in enumerate(groups):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"groups[{j}] must be an (ids, cap) pair")
        pairs.append((j, (pair[0], pair[1])))
    return pairs


def _ready_groups(groups: Any) -> tuple[list[np.ndarray], list[int]] | None:
    """(ids, caps) when every pair is an (ndarray, int) already, else None: checked later."""
    single = type(groups) is tuple and len(groups) == 2 and type(groups[0]) is np.ndarray
    pairs = [groups] if single else groups
    if type(pairs) not in (list, tuple):
        return None
    ids, caps = [], []
    for pair in pairs:
        if type(pair) is not tuple or len(pair) != 2:
            return None
        if type(pair[0]) is not np.ndarray or type(pair[1]) is not int:
            return None
        ids.append(pair[0])
        caps.append(pair[1])
    return ids, caps


def _is_pair(groups: Any) -> bool:
    """``(ids, cap)`` rather than a sequence of pairs: two items, the first not a pair."""
    return (
        isinstance(groups, (tuple, list)) and len(groups) == 2 and not _looks_like_pair(groups[0])
    )


def _looks_like_pair(item: Any) -> bool:
    return (
        isinstance(item, (tuple, list))
        and len(item) == 2
        and not isinstance(item[0], numbers.Integral)
    )


# The last (min_score, floor) pair: a server passes the same reserve on every request.
_last_floor = (-math.inf, -math.inf)


def _memo_floor(min_score: float | None) -> float:
    """_float32_floor of a float (or None), remembered for the next call with the same one."""
    global _last_floor
    if min_score is None:
        return -math.inf
    last = _last_floor  # one read: another thread may replace the pair meanwhile
    if min_score == last[0]:  # never true for NaN, which the kernel refuses
        return last[1]
    floor = _float32_floor(min_score)
    _last_floor = (min_score, floor)
    return floor


def _float32_floor(min_score: Any) -> float:
    """The least float32 >= min_score: then ``score >= floor`` iff ``score >= min_score``.
    NaN stays NaN, for the kernel to refuse."""
    if min_score is None:
        return -math.inf
    if isinstance(min_score, (bool, np.bool_)) or not isinstance(min_score, numbers.Real):
        raise TypeError(f"min_score must be a real number, got {type(min_score).__name__}")
    try:
        value = float(min_score)
    except OverflowError:  # an int beyond float range
        value = math.inf if min_score > 0 else -math.inf
    if math.isnan(value):
        return value
    largest = float(np.finfo(np.float32).max)
    if value > largest:
        return math.inf  # only +inf scores reach it
    if value < -largest:
        return value if value == -math.inf else -largest
    floor = np.float32(value)
    if float(floor) < value:
        floor = np.nextafter(floor, np.float32(np.inf))
    return float(floor)
