"""Cold start: a new creative's click rate estimated from the model and its own clicks, and
exploration that gives it a minimum exposure within a bounded share of traffic and revenue.

Glossary: ``C`` candidates of one request; ``n`` a creative's impressions and ``c`` its clicks
so far (:class:`ImpressionCounts`); ``p`` the model's predicted click rate; ``m`` the prior
strength (how many impressions the model's prediction is worth); a creative is *new* while
``n < min_impressions``; an *exploring request* is one of the ``traffic_share`` of requests
picked by a hash of the request id (the same id, the same choice).

The estimate (every request): the creative's mean click rate has a Beta posterior around its
mean predicted rate ``p̄`` (over the times the ranker returned it), ``Beta(m p̄ + c, m (1 - p̄) +
n - c)``; a candidate's estimated rate is the model's ``p`` for this request times the
creative's *correction*, the posterior mean over ``p̄``, ``(m p̄ + c) / ((m + n) p̄)``: the
model's personalization stays, the creative's own clicks correct its level. With no impressions
the correction is 1. The auction values CPC and oCPM candidates at the estimate (a CPM
candidate's value does not depend on its click rate).

Exploration (exploring requests only, new creatives only): the candidate's eCPM is multiplied by
a boost ``b = clip(q / r, 1, 1 / (1 - max_revenue_loss))``, where ``r`` is the posterior mean
and ``q`` its upper confidence bound ``r + z sqrt(r (1 - r) / (m + n))`` (``method="ucb"``, it
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
    """An immutable snapshot: sorted creative ids, their impressions and clicks, and how often
    the ranker returned them and with what predicted click rates (summed)."""

    ids: np.ndarray  # int64 [U], sorted
    impressions: np.ndarray  # int64 [U]
    clicks: np.ndarray  # int64 [U]
    served: np.ndarray  # int64 [U]
    served_p: np.ndarray  # float64 [U]


class ImpressionCounts:
    """Impressions and clicks per creative (:meth:`record`, from events), and the predicted
    click rates the ranker returned them with (:meth:`served`), in process. Writes publish a new
    snapshot; the request path reads one with a ``searchsorted`` and no lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        ints, floats = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        self._counts = _Counts(ints, ints, ints, ints, floats)

    def record(
        self, creative_ids: Iterable[int], impressions: Iterable[int], clicks: Iterable[int]
    ) -> None:
        """Adds ``impressions`` and ``clicks`` (ints >= 0, one per id; ids may repeat)."""
        ids = _ids(creative_ids)
        shown = np.asarray(impressions, dtype=np.int64).ravel()
        clicked = np.asarray(clicks, dtype=np.int64).ravel()
        if not (len(ids) == len(shown) == len(clicked)):
            raise ValueError(
                f"creative_ids, impressions and clicks must have one value per creative, "
                f"got {len(ids)}, {len(shown)} and {len(clicked)}"
            )
        if (shown < 0).any() or (clicked < 0).any():
            raise ValueError("impressions and clicks must be >= 0")
        self._add(ids, impressions=shown, clicks=clicked)

    def served(self, creative_ids: Iterable[int], p_ctr: Iterable[float]) -> None:
        """Tells the counts the ranker returned ``creative_ids`` with predicted click rates
        ``p_ctr`` (one per id): their mean is what an impression of the creative was expected
        to bring in clicks."""
        ids = _ids(creative_ids)
        p = np.asarray(p_ctr, dtype=np.float64).ravel()
        if len(ids) != len(p):
            raise ValueError(
                f"creative_ids and p_ctr must have one value per creative, got {len(ids)} and "
                f"{len(p)}"
            )
        if not np.all((p >= 0) & (p <= 1)):
            raise ValueError("p_ctr must be rates in [0, 1]")
        self._add(ids, served=np.ones(len(ids), dtype=np.int64), served_p=p)

    def _add(self, ids: np.ndarray, **columns: np.ndarray) -> None:
        if not len(ids):
            return
        with self._lock:
            old = self._counts
            merged, inverse = np.unique(np.concatenate([old.ids, ids]), return_inverse=True)
            fields = {}
            for name in ("impressions", "clicks", "served", "served_p"):
                before = getattr(old, name)
                added = columns.get(name, np.zeros(len(ids), dtype=before.dtype))
                total = np.zeros(len(merged), dtype=before.dtype)
                np.add.at(total, inverse, np.concatenate([before, added]))
                fields[name] = total
            self._counts = _Counts(merged, **fields)

    def lookup(self, creative_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(impressions, clicks, mean served rate)`` [C] of ``creative_ids``: 0, 0 and NaN for
        an unseen one; clicks at most impressions (a click reported before its impression waits
        for it); NaN where the ranker never returned the creative."""
        counts = self._counts
        ids = np.asarray(creative_ids, dtype=np.int64)
        if not len(counts.ids):
            zeros = np.zeros(len(ids), dtype=np.int64)
            return zeros, zeros, np.full(len(ids), np.nan)
        at = np.minimum(np.searchsorted(counts.ids, ids), len(counts.ids) - 1)
        found = counts.ids[at] == ids
        n = np.where(found, counts.impressions[at], 0)
        c = np.where(found, counts.clicks[at], 0)
        served = np.where(found, counts.served[at], 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(served > 0, counts.served_p[at] / served, np.nan)
        return n, np.minimum(c, n), mean

    def copy(self) -> ImpressionCounts:
        """Counts that start where these are and go on apart."""
        other = ImpressionCounts()
        other._counts = self._counts
        return other

    def __len__(self) -> int:
        return len(self._counts.ids)


def _ids(creative_ids: Iterable[int]) -> np.ndarray:
    ids = creative_ids if isinstance(creative_ids, np.ndarray) else list(creative_ids)
    return np.asarray(ids, dtype=np.int64).ravel()


@dataclass(frozen=True)
class Boost:
    """What one request's auction is given (all float64 [C]): ``pacing`` multiplies the
    candidates' pacing (the estimate's value factor times the exploration boost), ``explore``
    the exploration boost alone (1 where none), which also scales the negative-feedback rate so
    the whole eCPM scales by it."""

    pacing: np.ndarray
    explore: np.ndarray
    creative_ids: np.ndarray | None = None  # int64 [C]
    p_ctr: np.ndarray | None = None  # float [C]: the model's
    counts: ImpressionCounts | None = None  # told what was served (None: nothing)

    def apply(
        self, pacing: np.ndarray | None, p_neg: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The auction's ``pacing`` and ``p_neg`` with the boost in."""
        paced = self.pacing if pacing is None else pacing * self.pacing
        return paced, None if p_neg is None else p_neg * self.explore

    def selected(self, winners: np.ndarray, ecpm: np.ndarray) -> np.ndarray:
        """The winners' eCPM at the estimate (the boost taken out); tells the counts the
        winners were served, with their predicted click rates."""
        if self.counts is not None:
            self.counts.served(self.creative_ids[winners], self.p_ctr[winners])
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
        """The estimated click rate of each candidate (float64 [C]): the model's ``p_ctr``
        times the creative's correction (see the module docstring)."""
        p = _rates(p_ctr)
        correction, _, _ = self._posterior(creative_ids, p)
        return p * correction

    def _posterior(
        self, creative_ids: np.ndarray, p: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """``(correction, new, (alpha, beta))`` [C]: the estimate over the model, whether each
        candidate is new, and the Beta posterior of the creative's mean click rate."""
        n, c, served = self.counts.lookup(creative_ids)
        mean_p = np.where(np.isnan(served), p, np.clip(served, _P_FLOOR, 1.0 - _P_FLOOR))
        m = self.config.prior_strength
        alpha, beta = m * mean_p + c, m * (1.0 - mean_p) + n - c
        correction = alpha / ((m + n) * mean_p)
        return correction, n < self.config.min_impressions, (alpha, beta)

    def boost(
        self, creative_ids: np.ndarray, objective: np.ndarray, p_ctr: np.ndarray, request_id: str
    ) -> Boost:
        """The factors for one request's candidates (``objective`` int8 [C], ``p_ctr`` [C])."""
        config = self.config
        ids = np.asarray(creative_ids, dtype=np.int64)
        p = _rates(p_ctr)
        correction, new, (alpha, beta) = self._posterior(ids, p)
        by_clicks = np.asarray(objective) != Objective.CPM  # CPC and oCPM value the click rate
        value = np.where(by_clicks, correction, 1.0)
        explore = np.ones(len(p))
        if new.any() and self.exploring(request_id):
            mean = alpha / (alpha + beta)
            if config.method == "ucb":
                upper = mean + config.confidence * np.sqrt(mean * (1.0 - mean) / (alpha + beta))
            else:
                rng = np.random.default_rng(request_seed("thompson:" + request_id))
                upper = rng.beta(alpha, beta)
            explore = np.where(new, np.clip(upper / mean, 1.0, config.max_boost), 1.0)
        return Boost(value * explore, explore, ids, p, self.counts)


def _rates(p_ctr: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(p_ctr, dtype=np.float64), _P_FLOOR, 1.0 - _P_FLOOR)
