"""Off-policy evaluation checked in the simulated world, where the truth is known.

Glossary: ``n`` logged requests (one ad slot each, ``k = 1``: a contextual bandit); the *pool*
of a request is the logging policy's eligible candidates it may draw from; the *target* is the
policy evaluated (another ranking setting, or no exploration at all); the *truth* is the
target's expected reward over the same requests, computed from the world's true rates (the
model's rates are the world's truth, as in :mod:`adrank.simulation.replay`).

1. Each request is ranked once through the real :class:`~adrank.orchestrator.ranker.Ranker`
   with the logging policy's exploration (its pool and its draw probabilities), and once with
   the target's settings (the target's choice and price).
2. Per seed, the logging policy's draws and the clicks are sampled afresh, and IPS, SNIPS and
   DR (:mod:`adrank.experiments.off_policy`) estimate the target's clicks and revenue per
   request, with bootstrap intervals. DR's reward model is deliberately miscalibrated
   (``REWARD_MODEL_BIAS``), as a real one is.
3. Over the seeds: how often each interval covers the truth, the bias and the variance.

The target is also run *online* on fresh requests (:func:`online_value`): the realized value
of that run should agree with the truth. Revenue is the charge of the slot (CPM price/1000,
CPC price per click, oCPM price x pCTR x pCVR). A logged action earns at its logged GSP price,
which depends on the logging policy's ranking; a target that ranks differently would price
differently, which no log of the logging policy shows. The truth is therefore the target's
revenue at the logged prices, and the gap to its revenue at its own prices is reported apart
(``own_price_revenue``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adrank.experiments.exploration import ExplorationPolicy
from adrank.experiments.off_policy import evaluate
from adrank.orchestrator.ranker import Ranker
from adrank.orchestrator.scoring import ScoringConfig
from adrank.simulation.world import DAY_START, SyntheticWorld, charges

REWARD_MODEL_BIAS = 1.25  # DR's reward model over-predicts rates by 25 %
METRICS = ("clicks", "revenue")
NO_AD, OUTSIDE = -1, -2  # the target shows nothing; the target's ad is not in the pool


@dataclass(frozen=True)
class LoggedContexts:
    """Per request: the logging pool (padded to ``P`` with probability 0) and the target."""

    probability: np.ndarray  # float64 [n, P]: logging policy's draw probabilities
    p_ctr: np.ndarray  # float64 [n, P]
    charge_per_click: np.ndarray  # float64 [n, P]: revenue per click (CPC), else 0
    charge_fixed: np.ndarray  # float64 [n, P]: revenue per impression (CPM, oCPM)
    target: np.ndarray  # int64 [n]: the target's choice in the pool; NO_AD; OUTSIDE the pool
    target_value: dict[str, np.ndarray]  # metric -> float64 [n]: expected reward of the target
    own_price_revenue: np.ndarray  # float64 [n]: the target's revenue at its own GSP prices

    def truth(self) -> dict[str, float]:
        return {m: float(v.mean()) for m, v in self.target_value.items()}

    @property
    def support(self) -> float:
        """Share of requests where the logging policy could take the target's choice."""
        return float(np.mean(self.target != OUTSIDE))


def log_contexts(
    world: SyntheticWorld,
    ranker: Ranker,
    logging: ExplorationPolicy,
    target_scoring: ScoringConfig | None,
    requests: int,
    seed: int = 0,
    candidates: int = 50,
) -> LoggedContexts:
    """Ranks ``requests`` requests under the logging policy and the target (step 1)."""
    rng = np.random.default_rng(seed)
    width = logging.pool
    shape = (requests, width)
    probability, p_ctr = np.zeros(shape), np.zeros(shape)
    per_click, fixed = np.zeros(shape), np.zeros(shape)
    target = np.full(requests, NO_AD, dtype=np.int64)
    value = {m: np.zeros(requests) for m in METRICS}
    own_price = np.zeros(requests)
    for i in range(requests):
        request = world.request(rng, f"ope{seed}-{i}", DAY_START, candidates, 1)
        logged = ranker.rank(dataclasses.replace(request, exploration=logging))
        pool = logged.pool
        size = len(pool["creative_id"])
        if size:
            probability[i, :size] = logging.slot_probabilities(pool["ecpm"])
            p_ctr[i, :size] = pool["p_ctr"]
            per_click[i, :size], fixed[i, :size] = charges(
                pool["objective"], pool["price"], pool["p_ctr"], pool["p_cvr"]
            )
        chosen = ranker.rank(
            request
            if target_scoring is None
            else dataclasses.replace(request, scoring=target_scoring)
        )
        if not len(chosen):
            continue  # no ad: reward 0 whatever the log shows; no logged action matches
        where = np.flatnonzero(pool["creative_id"] == chosen.creative_id[0]) if size else []
        target[i] = int(where[0]) if len(where) else OUTSIDE
        click, one = charges(
            np.asarray([objective_of(world, chosen.campaign_id[0])]),
            chosen.price[:1],
            chosen.p_ctr[:1].astype(np.float64),
            chosen.p_cvr[:1].astype(np.float64),
        )
        value["clicks"][i] = float(chosen.p_ctr[0])
        own_price[i] = float(click[0] * chosen.p_ctr[0] + one[0])
        at = target[i]  # revenue at the logged price where the log has the ad: estimable
        value["revenue"][i] = (
            own_price[i] if at < 0 else per_click[i, at] * p_ctr[i, at] + fixed[i, at]
        )
    return LoggedContexts(probability, p_ctr, per_click, fixed, target, value, own_price)


def objective_of(world: SyntheticWorld, campaign: int) -> int:
    """The objective of ``campaign`` in the world's catalog."""
    rows = np.flatnonzero(world.catalog.campaign_id == campaign)
    return int(world.catalog.objective[rows[0]])


@dataclass(frozen=True)
class CoverageRow:
    metric: str
    estimator: str
    truth: float
    mean_estimate: float
    bias: float
    std: float
    coverage: float
    mean_ess: float
    seeds: int


def coverage_rows(
    estimates: dict[tuple[str, str], list], truth: dict[str, float]
) -> list[CoverageRow]:
    """Step 3 of the module docstring: per (metric, estimator), the estimates over the seeds
    against the truth."""
    rows = []
    for (metric, name), found in estimates.items():
        values = np.array([e.value for e in found])
        rows.append(
            CoverageRow(
                metric=metric,
                estimator=name,
                truth=truth[metric],
                mean_estimate=float(values.mean()),
                bias=float(values.mean() - truth[metric]),
                std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                coverage=float(np.mean([e.covers(truth[metric]) for e in found])),
                mean_ess=float(np.mean([e.effective_sample_size for e in found])),
                seeds=len(found),
            )
        )
    return rows


def coverage_table(rows: Sequence[CoverageRow]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| metric | estimator | truth | mean estimate | bias | std | coverage | mean ESS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.metric} | {r.estimator} | {r.truth:.5f} | {r.mean_estimate:.5f} | "
            f"{r.bias:+.5f} | {r.std:.5f} | {r.coverage:.0%} ({r.seeds} seeds) | "
            f"{r.mean_ess:.0f} |"
        )
    return "\n".join(lines) + "\n"


def coverage(
    contexts: LoggedContexts, seeds: Sequence[int], n_boot: int = 300
) -> list[CoverageRow]:
    """Steps 2 and 3 of the module docstring, one row per metric and estimator."""
    truth = contexts.truth()
    n = len(contexts.probability)
    estimates: dict[tuple[str, str], list] = {}
    has_pool = contexts.probability.sum(axis=1) > 0
    for seed in seeds:
        rng = np.random.default_rng(seed)
        cumulative = contexts.probability.cumsum(axis=1)
        action = (rng.random((n, 1)) < cumulative).argmax(axis=1)
        rows = np.arange(n)
        propensity = np.where(has_pool, contexts.probability[rows, action], 1.0)
        # "No ad" is an action too: taken with probability 1 where the pool is empty.
        pi = np.where(has_pool, contexts.target == action, contexts.target == NO_AD).astype(
            np.float64
        )
        shown_ctr = np.where(has_pool, contexts.p_ctr[rows, action], 0.0)
        clicked = rng.random(n) < shown_ctr
        rewards = {
            "clicks": clicked.astype(np.float64),
            "revenue": contexts.charge_per_click[rows, action] * clicked
            + contexts.charge_fixed[rows, action],
        }
        model_ctr = np.minimum(contexts.p_ctr * REWARD_MODEL_BIAS, 1.0)
        q_all = {
            "clicks": model_ctr,
            "revenue": contexts.charge_per_click * model_ctr + contexts.charge_fixed,
        }
        for metric in METRICS:
            reward = np.where(has_pool, rewards[metric], 0.0)
            q = q_all[metric]
            in_pool = contexts.target >= 0
            v = np.where(in_pool, q[rows, np.maximum(contexts.target, 0)], 0.0)
            result = evaluate(reward, propensity, pi, q[rows, action], v, n_boot=n_boot, seed=seed)
            for name, estimate in result.items():
                estimates.setdefault((metric, name), []).append(estimate)
    return coverage_rows(estimates, truth)


def online_value(
    world: SyntheticWorld,
    ranker: Ranker,
    target_scoring: ScoringConfig | None,
    requests: int,
    seed: int,
    candidates: int = 50,
    examination: Sequence[float] = (1.0,),
) -> dict[str, float]:
    """The target run online on fresh requests: realized clicks and revenue per request.

    ``examination`` is the probability that each slot is seen (one slot by default); a shown
    creative in slot ``j`` is clicked with probability ``examination[j] * p_ctr``."""
    theta = np.asarray(examination, dtype=np.float64)
    k = len(theta)
    rng = np.random.default_rng(seed)
    clicks = revenue = 0.0
    for i in range(requests):
        request = world.request(rng, f"online{seed}-{i}", DAY_START, candidates, k)
        if target_scoring is not None:
            request = dataclasses.replace(request, scoring=target_scoring)
        response = ranker.rank(request)
        shown = min(k, len(response))
        if not shown:
            continue
        clicked = rng.random(shown) < theta[:shown] * response.p_ctr[:shown]
        per_click, fixed = charges(
            np.asarray([objective_of(world, c) for c in response.campaign_id[:shown]]),
            response.price[:shown],
            response.p_ctr[:shown].astype(np.float64),
            response.p_cvr[:shown].astype(np.float64),
        )
        clicks += float(clicked.sum())
        revenue += float((per_click * clicked + fixed).sum())
    return {"clicks": clicks / requests, "revenue": revenue / requests}


def coverage_markdown(rows: Sequence[CoverageRow], contexts: LoggedContexts) -> str:
    return (
        f"Target's choice inside the logging pool: {contexts.support:.1%} of requests; its "
        f"revenue per request at its own prices {contexts.own_price_revenue.mean():.5f} vs "
        f"{contexts.truth()['revenue']:.5f} at the logged prices.\n\n{coverage_table(rows)}"
    )
