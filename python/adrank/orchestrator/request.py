"""The ranking request and response of the Python API (the HTTP format, in
:mod:`adrank.service.schemas`, mirrors them).

Glossary: ``C`` candidate creatives in a request; ``k`` creatives asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Constraints:
    """Per-request overrides of the selection rules (None: the ranker's setting)."""

    max_per_advertiser: int | None = None
    blocked_categories: tuple[int, ...] = ()
    frequency_cap: int | None = None  # impressions of one creative after which it is not shown

    def __post_init__(self) -> None:
        for name in ("max_per_advertiser", "frequency_cap"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"constraints.{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class OrganicFeed:
    """The organic feed a response's ads will be mixed into (:mod:`adrank.allocation`).

    ``values``: the organic items' values in feed order (float [O]); or only ``slots``, the
    number of feed slots, when the values are not known (every organic item then counts 0, so
    only the placement rules and the ad-load cap decide). ``slots`` defaults to ``O``.
    """

    values: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    slots: int | None = None

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 1 or not np.isfinite(values).all():
            raise ValueError("feed.values must be a 1-D array of finite numbers")
        object.__setattr__(self, "values", values)
        if self.slots is not None and (
            isinstance(self.slots, bool) or not isinstance(self.slots, int) or self.slots < 0
        ):
            raise ValueError(f"feed.slots must be an integer >= 0, got {self.slots!r}")
        if self.slots is None and not len(values):
            raise ValueError("feed needs values or slots")

    @property
    def length(self) -> int:
        return len(self.values) if self.slots is None else self.slots


@dataclass(frozen=True)
class RankRequest:
    """One ad request: who, where, which candidates, how many to return.

    ``recently_seen`` lists creative ids the user was shown recently, once per impression,
    for frequency caps. ``feed``: the organic feed the ads go into; the response then says
    each ad's slot. ``candidate_rows``: instead of ids joined to the catalog, the candidates
    themselves, one row of raw values each (a pyarrow Table; see
    :mod:`adrank.orchestrator.inline_candidates`); ``candidates`` is then their creative ids.
    """

    request_id: str
    user: Mapping[str, Any]
    context: Mapping[str, Any]
    candidates: np.ndarray  # int64 [C]
    k: int
    region: str | None = None
    recently_seen: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    constraints: Constraints = field(default_factory=Constraints)
    feed: OrganicFeed | None = None
    candidate_rows: Any = None
    # An experiment arm's settings (adrank.experiments): None keeps the ranker's own.
    scoring: Any = None  # adrank.orchestrator.scoring.ScoringConfig
    exploration: Any = None  # adrank.experiments.exploration.ExplorationPolicy
    model_version: int | None = None  # an exported version pinned in the ranker (Ranker.pin_model)

    def __post_init__(self) -> None:
        if self.candidate_rows is not None:
            from adrank.orchestrator.inline_candidates import candidate_ids

            if len(self.candidates):
                raise ValueError("give candidates or candidate_rows, not both")
            object.__setattr__(self, "candidates", candidate_ids(self.candidate_rows))
        candidates = np.asarray(self.candidates)
        if candidates.ndim != 1 or (candidates.size and candidates.dtype.kind not in "iu"):
            raise ValueError("candidates must be a 1-D array of integer creative ids")
        object.__setattr__(self, "candidates", candidates.astype(np.int64, copy=False))
        seen = np.asarray(self.recently_seen)
        if seen.ndim != 1 or (seen.size and seen.dtype.kind not in "iu"):
            raise ValueError("recently_seen must be a 1-D array of integer creative ids")
        object.__setattr__(self, "recently_seen", seen.astype(np.int64, copy=False))
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")


@dataclass(frozen=True)
class RankResponse:
    """The chosen creatives in rank order (arrays [k'], k' <= k) and the request's metadata.

    ``price`` is in the campaign's own unit (see :mod:`adrank.orchestrator.pricing`). ``degraded``
    is True when the model could not answer and the documented fallback rates were used.
    ``slot`` (int64 [k']) is each creative's slot in the request's feed, when it gave one.
    With exploration (:mod:`adrank.experiments.exploration`), ``propensity`` (float64 [k']) is
    the probability each creative was drawn in its slot given the slots above, and ``pool``
    the eligible creatives it drew from (name -> array [P], rank order); ``arms`` names the
    request's experiment arms (experiment -> arm).
    """

    request_id: str
    model_version: str
    creative_id: np.ndarray
    campaign_id: np.ndarray
    advertiser_id: np.ndarray
    p_ctr: np.ndarray
    p_cvr: np.ndarray | None  # None: the model has no conversion head
    p_neg: np.ndarray | None  # None: the model has no negative-feedback head
    ecpm: np.ndarray
    price: np.ndarray
    timings_ms: dict[str, float]
    unknown_candidates: int = 0
    degraded: bool = False
    slot: np.ndarray | None = None
    propensity: np.ndarray | None = None
    pool: Mapping[str, np.ndarray] | None = None
    arms: Mapping[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.creative_id)
