"""Exploration in selection: which of the auction's best eligible creatives go in each slot,
drawn at random, with the probability of each draw recorded (its *propensity*).

Glossary: the *pool* is the auction's ``pool`` best eligible candidates in rank order (eCPM
descending, the business rules applied); at a slot, the *allowed* set is the pool's creatives
not yet placed whose eCPM is at least ``(1 - max_revenue_loss)`` times the best one left;
a *propensity* is the probability that the creative shown in a slot was drawn there, given the
slots above it (for the first slot, the plain probability).

Two policies:

* :class:`EpsilonGreedy`: with probability ``1 - epsilon`` the best one left, else one of the
  allowed set uniformly (the best included).
* :class:`SoftmaxExploration`: the allowed set drawn with probability proportional to
  ``exp(ecpm / (temperature * best))`` (temperature relative to the best eCPM, so it does not
  depend on the currency).

The revenue bound: no creative outside the allowed set is ever drawn, so every draw has an eCPM
at least ``(1 - max_revenue_loss)`` times the best one left and a slot's expected eCPM is at
least ``(1 - max_revenue_loss)`` times greedy's (``1 - epsilon * max_revenue_loss`` for
epsilon-greedy). An explored creative pays the GSP price of the rank it won in the auction.
Draws are seeded by the request id, so a log can be replayed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


class ExplorationPolicy:
    """Common part: the pool, the revenue bound and the draw of a slate."""

    pool: int
    max_revenue_loss: float

    def _check(self) -> None:
        if isinstance(self.pool, bool) or not isinstance(self.pool, int) or self.pool < 1:
            raise ValueError(f"pool must be an integer >= 1, got {self.pool!r}")
        if not 0.0 <= self.max_revenue_loss <= 1.0:
            raise ValueError(f"max_revenue_loss must be in [0, 1], got {self.max_revenue_loss}")

    def slot_probabilities(self, ecpm: np.ndarray) -> np.ndarray:
        """Probabilities [len(ecpm)] of drawing each of ``ecpm`` (rank order, best first)."""
        raise NotImplementedError

    def allowed(self, ecpm: np.ndarray) -> np.ndarray:
        best = ecpm.max() if len(ecpm) else 0.0
        return ecpm >= (1.0 - self.max_revenue_loss) * best

    def draw(self, ecpm: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions into ``ecpm`` [P] (the pool, rank order) for up to ``k`` slots and each
        draw's propensity given the slots above."""
        rng = np.random.default_rng(seed)
        left = np.arange(len(ecpm))
        chosen, propensity = [], []
        for _ in range(min(k, len(ecpm))):
            p = self.slot_probabilities(ecpm[left])
            pick = int(rng.choice(len(left), p=p))
            chosen.append(int(left[pick]))
            propensity.append(float(p[pick]))
            left = np.delete(left, pick)
        return np.asarray(chosen, dtype=np.int64), np.asarray(propensity, dtype=np.float64)

    def greedy_share(self) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class EpsilonGreedy(ExplorationPolicy):
    epsilon: float
    pool: int = 5
    max_revenue_loss: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        self._check()

    def slot_probabilities(self, ecpm: np.ndarray) -> np.ndarray:
        ecpm = np.asarray(ecpm, dtype=np.float64)
        allowed = self.allowed(ecpm)
        p = np.where(allowed, self.epsilon / max(int(allowed.sum()), 1), 0.0)
        p[int(np.argmax(ecpm))] += 1.0 - self.epsilon
        return p / p.sum()


@dataclass(frozen=True)
class SoftmaxExploration(ExplorationPolicy):
    temperature: float
    pool: int = 5
    max_revenue_loss: float = 0.3

    def __post_init__(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        self._check()

    def slot_probabilities(self, ecpm: np.ndarray) -> np.ndarray:
        ecpm = np.asarray(ecpm, dtype=np.float64)
        allowed = self.allowed(ecpm)
        best = float(ecpm.max()) if len(ecpm) else 1.0
        logits = (ecpm - best) / (self.temperature * max(abs(best), 1e-12))
        weights = np.where(allowed, np.exp(logits), 0.0)
        return weights / weights.sum()


def request_seed(request_id: str) -> int:
    """The exploration draw's seed for a request (the same request id, the same draw)."""
    return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big")
