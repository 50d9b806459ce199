"""Off-policy evaluation of slates: what a target ranking would have earned over all ``k`` slots
of a response, from a log of an exploring policy's slates.

Glossary, per logged request ``i`` of ``n``: the *pool* (``P`` creatives, rank order) is what
the logging policy drew from (the request log's ``pool_*`` columns); a *slate* ``s`` is the
pool positions shown in slots ``1..k`` (``-1``: the slot is empty); the *target* ``t`` is the
slate the evaluated policy shows (deterministic: a ranking), with ``OUTSIDE`` for a creative
not in the pool (the log cannot say what it earns); the *per-slot propensity* (what a response
records) is the probability of a slot's draw given the slots above; the *marginal*
``mu_j(a)`` the probability that the logging policy puts pool creative ``a`` in slot ``j`` at
all (summed over every way of filling the slots above); ``r_j`` the reward observed in slot
``j`` (its clicks, or its revenue), ``R = sum_j r_j`` the slate's.

The assumption (additive reward, the item-position model): a slate earns the sum over its slots
of what each slot earns, and a slot's reward depends only on the context, the slot and the
creative in it: ``E[R | s] = sum_j phi(j, s_j)``. A position-based click model (a slot is seen
with a probability that falls with the slot, a seen ad is clicked at its own rate) is one such;
it excludes interactions between slots (a click above ending the session, two similar ads
taking each other's clicks). Under it:

* ``IP``     item-position IPS, ``mean_i sum_j 1[s_j = t_j] / mu_j(s_j) r_j`` (Li et al. 2018):
  unbiased where ``mu_j(t_j) > 0``; needs the per-slot rewards.
* ``SNIP``   IP self-normalized slot by slot: slot ``j``'s weights are rescaled to their
  known mean (the share of requests whose target slot ``j`` the logging policy can fill), a
  little bias for much less variance, as SNIPS.
* ``PI``     the pseudo-inverse estimator of Swaminathan et al. 2017 (*Off-policy evaluation
  for slate recommendation*): ``mean_i R * q^T Gamma^+ 1_s``, with ``1_s`` the slate's
  slot-by-creative indicators ``[k * P]``, ``Gamma = E_mu[1_s 1_s^T]`` and ``q = 1_t``.
  Needs only the slate's reward ``R``; unbiased where ``q`` is in the range of ``Gamma``.

``slate IPS`` (``1[s = t] / mu(s) R``, ``mu(s)`` the product of the per-slot propensities) is
reported beside them: it assumes nothing, and its variance grows with the number of slates.

The marginals and ``Gamma`` come from enumerating the logging policy's draws over the pool
(:func:`slate_distribution`: at most ``P! / (P - k)!`` slates, a few hundred for the pools
exploration uses), so the pool's eCPMs and the policy are all a log needs to keep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adrank.experiments.exploration import ExplorationPolicy
from adrank.experiments.off_policy import OffPolicyEstimate, effective_sample_size

EMPTY, OUTSIDE = -1, -2  # a slot shows nothing; the target's creative is not in the pool
ESTIMATORS = ("slate IPS", "IP", "SNIP", "PI")


@dataclass(frozen=True)
class SlateDistribution:
    """Every slate a logging policy can draw from one pool, and what the estimators need."""

    slates: np.ndarray  # int64 [S, k]: pool positions per slot (EMPTY past the pool's size)
    probability: np.ndarray  # float64 [S]: sums to 1
    pool: int  # P

    @property
    def k(self) -> int:
        return self.slates.shape[1]

    def indicators(self) -> np.ndarray:
        """float64 [S, k * P]: slot-by-creative indicators of each slate."""
        return _indicators(self.slates, self.pool)

    def marginals(self) -> np.ndarray:
        """float64 [k, P]: the probability of each pool creative in each slot."""
        return (self.probability @ self.indicators()).reshape(self.k, self.pool)

    def gamma(self) -> np.ndarray:
        """float64 [k * P, k * P]: ``E[1_s 1_s^T]``, the slot pairs' joint marginals."""
        x = self.indicators()
        return x.T @ (x * self.probability[:, None])

    def pi_coefficients(self, target: Sequence[int]) -> np.ndarray:
        """float64 [k, P]: ``Gamma^+ 1_t`` reshaped, so that the PI weight of a logged slate
        ``s`` is ``sum_j coefficients[j, s_j]``; the target's creatives outside the pool
        (OUTSIDE) and its empty slots add nothing to ``1_t``."""
        t = _target_row(target, self.k, self.pool)
        q = _indicators(np.where(t >= 0, t, EMPTY)[None, :], self.pool)[0]
        return (np.linalg.pinv(self.gamma(), hermitian=True) @ q).reshape(self.k, self.pool)

    def in_range(self, target: Sequence[int], tol: float = 1e-8) -> bool:
        """Whether ``1_t`` lies in the range of ``Gamma`` (PI is then unbiased for it)."""
        t = _target_row(target, self.k, self.pool)
        if (t == OUTSIDE).any():
            return False
        q = _indicators(t[None, :], self.pool)[0]
        gamma = self.gamma()
        projected = gamma @ (np.linalg.pinv(gamma, hermitian=True) @ q)
        return bool(np.abs(projected - q).max() <= tol)


def slate_distribution(
    policy: ExplorationPolicy, ecpm: Sequence[float], k: int
) -> SlateDistribution:
    """The slates ``policy`` draws for ``k`` slots from a pool with eCPMs ``ecpm`` [P] (rank
    order), as :meth:`ExplorationPolicy.draw` draws them, with their probabilities."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    ecpm = np.asarray(ecpm, dtype=np.float64)
    if ecpm.ndim != 1 or not len(ecpm):
        raise ValueError("ecpm must be a non-empty 1-D array (the pool's eCPMs)")
    depth = min(k, len(ecpm))
    slates: list[list[int]] = []
    probability: list[float] = []

    def walk(left: np.ndarray, prefix: list[int], p: float) -> None:
        if len(prefix) == depth:
            slates.append(prefix + [EMPTY] * (k - depth))
            probability.append(p)
            return
        draw = policy.slot_probabilities(ecpm[left])
        for pick in np.flatnonzero(draw > 0):
            walk(np.delete(left, pick), [*prefix, int(left[pick])], p * float(draw[pick]))

    walk(np.arange(len(ecpm)), [], 1.0)
    return SlateDistribution(np.asarray(slates, dtype=np.int64), np.asarray(probability), len(ecpm))


def _indicators(slates: np.ndarray, pool: int) -> np.ndarray:
    count, k = slates.shape
    out = np.zeros((count, k * pool))
    rows, slots = np.nonzero(slates >= 0)
    out[rows, slots * pool + slates[rows, slots]] = 1.0
    return out


def _target_row(target: Sequence[int], k: int, pool: int) -> np.ndarray:
    t = np.asarray(target, dtype=np.int64)
    if t.shape != (k,):
        raise ValueError(f"target must have one entry per slot ({k}), got shape {t.shape}")
    if ((t < OUTSIDE) | (t >= pool)).any():
        raise ValueError(f"target entries must be pool positions in [0, {pool}), -1 or -2")
    return t


# --- the estimators -----------------------------------------------------------------------


@dataclass(frozen=True)
class SlateWeights:
    """Per request, the estimators' weights of its logged slate against the target."""

    slot: np.ndarray  # float64 [n, k]: IP's 1[s_j = t_j] / mu_j(s_j)
    slot_mean: np.ndarray  # float64 [k]: the slot weights' known mean (SNIP's normalizer)
    slate: np.ndarray  # float64 [n]: slate IPS's 1[s = t] / mu(s)
    pi: np.ndarray | None  # float64 [n]: PI's q^T Gamma^+ 1_s (None: not asked for)


def slate_weights(
    shown,
    target,
    marginal,
    slate_propensity,
    pi_coefficients=None,
) -> SlateWeights:
    """The weights of ``n`` logged slates.

    ``shown``, ``target``: int [n, k] pool positions (EMPTY; OUTSIDE in ``target``);
    ``marginal``: float [n, k, P] the logging policy's ``mu_j(a)``; ``slate_propensity``:
    float [n] the probability of the logged slate (the product of its per-slot propensities);
    ``pi_coefficients``: float [n, k, P] (:meth:`SlateDistribution.pi_coefficients`), for PI.
    """
    shown = _ints("shown", shown)
    target = _ints("target", target)
    marginal = np.asarray(marginal, dtype=np.float64)
    n, k = shown.shape
    if target.shape != (n, k):
        raise ValueError(f"target must have shown's shape {shown.shape}, got {target.shape}")
    if marginal.ndim != 3 or marginal.shape[:2] != (n, k):
        raise ValueError(f"marginal must have shape (n, k, P) = ({n}, {k}, P)")
    pool = marginal.shape[2]
    if not np.isfinite(marginal).all() or ((marginal < 0) | (marginal > 1 + 1e-9)).any():
        raise ValueError("marginal must be probabilities in [0, 1]")
    if (shown < EMPTY).any() or (shown >= pool).any():
        raise ValueError(f"shown entries must be pool positions in [0, {pool}) or -1")
    if (target < OUTSIDE).any() or (target >= pool).any():
        raise ValueError(f"target entries must be pool positions in [0, {pool}), -1 or -2")
    propensity = np.asarray(slate_propensity, dtype=np.float64)
    if propensity.shape != (n,) or not np.isfinite(propensity).all():
        raise ValueError(f"slate_propensity must be {n} finite numbers")
    if (propensity <= 0).any() or (propensity > 1 + 1e-9).any():
        raise ValueError("slate_propensity must be in (0, 1] (a shown slate had some chance)")
    rows, slots = np.indices((n, k))
    mu_shown = np.where(shown >= 0, marginal[rows, slots, np.maximum(shown, 0)], 1.0)
    if (mu_shown <= 0).any():
        raise ValueError("marginal must be > 0 where a creative was shown")
    match = (shown == target) & (shown >= 0)
    slot = np.where(match, 1.0 / mu_shown, 0.0)
    mu_target = np.where(target >= 0, marginal[rows, slots, np.maximum(target, 0)], 0.0)
    slot_mean = (mu_target > 0).mean(axis=0)
    slate = np.where((shown == target).all(axis=1), 1.0 / propensity, 0.0)
    pi = None
    if pi_coefficients is not None:
        coefficients = np.asarray(pi_coefficients, dtype=np.float64)
        if coefficients.shape != marginal.shape or not np.isfinite(coefficients).all():
            raise ValueError(
                f"pi_coefficients must be finite, of marginal's shape {marginal.shape}"
            )
        pi = np.where(shown >= 0, coefficients[rows, slots, np.maximum(shown, 0)], 0.0).sum(1)
    return SlateWeights(slot, slot_mean, slate, pi)


def _ints(name: str, values) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"{name} must be a 2-D integer array [n, k]")
    return array.astype(np.int64, copy=False)


def _rewards(slot_reward, shape: tuple[int, int]) -> np.ndarray:
    reward = np.asarray(slot_reward, dtype=np.float64)
    if reward.shape != shape:
        raise ValueError(f"slot_reward must have shape {shape}, got {reward.shape}")
    if not np.isfinite(reward).all():
        raise ValueError("slot_reward must be finite")
    return reward


def evaluate_slates(
    slot_reward,
    weights: SlateWeights,
    n_boot: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, OffPolicyEstimate]:
    """slate IPS, IP, SNIP and (with PI coefficients) PI of the target's reward per request,
    with percentile bootstrap intervals over requests; ``slot_reward``: float [n, k]."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n, k = weights.slot.shape
    if n == 0:
        raise ValueError("slot_reward must not be empty")
    reward = _rewards(slot_reward, (n, k))
    total = reward.sum(axis=1)
    per_request = {
        "slate IPS": (weights.slate * total, weights.slate),
        "IP": ((weights.slot * reward).sum(axis=1), weights.slot.mean(axis=1)),
    }
    if weights.pi is not None:
        per_request["PI"] = (weights.pi * total, weights.pi)
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    quantiles = (alpha / 2, 1 - alpha / 2)
    out = {}
    for name, (values, w) in per_request.items():
        low, high = np.quantile(values[draws].mean(axis=1), quantiles)
        ess = effective_sample_size(w)
        out[name] = OffPolicyEstimate(name, float(values.mean()), float(low), float(high), ess)
    value = _snip(weights.slot, reward, weights.slot_mean)
    boot = np.array([_snip(weights.slot[d], reward[d], weights.slot_mean) for d in draws])
    boot = boot[np.isfinite(boot)]
    low, high = np.quantile(boot, quantiles) if len(boot) else (np.nan, np.nan)
    ess = effective_sample_size(weights.slot.mean(axis=1))
    out["SNIP"] = OffPolicyEstimate("SNIP", value, float(low), float(high), ess)
    return {name: out[name] for name in ESTIMATORS if name in out}


def _snip(w: np.ndarray, reward: np.ndarray, mean: np.ndarray) -> float:
    """Slot by slot, ``sum w r / sum w`` times the weights' known mean; nan where a slot the
    target fills has no weight at all in the sample."""
    totals = w.sum(axis=0)
    if ((totals == 0) & (mean > 0)).any():
        return float("nan")
    ratio = np.divide((w * reward).sum(axis=0), totals, out=np.zeros(len(totals)), where=totals > 0)
    return float((ratio * mean).sum())
