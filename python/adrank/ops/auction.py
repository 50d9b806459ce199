"""The auction of one request in one native pass: gather, score, filter, select, price.

Glossary: ``R`` creatives in the catalog; ``C`` candidates of the request (catalog rows, in
request order); ``k`` creatives asked for; ``k'`` <= ``k`` winners.

The pass (``cpp/include/adrank/auction.hpp`` has it as pseudocode) is the reference formulas
of :mod:`adrank.orchestrator.scoring` (eCPM by objective, pacing, negative-feedback penalty),
the business rules (status, pacing zero, kill switches, region targeting, blocked categories,
frequency caps, no oCPM without a conversion head), :func:`adrank.ops.select` of ``k + 1``
over the float32 eCPM under the per-advertiser cap and the reserve, and the GSP pricing of
:mod:`adrank.orchestrator.pricing`, with the same float64 arithmetic in the same order: the
results are those of the Python formulas bit for bit.

A catalog's columns are checked and packed once (:func:`auction_catalog`), then each request
passes its rows and rates only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from adrank import _native
from adrank.ops._checks import UINT64_MAX, as_int64_array, check_int

__all__ = ["AuctionResult", "auction", "auction_catalog"]

_INT64_MAX = 2**63 - 1


class AuctionResult(NamedTuple):
    """The winners in rank order, [k'] each."""

    winners: np.ndarray  # int64: positions among the candidates
    ecpm: np.ndarray  # float64
    price: np.ndarray  # float64, in the campaign's own unit


def auction_catalog(
    creative_id: Any,
    advertiser_id: Any,
    category: Any,
    objective: Any,
    bid: Any,
    target_cpa: Any,
    region_mask: Any,
    active: Any,
    ad_id: Any = None,
) -> _native.AuctionCatalog:
    """A catalog's columns ([R] each) prepared for :func:`auction`: converted (integer ids to
    int64, objective codes to int8, money to float64, region masks to uint64, ``active`` to
    bool), checked, and packed one creative per cache line (a request's candidates are random
    rows: one memory miss each instead of one per column). Build it once per catalog snapshot.
    Objective codes are 0 (CPM), 1 (CPC), 2 (oCPM). ``ad_id`` [R] (None: each creative is its
    own ad) groups creatives into ads: at most one creative of an ad wins a request, a second
    group cap in the same selection (not a pre-filter: an ad's best creative may lose to the
    advertiser cap or be ineligible, and its next one may then win)."""
    ids = {
        name: as_int64_array(name, value)
        for name, value in (
            ("creative_id", creative_id),
            ("advertiser_id", advertiser_id),
            ("category", category),
        )
    }
    codes = np.asarray(objective)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"objective must hold integer codes, got dtype {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() > 2):
        raise ValueError("objective must hold codes 0 (CPM), 1 (CPC) or 2 (oCPM)")
    masks = np.asarray(region_mask)
    if masks.dtype.kind not in "iu":
        raise TypeError(f"region_mask must hold integers, got dtype {masks.dtype}")
    return _native.AuctionCatalog(
        ids["creative_id"],
        ids["advertiser_id"],
        ids["category"],
        np.ascontiguousarray(codes, dtype=np.int8),
        _real_array("bid", bid),
        _real_array("target_cpa", target_cpa),
        np.ascontiguousarray(masks.astype(np.uint64, copy=False)),
        np.ascontiguousarray(active, dtype=bool),
        None if ad_id is None else as_int64_array("ad_id", ad_id),
    )


def auction(
    catalog: _native.AuctionCatalog,
    rows: Any,
    p_ctr: Any,
    p_cvr: Any = None,
    p_neg: Any = None,
    *,
    k: int,
    reserve_ecpm: float,
    neg_penalty: float,
    max_per_advertiser: int,
    region_bit: int = 0,
    pacing: Any = None,
    killed: Any = None,
    blocked_categories: Any = None,
    recently_seen: Any = None,
    frequency_cap: int = 1,
) -> AuctionResult:
    """The auction of one request's candidates (see the module docstring).

    Parameters
    ----------
    catalog : from :func:`auction_catalog`
    rows : integers [C], the candidates' catalog rows (IndexError outside ``[0, R)``)
    p_ctr, p_cvr, p_neg : rates [C], float32 or float64 (other real dtypes become float64);
        ``p_cvr`` None: no conversion head (oCPM never eligible); ``p_neg`` None: no penalty
    k : int >= 0, winners asked for (any size: at most ``C`` win)
    reserve_ecpm, neg_penalty : finite numbers >= 0 (the scoring settings)
    max_per_advertiser : int >= 0, winners per advertiser id
    region_bit : the request region's bit of the catalog's region masks; 0 for none (only
        untargeted campaigns are then eligible)
    pacing : multipliers [C] (None: 1.0); a candidate at 0 (or NaN) is not eligible
    killed : bool [C], True where a kill switch is on (None: none)
    blocked_categories : category ids no winner may have
    recently_seen : creative ids the user saw, once per impression
    frequency_cap : int >= 1; a creative seen that many times is not eligible

    Returns
    -------
    AuctionResult
        ``winners`` (positions among the candidates, rank order), their ``ecpm`` and ``price``.

    Examples
    --------
    >>> columns = auction_catalog([10, 11], [1, 2], [0, 0], [0, 0], [3.0, 2.0], [0.0, 0.0],
    ...                           np.full(2, 2**64 - 1, np.uint64), [True, True])
    >>> auction(columns, [0, 1], np.full(2, 0.01, np.float32), k=1, reserve_ecpm=0.5,
    ...         neg_penalty=0.0, max_per_advertiser=1)
    AuctionResult(winners=array([0]), ecpm=array([3.]), price=array([2.]))
    """
    # The serving path (arrays of the kernel's dtypes, Python ints and floats) goes straight to
    # the kernel, which checks dtypes, sizes and values itself; anything it refuses is
    # converted and checked below, where a genuinely bad argument gets its error.
    if (
        type(k) is int
        and type(reserve_ecpm) is float
        and type(neg_penalty) is float
        and type(max_per_advertiser) is int
        and type(region_bit) is int
        and type(frequency_cap) is int
    ):
        try:
            return AuctionResult(
                *_native.auction(
                    catalog,
                    rows,
                    p_ctr,
                    p_cvr,
                    p_neg,
                    pacing,
                    killed,
                    k,
                    reserve_ecpm,
                    neg_penalty,
                    max_per_advertiser,
                    region_bit,
                    blocked_categories,
                    recently_seen,
                    frequency_cap,
                )
            )
        except (TypeError, ValueError):
            pass
    if type(rows) is not np.ndarray or rows.dtype != np.int64:
        rows = as_int64_array("rows", rows)
    return AuctionResult(
        *_native.auction(
            catalog,
            rows,
            _rate("p_ctr", p_ctr),
            None if p_cvr is None else _rate("p_cvr", p_cvr),
            None if p_neg is None else _rate("p_neg", p_neg),
            None if pacing is None else _real_array("pacing", pacing),
            None if killed is None else _bool_array("killed", killed),
            check_int("k", k, minimum=0, maximum=_INT64_MAX),
            _real("reserve_ecpm", reserve_ecpm),
            _real("neg_penalty", neg_penalty),
            check_int("max_per_advertiser", max_per_advertiser, minimum=0, maximum=_INT64_MAX),
            check_int("region_bit", region_bit, minimum=0, maximum=UINT64_MAX),
            _ids("blocked_categories", blocked_categories),
            _ids("recently_seen", recently_seen),
            check_int("frequency_cap", frequency_cap, minimum=1, maximum=_INT64_MAX),
        )
    )


def _rate(name: str, values: Any) -> np.ndarray:
    """float32 and float64 as they are (the pass reads both), other reals as float64."""
    if type(values) is np.ndarray and values.dtype in (np.float32, np.float64):
        return np.ascontiguousarray(values)
    return _real_array(name, values)


def _real_array(name: str, values: Any) -> np.ndarray:
    if type(values) is np.ndarray and values.dtype == np.float64 and values.flags.c_contiguous:
        return values
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64)


def _bool_array(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype != bool:
        raise TypeError(f"{name} must hold booleans, got dtype {array.dtype}")
    return np.ascontiguousarray(array)


def _ids(name: str, values: Any) -> np.ndarray | None:
    if values is None:
        return None
    if type(values) is np.ndarray and values.dtype == np.int64 and values.ndim == 1:
        return np.ascontiguousarray(values)
    return as_int64_array(name, np.asarray(list(values) if isinstance(values, set) else values))


def _real(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)
