"""Slate off-policy evaluation checked in the simulated world, where the truth is known: the
``k``-slot counterpart of :mod:`adrank.simulation.off_policy`.

Glossary: ``n`` logged requests of ``k`` slots; the *pool* (``P``) is the logging policy's
eligible creatives it draws the slots from; the *target* is the ranking evaluated (another
scoring setting, or no exploration), a deterministic slate; *examination* ``theta_j`` the
probability that slot ``j`` is seen (:data:`EXAMINATION`).

The world's click model is position-based: a creative in slot ``j`` is clicked with
probability ``theta_j * p_ctr`` (its rate from the world's model, as in
:mod:`adrank.simulation.replay`), independently of the other slots, and a slot bills as
:func:`adrank.simulation.world.charges` says (per click, or per impression). The reward is
therefore additive over slots, the assumption of the slate estimators
(:mod:`adrank.experiments.slate_off_policy`); the estimators are not told ``theta``.

1. Each request is ranked once through the real :class:`~adrank.orchestrator.ranker.Ranker`
   with the logging policy's exploration (its pool; every slate it can draw, enumerated, with
   its probability), and once with the target's settings (the target's slate).
2. Per seed, the logged slates and the clicks are sampled afresh and the estimators give the
   target's clicks and revenue per request, with bootstrap intervals.
3. Over the seeds: how often each interval covers the truth, the bias and the variance.

As in the one-slot case, revenue is at the logged GSP prices where the target's creative is in
the pool, and the target run online (:func:`online_slate_value`) checks the truth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adrank.experiments.exploration import ExplorationPolicy
from adrank.experiments.slate_off_policy import (
    EMPTY,
    OUTSIDE,
    evaluate_slates,
    slate_distribution,
    slate_weights,
)
from adrank.orchestrator.ranker import Ranker
from adrank.orchestrator.request import RankResponse
from adrank.orchestrator.scoring import ScoringConfig
from adrank.simulation.off_policy import (
    METRICS,
    CoverageRow,
    coverage_rows,
    coverage_table,
    objective_of,
    online_value,
)
from adrank.simulation.world import DAY_START, SyntheticWorld, charges

EXAMINATION = (1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.13, 0.1)  # theta_j: slot j is seen


@dataclass(frozen=True)
class LoggedSlates:
    """Per request: every slate the logging policy could draw, the pool, and the target."""

    slates: np.ndarray  # int64 [n, S, k]: pool positions (EMPTY), padded with probability 0
    probability: np.ndarray  # float64 [n, S]
    marginal: np.ndarray  # float64 [n, k, P]: mu_j(a)
    pi_coefficients: np.ndarray  # float64 [n, k, P]: Gamma^+ 1_t, for PI
    p_ctr: np.ndarray  # float64 [n, P]
    charge_per_click: np.ndarray  # float64 [n, P]
    charge_fixed: np.ndarray  # float64 [n, P]
    target: np.ndarray  # int64 [n, k]: pool positions, EMPTY, OUTSIDE
    target_value: dict[str, np.ndarray]  # metric -> float64 [n]
    pi_in_range: np.ndarray  # bool [n]: PI is unbiased for the request's target

    def truth(self) -> dict[str, float]:
        return {m: float(v.mean()) for m, v in self.target_value.items()}

    @property
    def support(self) -> float:
        """Share of the target's shown slots the logging policy can fill with its creative."""
        rows, slots = np.indices(self.target.shape)
        mu = self.marginal[rows, slots, np.maximum(self.target, 0)]
        shown = self.target != EMPTY
        return float(((mu > 0) & (self.target >= 0))[shown].mean()) if shown.any() else 1.0


def examination(k: int) -> np.ndarray:
    if not 1 <= k <= len(EXAMINATION):
        raise ValueError(f"k must be in [1, {len(EXAMINATION)}], got {k}")
    return np.asarray(EXAMINATION[:k])


def log_slates(
    world: SyntheticWorld,
    ranker: Ranker,
    logging: ExplorationPolicy,
    target_scoring: ScoringConfig | None,
    requests: int,
    k: int = 3,
    seed: int = 0,
    candidates: int = 50,
) -> LoggedSlates:
    """Ranks ``requests`` requests of ``k`` slots under the logging policy and the target."""
    theta = examination(k)
    rng = np.random.default_rng(seed)
    width = logging.pool
    per_request = []
    for i in range(requests):
        request = world.request(rng, f"slate{seed}-{i}", DAY_START, candidates, k)
        logged = ranker.rank(dataclasses.replace(request, exploration=logging))
        chosen = ranker.rank(
            request
            if target_scoring is None
            else dataclasses.replace(request, scoring=target_scoring)
        )
        per_request.append(_one_request(world, logging, logged, chosen, k, width, theta))
    most = max(len(r["probability"]) for r in per_request)
    slates = np.full((requests, most, k), EMPTY, dtype=np.int64)
    probability = np.zeros((requests, most))
    for i, r in enumerate(per_request):
        slates[i, : len(r["probability"])] = r["slates"]
        probability[i, : len(r["probability"])] = r["probability"]

    def stack(name: str) -> np.ndarray:
        return np.stack([r[name] for r in per_request])

    return LoggedSlates(
        slates=slates,
        probability=probability,
        marginal=stack("marginal"),
        pi_coefficients=stack("pi_coefficients"),
        p_ctr=stack("p_ctr"),
        charge_per_click=stack("per_click"),
        charge_fixed=stack("fixed"),
        target=stack("target"),
        target_value={m: np.array([r["value"][m] for r in per_request]) for m in METRICS},
        pi_in_range=np.array([r["in_range"] for r in per_request]),
    )


def _one_request(
    world: SyntheticWorld,
    logging: ExplorationPolicy,
    logged: RankResponse,
    chosen: RankResponse,
    k: int,
    width: int,
    theta: np.ndarray,
) -> dict:
    pool = logged.pool
    size = len(pool["creative_id"])
    p_ctr, per_click, fixed = np.zeros(width), np.zeros(width), np.zeros(width)
    target = np.full(k, EMPTY, dtype=np.int64)
    target[: min(k, len(chosen))] = OUTSIDE  # until found in the pool
    if size:
        p_ctr[:size] = pool["p_ctr"]
        per_click[:size], fixed[:size] = charges(
            pool["objective"], pool["price"], pool["p_ctr"], pool["p_cvr"]
        )
        where = {int(c): j for j, c in enumerate(pool["creative_id"])}
        for j, creative in enumerate(chosen.creative_id[:k]):
            target[j] = where.get(int(creative), OUTSIDE)
        distribution = slate_distribution(logging, pool["ecpm"], k)
        slates = distribution.slates
        marginal = np.zeros((k, width))
        marginal[:, :size] = distribution.marginals()
        coefficients = np.zeros((k, width))
        coefficients[:, :size] = distribution.pi_coefficients(target)
        in_range = distribution.in_range(target)
        probability = distribution.probability
    else:  # no eligible creative: the logging policy shows nothing, with probability 1
        slates = np.full((1, k), EMPTY, dtype=np.int64)
        probability = np.ones(1)
        marginal, coefficients = np.zeros((k, width)), np.zeros((k, width))
        in_range = not len(chosen)
    # The target's expected reward: at the logged prices for its creatives in the pool, at its
    # own for the others (the log cannot show those; they count against support).
    own_click, own_fixed = charges(
        np.asarray([objective_of(world, c) for c in chosen.campaign_id[:k]], dtype=np.int64),
        chosen.price[:k],
        chosen.p_ctr[:k].astype(np.float64),
        chosen.p_cvr[:k].astype(np.float64),
    )
    value = {"clicks": 0.0, "revenue": 0.0}
    for j in range(min(k, len(chosen))):
        at = target[j]
        ctr = p_ctr[at] if at >= 0 else float(chosen.p_ctr[j])
        click_charge, impression = (
            (per_click[at], fixed[at]) if at >= 0 else (own_click[j], own_fixed[j])
        )
        value["clicks"] += theta[j] * ctr
        value["revenue"] += click_charge * theta[j] * ctr + impression
    return {
        "slates": slates,
        "probability": probability,
        "marginal": marginal,
        "pi_coefficients": coefficients,
        "p_ctr": p_ctr,
        "per_click": per_click,
        "fixed": fixed,
        "target": target,
        "value": value,
        "in_range": in_range,
    }


def slate_coverage(
    logged: LoggedSlates, seeds: Sequence[int], n_boot: int = 300
) -> list[CoverageRow]:
    """Steps 2 and 3 of the module docstring, one row per metric and estimator."""
    truth = logged.truth()
    n, _, k = logged.slates.shape
    theta = examination(k)
    rows = np.arange(n)
    estimates: dict[tuple[str, str], list] = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        pick = (rng.random((n, 1)) < logged.probability.cumsum(axis=1)).argmax(axis=1)
        shown = logged.slates[rows, pick]
        weights = slate_weights(
            shown,
            logged.target,
            logged.marginal,
            logged.probability[rows, pick],
            logged.pi_coefficients,
        )
        at = np.maximum(shown, 0)
        filled = shown >= 0
        ctr = np.where(filled, np.take_along_axis(logged.p_ctr, at, axis=1), 0.0)
        clicked = rng.random(shown.shape) < theta * ctr
        per_click = np.take_along_axis(logged.charge_per_click, at, axis=1)
        fixed = np.take_along_axis(logged.charge_fixed, at, axis=1)
        rewards = {
            "clicks": clicked.astype(np.float64),
            "revenue": np.where(filled, per_click * clicked + fixed, 0.0),
        }
        for metric in METRICS:
            result = evaluate_slates(rewards[metric], weights, n_boot=n_boot, seed=seed)
            for name, estimate in result.items():
                estimates.setdefault((metric, name), []).append(estimate)
    return coverage_rows(estimates, truth)


def online_slate_value(
    world: SyntheticWorld,
    ranker: Ranker,
    target_scoring: ScoringConfig | None,
    requests: int,
    k: int = 3,
    seed: int = 0,
    candidates: int = 50,
) -> dict[str, float]:
    """The target run online on fresh requests, its ``k`` slots seen as :data:`EXAMINATION`
    says: realized clicks and revenue per request."""
    return online_value(
        world, ranker, target_scoring, requests, seed, candidates, examination=examination(k)
    )


def slate_markdown(rows: Sequence[CoverageRow], logged: LoggedSlates) -> str:
    return (
        f"Target's slots the logging policy can fill with its creative: {logged.support:.1%}; "
        f"requests whose target is in the range of Gamma (PI unbiased): "
        f"{logged.pi_in_range.mean():.1%}.\n\n{coverage_table(rows)}"
    )
