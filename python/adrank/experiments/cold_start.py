"""Cold start: a new creative's click rate estimated from the model and its own clicks, and
exploration that gives it a minimum exposure within a bounded share of traffic and revenue.

Glossary: ``C`` candidates of one request; ``n`` a creative's impressions and ``c`` its clicks
so far (:class:`ImpressionCounts`); ``p`` the model's predicted click rate; ``m`` the prior
strength (how many impressions the model's prediction is worth); a creative is *new* while
``n < min_impressions``; an *exploring request* is one of the ``traffic_share`` of requests
picked by a hash of the request id (the same id, the same choice).

The estimate (every request): a Beta posterior around the predicted rate,
``Beta(m p + c, m (1 - p) + n - c)``, whose mean ``p_est = (m p + c) / (m + n)`` is the click
rate the auction values CPC and oCPM candidates at (a CPM candidate's value does not depend on
its click rate). With no impressions it is the model's rate.

Exploration (exploring requests only, new creatives only): the candidate's eCPM is multiplied by
a boost ``b = clip(q / p_est, 1, 1 / (1 - max_revenue_loss))``, where ``q`` is the posterior's
upper confidence bound ``p_est + z sqrt(p_est (1 - p_est) / (m + n))`` (``method="ucb"``, it
shrinks with the creative's impressions) or a draw from the posterior (``method="thompson"``,
seeded by the request id). The boost scales the whole eCPM (value and negative-feedback penalty
alike), so a boosted creative outranks another only if its own eCPM is at least
``1 - max_revenue_loss`` times the other's.

The bounds, enforced here and tested (tests/test_cold_start.py):

* **traffic**: only exploring requests boost anything, so at most ``traffic_share`` of requests
  (in expectation over request ids) show a creative exploration put there;
* **revenue**: on an exploring request every slot's winner has an eCPM (at the estimate) of at
  least ``1 - max_revenue_loss`` times the best eligible creative left for that slot, so the
  slate's eCPM is at least ``1 - max_revenue_loss`` times the slate the estimate alone ranks,
  and the day's at least ``1 - traffic_share * max_revenue_loss`` times it. An explored winner
  pays the GSP price of its boosted rank (less than it would have without the boost).
* **minimum exposure**: a new creative is boosted until it has ``min_impressions``
  impressions. On an exploring request where it is eligible and its eCPM is within the band
  (at least ``1 - max_revenue_loss`` times the best), it outranks every creative that is not
  new; the simulated day (:mod:`adrank.simulation.cold_start`) measures how fast new creatives
  reach it.

Exploration within an ad: an ad's creatives compete for its one slot (the catalog's
``ad_id``) with their boosted eCPMs, so a new sibling within the band wins the slot on
exploring requests until it has its minimum exposure.

Where the counts come from: an in-process :class:`ImpressionCounts`, fed by the spend events
that name their creative (``POST /v1/events`` with ``creative_id``: impressions and clicks;
events without one count nothing, and a retried batch, one with duplicates, is not counted
again), or directly by a simulation. Each serving process counts what
it is told (not shared between replicas, not kept over a restart: a creative is then explored
again, within the same bounds).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from adrank.experiments.exploration import request_seed
from adrank.orchestrator.scoring import Objective

METHODS = ("ucb", "thompson")
_P_FLOOR = 1e-6  # predicted rates are clipped to [_P_FLOOR, 1 - _P_FLOOR] before dividing


@dataclass(frozen=True)
class ColdStartConfig:
    """Settings of the estimate and of exploration (see the module docstring)."""

    min_impressions: int = 200
    traffic_share: float = 0.1
    max_revenue_loss: float = 0.5
    prior_strength: float = 50.0
    confidence: float = 2.0  # z of the upper confidence bound
    method: str = "ucb"

    def __post_init__(self) -> None:
        if isinstance(self.min_impressions, bool) or not isinstance(self.min_impressions, int):
            raise TypeError(f"min_impressions must be an int, got {self.min_impressions!r}")
        if self.min_impressions < 0:
            raise ValueError(f"min_impressions must be >= 0, got {self.min_impressions}")
        if not 0.0 <= self.traffic_share <= 1.0:
            raise ValueError(f"traffic_share must be in [0, 1], got {self.traffic_share}")
        if not 0.0 <= self.max_revenue_loss < 1.0:
            raise ValueError(f"max_revenue_loss must be in [0, 1), got {self.max_revenue_loss}")
        if not (math.isfinite(self.prior_strength) and self.prior_strength > 0):
            raise ValueError(f"prior_strength must be a number > 0, got {self.prior_strength}")
        if not (math.isfinite(self.confidence) and self.confidence >= 0):
            raise ValueError(f"confidence must be a number >= 0, got {self.confidence}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")

    @property
    def max_boost(self) -> float:
        return 1.0 / (1.0 - self.max_revenue_loss)


@dataclass(frozen=True)
class _Counts:
    """An immutable snapshot: sorted creative ids and their impressions and clicks."""

    ids: np.ndarray  # int64 [U], sorted
    impressions: np.ndarray  # int64 [U]
    clicks: np.ndarray  # int64 [U]


class ImpressionCounts:
    """Impressions and clicks per creative, in process. Writes publish a new snapshot; the
    request path reads one with two ``searchsorted`` and no lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        empty = np.empty(0, dtype=np.int64)
        self._counts = _Counts(empty, empty, empty)

    def record(
        self, creative_ids: Iterable[int], impressions: Iterable[int], clicks: Iterable[int]
    ) -> None:
        """Adds ``impressions`` and ``clicks`` (ints >= 0, one per id; ids may repeat)."""
        ids = creative_ids if isinstance(creative_ids, np.ndarray) else list(creative_ids)
        ids = np.asarray(ids, dtype=np.int64).ravel()
        shown = np.asarray(impressions, dtype=np.int64).ravel()
        clicked = np.asarray(clicks, dtype=np.int64).ravel()
        if not (len(ids) == len(shown) == len(clicked)):
            raise ValueError(
                f"creative_ids, impressions and clicks must have one value per creative, "
                f"got {len(ids)}, {len(shown)} and {len(clicked)}"
            )
        if (shown < 0).any() or (clicked < 0).any():
            raise ValueError("impressions and clicks must be >= 0")
        if not len(ids):
            return
        with self._lock:
            old = self._counts
            merged, inverse = np.unique(np.concatenate([old.ids, ids]), return_inverse=True)
            n = np.zeros(len(merged), dtype=np.int64)
            c = np.zeros(len(merged), dtype=np.int64)
            np.add.at(n, inverse, np.concatenate([old.impressions, shown]))
            np.add.at(c, inverse, np.concatenate([old.clicks, clicked]))
            self._counts = _Counts(merged, n, c)

    def lookup(self, creative_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(impressions, clicks)`` int64 [C] of ``creative_ids`` (0 for an unseen one); clicks
        at most impressions (a click reported before its impression waits for it)."""
        counts = self._counts
        ids = np.asarray(creative_ids, dtype=np.int64)
        if not len(counts.ids):
            zeros = np.zeros(len(ids), dtype=np.int64)
            return zeros, zeros
        at = np.minimum(np.searchsorted(counts.ids, ids), len(counts.ids) - 1)
        found = counts.ids[at] == ids
        n = np.where(found, counts.impressions[at], 0)
        c = np.where(found, counts.clicks[at], 0)
        return n, np.minimum(c, n)

    def copy(self) -> ImpressionCounts:
        """Counts that start where these are and go on apart."""
        other = ImpressionCounts()
        other._counts = self._counts
        return other

    def __len__(self) -> int:
        return len(self._counts.ids)


@dataclass(frozen=True)
class Boost:
    """What one request's auction is given (all float64 [C]): ``pacing`` multiplies the
    candidates' pacing (the estimate's value factor times the exploration boost), ``explore``
    the exploration boost alone (1 where none), which also scales the negative-feedback rate so
    the whole eCPM scales by it."""

    pacing: np.ndarray
    explore: np.ndarray

    def apply(
        self, pacing: np.ndarray | None, p_neg: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The auction's ``pacing`` and ``p_neg`` with the boost in."""
        paced = self.pacing if pacing is None else pacing * self.pacing
        return paced, None if p_neg is None else p_neg * self.explore

    def unboosted(self, winners: np.ndarray, ecpm: np.ndarray) -> np.ndarray:
        """The winners' eCPM at the estimate (the boost taken out)."""
        return ecpm / self.explore[winners]


class ColdStart:
    """The estimate and exploration of the module docstring, over ``counts``."""

    def __init__(
        self, config: ColdStartConfig | None = None, counts: ImpressionCounts | None = None
    ) -> None:
        self.config = config or ColdStartConfig()
        self.counts = counts if counts is not None else ImpressionCounts()

    def exploring(self, request_id: str) -> bool:
        """Whether ``request_id`` is one of the exploring requests (``traffic_share`` of ids)."""
        share = self.config.traffic_share
        return share > 0 and (request_seed("cold-start:" + request_id) >> 11) / 2**53 < share

    def estimate(self, creative_ids: np.ndarray, p_ctr: np.ndarray) -> np.ndarray:
        """The posterior mean click rate of each candidate (float64 [C])."""
        n, c = self.counts.lookup(creative_ids)
        p = np.clip(np.asarray(p_ctr, dtype=np.float64), _P_FLOOR, 1.0 - _P_FLOOR)
        m = self.config.prior_strength
        return (m * p + c) / (m + n)

    def boost(
        self, creative_ids: np.ndarray, objective: np.ndarray, p_ctr: np.ndarray, request_id: str
    ) -> Boost:
        """The factors for one request's candidates (``objective`` int8 [C], ``p_ctr`` [C])."""
        config = self.config
        n, c = self.counts.lookup(creative_ids)
        p = np.clip(np.asarray(p_ctr, dtype=np.float64), _P_FLOOR, 1.0 - _P_FLOOR)
        m = config.prior_strength
        estimate = (m * p + c) / (m + n)
        by_clicks = np.asarray(objective) != Objective.CPM  # CPC and oCPM value the click rate
        value = np.where(by_clicks, estimate / p, 1.0)
        explore = np.ones(len(p))
        new = n < config.min_impressions
        if new.any() and self.exploring(request_id):
            if config.method == "ucb":
                spread = np.sqrt(estimate * (1.0 - estimate) / (m + n))
                upper = estimate + config.confidence * spread
            else:
                rng = np.random.default_rng(request_seed("thompson:" + request_id))
                upper = rng.beta(m * p + c, m * (1.0 - p) + n - c)
            explore = np.where(new, np.clip(upper / estimate, 1.0, config.max_boost), 1.0)
        return Boost(value * explore, explore)
