"""Cold start in the simulated day: new creatives launch with click rates the model does not
know, and each arm learns them from its own impressions (:mod:`adrank.experiments.cold_start`).

Glossary: a *new* creative is one of ``new_share`` of the catalog's active creatives, launched
at a random minute of the day's first half (not a candidate before); its *true multiplier* ``f``
(log-normal, median 1) scales the model's predicted click rate into its true one, so the model
is wrong about it by ``f`` while every other creative is clicked at exactly the model's rate; an
*arm* is one way of ranking the same requests:

* ``model``: the model's rates only (no estimate, no exploration);
* ``estimate``: the Beta-posterior estimate from each creative's impressions and clicks, no
  exploration (``traffic_share = 0``);
* ``explore-ucb`` / ``explore-thompson``: the estimate, and exploration of new creatives;
* ``oracle``: ranks with the true click rates (the model's times ``f``), learns nothing.

Every arm sees the same requests (same seed) and shows all it returns (``k`` ads a request).
The learning arms start from the counts of a *history*: a pilot day (``history`` requests,
another seed) ranked with the model's rates, before any new creative launched, whose
impressions and clicks (at the model's rates, the truth for those creatives) every learning arm
knows at the start; a creative the history showed fewer than ``min_impressions`` times is still
new to exploration.
The *revenue* of a shown ad is its eCPM at the true click rate, per impression (what its bid
makes it worth: ``bid`` per thousand for CPM, ``bid x p_ctr`` for CPC, ``target_cpa x p_ctr x
p_cvr`` for oCPM, less the negative-feedback penalty), the quantity the oracle's ranking
maximizes; *regret* is the oracle's revenue minus the arm's. What the shown ads are billed under
second pricing (:func:`adrank.simulation.world.charges`, at the true click rates) is reported
beside it: a GSP bill also moves with the runner-up's eCPM, so the oracle need not bill most.
Clicks are drawn at the true rates, to learn from.

*Impressions to a good estimate* of a new creative is the impression count from which its
estimate ``(m p̄ + c) / (m + n)`` (``p̄`` the mean predicted rate over its impressions) stays
within 20 % of its true rate ``f p̄`` for the rest of the day (0 where the model's rate is
within 20 % already); a creative that never gets there counts as not reached. The table reports
it over the *misjudged* new creatives, those whose model rate is off by more than 20 %.

On the exploring arms every exploring request is also ranked without the boost (the same counts):
the *revenue given up* is ``1 - sum(eCPM explored) / sum(eCPM unexplored)`` over all requests, at
the estimate, which the bound keeps at most ``traffic_share * max_revenue_loss``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from adrank.experiments.cold_start import Boost, ColdStart, ColdStartConfig, ImpressionCounts
from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker
from adrank.orchestrator.scoring import Objective, ScoringConfig, value_per_mille
from adrank.simulation.world import DAY_START, SyntheticWorld, charges

MINUTES = 1440
GOOD_ESTIMATE = 0.2  # relative error of a good estimate
ARMS = ("model", "estimate", "explore-ucb", "explore-thompson", "oracle")


@dataclass(frozen=True)
class NewCreatives:
    """The day's new creatives: ids, launch minutes and true multipliers (all [K])."""

    creative_id: np.ndarray
    launch_minute: np.ndarray
    multiplier: np.ndarray

    @classmethod
    def draw(cls, world: SyntheticWorld, share: float, spread: float, seed: int) -> NewCreatives:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"new_share must be in (0, 1], got {share}")
        if not spread > 0:
            raise ValueError(f"spread must be > 0, got {spread}")
        rng = np.random.default_rng(seed)
        active = world.catalog.creative_id[world.catalog.active]
        count = max(1, round(share * len(active)))
        ids = np.sort(rng.choice(active, size=count, replace=False))
        return cls(ids, rng.integers(0, MINUTES // 2, count), rng.lognormal(0.0, spread, count))

    def __len__(self) -> int:
        return len(self.creative_id)

    @property
    def misjudged(self) -> np.ndarray:
        """bool [K]: the model's rate is off by more than a good estimate's 20 %."""
        return np.abs(1.0 - self.multiplier) > GOOD_ESTIMATE * self.multiplier


class TrueRates:
    """The oracle's hook in the ranker: values a new creative at its true click rate."""

    def __init__(self, new: NewCreatives) -> None:
        self.new = new

    def boost(
        self, creative_ids: np.ndarray, objective: np.ndarray, p_ctr: np.ndarray, request_id: str
    ) -> Boost:
        at = np.minimum(np.searchsorted(self.new.creative_id, creative_ids), len(self.new) - 1)
        is_new = self.new.creative_id[at] == creative_ids
        by_clicks = np.asarray(objective) != Objective.CPM
        factor = np.where(is_new & by_clicks, self.new.multiplier[at], 1.0)
        return Boost(factor, np.ones(len(factor)))


@dataclass(frozen=True)
class ArmResult:
    arm: str
    revenue: float  # eCPM at the true click rates / 1000, summed over impressions
    billed: float  # expected GSP bill at the true click rates
    impressions: int
    new_impressions: np.ndarray  # int64 [K]: each new creative's impressions
    good_estimate_at: np.ndarray  # int64 [K]: impressions to a good estimate (0: the model's
    # rate is one); -1: not reached
    explored_requests: int = 0  # requests whose slate a boost changed
    explored_impressions: int = 0  # impressions of a creative exploration boosted
    given_up: float = 0.0  # revenue given up to exploration, at the estimate (module docstring)


@dataclass(frozen=True)
class ColdStartReport:
    new: NewCreatives
    config: ColdStartConfig
    requests: int
    arms: dict[str, ArmResult]

    def table(self) -> str:
        """The markdown table of the arms."""
        oracle = self.arms.get("oracle")
        min_n = self.config.min_impressions
        lines = [
            "| arm | revenue | regret vs oracle | billed (GSP) | misjudged new creatives with a "
            "good estimate | median impressions to it | "
            f"new with >= {min_n} impressions | explored requests | explored impressions | "
            "revenue given up |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, arm in self.arms.items():
            misjudged = arm.good_estimate_at[self.new.misjudged]
            reached = misjudged[misjudged >= 0]
            regret = "" if oracle is None else f"{oracle.revenue - arm.revenue:.2f}"
            share = (
                f"{(oracle.revenue - arm.revenue) / oracle.revenue:.2%}"
                if oracle is not None and oracle.revenue > 0
                else ""
            )
            median = f"{np.median(reached):.0f}" if len(reached) else "-"
            lines.append(
                f"| {name} | {arm.revenue:.2f} | {regret} ({share}) | {arm.billed:.2f} | "
                f"{len(reached)} of "
                f"{len(misjudged)} | {median} | "
                f"{int((arm.new_impressions >= min_n).sum())} of {len(self.new)} | "
                f"{arm.explored_requests} of {self.requests} | {arm.explored_impressions} of "
                f"{arm.impressions} | {arm.given_up:.2%} |"
            )
        return "\n".join(lines)


def run_cold_start(
    world: SyntheticWorld,
    requests: int = 20_000,
    seed: int = 0,
    *,
    arms: tuple[str, ...] = ARMS,
    config: ColdStartConfig | None = None,
    new_share: float = 0.2,
    spread: float = 0.7,
    candidates: int = 100,
    k: int = 3,
    history: int | None = None,
) -> ColdStartReport:
    """Runs each of ``arms`` over the same day (see the module docstring); ``history``
    defaults to ``requests``."""
    unknown = set(arms) - set(ARMS)
    if unknown:
        raise ValueError(f"arms must be among {', '.join(ARMS)}, got {', '.join(sorted(unknown))}")
    if requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests}")
    config = config or ColdStartConfig()
    new = NewCreatives.draw(world, new_share, spread, seed)
    model = TorchScriptModel(world.version_dir)
    results = {}
    past = ColdStart(dataclasses.replace(config, traffic_share=0.0))
    if any(arm.startswith(("estimate", "explore")) for arm in arms):
        before = NewCreatives(new.creative_id, np.full(len(new), MINUTES), new.multiplier)
        ranker = Ranker.from_export(world.artifacts_dir, world.catalog, model)
        days = requests if history is None else history
        _run_arm("history", world, ranker, before, days, seed + 100, candidates, k, past.counts)
    for arm in arms:
        hook: Any = None
        if arm == "oracle":
            hook = TrueRates(new)
        elif arm != "model":
            share = 0.0 if arm == "estimate" else config.traffic_share
            method = "thompson" if arm == "explore-thompson" else "ucb"
            settings = dataclasses.replace(config, traffic_share=share, method=method)
            hook = ColdStart(settings, past.counts.copy())
        ranker = Ranker.from_export(world.artifacts_dir, world.catalog, model, cold_start=hook)
        results[arm] = _run_arm(arm, world, ranker, new, requests, seed, candidates, k)
    return ColdStartReport(new, config, requests, results)


def _run_arm(
    arm: str,
    world: SyntheticWorld,
    ranker: Ranker,
    new: NewCreatives,
    requests: int,
    seed: int,
    candidates: int,
    k: int,
    record: ImpressionCounts | None = None,
) -> ArmResult:
    """One arm's day; its impressions and clicks go to the ranker's cold start, or to
    ``record`` when given."""
    catalog = world.catalog
    request_rng = np.random.default_rng(seed)  # the same requests in every arm
    click_rng = np.random.default_rng(seed + 1)
    hook = ranker.cold_start
    learner = hook if isinstance(hook, ColdStart) else None
    counts = record if record is not None else None if learner is None else learner.counts
    twin = (
        None
        if learner is None or learner.config.traffic_share == 0
        else ColdStart(dataclasses.replace(learner.config, traffic_share=0.0), learner.counts)
    )
    shares = np.diff(world.traffic.cumulative(np.arange(MINUTES + 1) / MINUTES))
    row_of = {int(c): i for i, c in enumerate(catalog.creative_id)}
    index_of_new = {int(c): i for i, c in enumerate(new.creative_id)}
    m = learner.config.prior_strength if learner is not None else ColdStartConfig().prior_strength
    shown_n = np.zeros(len(new), dtype=np.int64)
    shown_c = np.zeros(len(new), dtype=np.int64)
    shown_p = np.zeros(len(new))
    good_at = np.where(new.misjudged, -1, 0)
    revenue = billed = 0.0
    penalty = ScoringConfig().neg_penalty
    impressions = explored_requests = explored_impressions = 0
    ecpm_explored = ecpm_plain = 0.0
    served = 0
    for minute in range(MINUTES):
        arrivals = int(request_rng.poisson(requests * shares[minute]))
        if not arrivals:
            continue
        unlaunched = new.creative_id[new.launch_minute > minute]
        batch = []
        for j in range(arrivals):
            now = DAY_START + minute * 60.0 + 60.0 * j / arrivals
            request = world.request(request_rng, f"r{served}", now, candidates, k)
            served += 1
            keep = ~np.isin(request.candidates, unlaunched)
            batch.append(dataclasses.replace(request, candidates=request.candidates[keep]))
        responses = ranker.rank_batch(batch)
        if twin is not None:
            exploring = [r for r in batch if learner.exploring(r.request_id)]  # type: ignore[union-attr]
            ranker.cold_start = twin
            plain = {r.request_id: r for r in ranker.rank_batch(exploring)}
            ranker.cold_start = hook
        ids, shown, clicks = [], [], []
        for response in responses:
            if twin is not None:
                ecpm_explored += float(response.ecpm.sum())
                other = plain.get(response.request_id, response)
                ecpm_plain += float(other.ecpm.sum())
                if other is not response and not np.array_equal(
                    other.creative_id, response.creative_id
                ):
                    explored_requests += 1
                    explored_impressions += int(
                        np.isin(response.creative_id, other.creative_id, invert=True).sum()
                    )
            if record is not None:  # no hook to tell the counts what was served
                record.served(response.creative_id, response.p_ctr)
            rows = [row_of[int(c)] for c in response.creative_id]
            objective = catalog.objective[rows]
            per_click, per_impression = charges(
                objective, response.price, response.p_ctr, response.p_cvr
            )
            for a, creative in enumerate(response.creative_id.tolist()):
                p = float(response.p_ctr[a])
                slot = index_of_new.get(creative)
                truth = p if slot is None else min(1.0, p * float(new.multiplier[slot]))
                clicked = bool(click_rng.random() < truth)
                billed += float(per_impression[a]) + float(per_click[a]) * truth
                value = value_per_mille(
                    objective[a : a + 1],
                    catalog.bid[rows[a] : rows[a] + 1],
                    catalog.target_cpa[rows[a] : rows[a] + 1],
                    np.array([truth]),
                    response.p_cvr[a : a + 1],
                )[0]
                revenue += (value - penalty * 1000.0 * float(response.p_neg[a])) / 1000.0
                impressions += 1
                ids.append(creative)
                shown.append(1)
                clicks.append(int(clicked))
                if slot is not None:
                    shown_n[slot] += 1
                    shown_c[slot] += clicked
                    shown_p[slot] += p
                    n = shown_n[slot]
                    mean_p = shown_p[slot] / n
                    estimate = (m * mean_p + shown_c[slot]) / (m + n)
                    true_rate = mean_p * float(new.multiplier[slot])
                    if abs(estimate - true_rate) <= GOOD_ESTIMATE * true_rate:
                        if good_at[slot] < 0:
                            good_at[slot] = n
                    else:
                        good_at[slot] = -1
        if counts is not None:
            counts.record(ids, shown, clicks)
    given_up = 0.0 if ecpm_plain <= 0 else 1.0 - ecpm_explored / ecpm_plain
    return ArmResult(
        arm,
        revenue,
        billed,
        impressions,
        shown_n,
        good_at,
        explored_requests,
        explored_impressions,
        given_up,
    )
