"""An A/B test in the simulated world, with known true effects: ``adrank simulate --ab``.

Glossary: *control* ranks with the ranker's settings, *treatment* with a higher
negative-feedback penalty (``TREATMENT_PENALTY``); a *period* is a run of requests; the
*truth* of an arm is its metrics' expectation over the experiment's requests, every request
ranked under that arm's settings and valued at the world's true rates (the model's).

1. Pre-period: ``requests`` requests of the world's users, all ranked as control (CUPED's
   covariate).
2. The experiment: as many requests, each user in an arm by the salted hash
   (:mod:`adrank.experiments.assignment`), ranked through :class:`ExperimentRanker` over the
   real Ranker, logged (:class:`RequestLog`) and their events drawn: a click with ``p_ctr``,
   a conversion after a click with ``p_cvr``, a negative feedback with ``p_neg``; revenue as
   :mod:`adrank.simulation.replay` bills it (CPM price/1000 per impression, CPC price per
   click, oCPM price x pCTR x pCVR per impression).
3. The truth: every experiment request ranked under both arms' settings, expected values.

``srm_drop`` plants a sample-ratio mismatch: that share of treatment users (by another hash)
never reach the log, as when a client bug loses an arm's traffic; the report must flag it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from adrank.experiments.assignment import ExperimentSet, unit_position
from adrank.experiments.report import ABReport, analyze, write_report
from adrank.experiments.request_log import RequestLog, read_request_log
from adrank.experiments.serving import ExperimentRanker
from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker
from adrank.orchestrator.request import RankResponse
from adrank.orchestrator.scoring import ScoringConfig
from adrank.simulation.world import DAY_START, SyntheticWorld, charges

EXPERIMENT = "sim-ab"
TREATMENT_PENALTY = 0.3
K = 3

TOML = """[[experiment]]
name = "{name}"
layer = "scoring"
salt = "{salt}"
[[experiment.arm]]
name = "control"
share = 0.5
[[experiment.arm]]
name = "treatment"
share = 0.5
neg_penalty = {penalty}
"""


@dataclass(frozen=True)
class ABRun:
    directory: Path  # log/, events.parquet, pre-log/, pre-events.parquet, experiments.toml
    truth: dict[str, dict[str, float]]  # arm -> metric -> expected value

    @property
    def true_deltas(self) -> dict[str, float]:
        c, t = self.truth["control"], self.truth["treatment"]
        return {m: t[m] - c[m] for m in c}


def _charges(world: SyntheticWorld, response: RankResponse) -> tuple[np.ndarray, np.ndarray]:
    """Per shown ad: revenue per click and revenue per impression."""
    rows = np.searchsorted(world.catalog.creative_id, response.creative_id)
    objective = world.catalog.objective[rows]
    price = response.price
    p_ctr = response.p_ctr.astype(np.float64)
    p_cvr = response.p_cvr.astype(np.float64)
    return charges(objective, price, p_ctr, p_cvr)


def _events(world, response, rng) -> list[dict]:
    per_click, fixed = _charges(world, response)
    out = []
    for i, creative in enumerate(response.creative_id.tolist()):
        event = {"request_id": response.request_id, "creative_id": creative}
        out.append({**event, "event": "impression", "revenue": float(fixed[i])})
        clicked = rng.random() < response.p_ctr[i]
        if clicked:
            out.append({**event, "event": "click", "revenue": float(per_click[i])})
            if rng.random() < response.p_cvr[i]:
                out.append({**event, "event": "conversion", "revenue": 0.0})
        if response.p_neg is not None and rng.random() < response.p_neg[i]:
            out.append({**event, "event": "negative", "revenue": 0.0})
    return out


def _expected(world, response) -> dict[str, float]:
    per_click, fixed = _charges(world, response)
    p_ctr = response.p_ctr.astype(np.float64)
    return {
        "impressions": float(len(response)),
        "clicks": float(p_ctr.sum()),
        "negatives": float(0.0 if response.p_neg is None else response.p_neg.sum()),
        "revenue": float((per_click * p_ctr + fixed).sum()),
    }


def run_ab_test(
    world: SyntheticWorld,
    out_dir: str | Path,
    requests: int = 4000,
    seed: int = 0,
    candidates: int = 50,
    srm_drop: float = 0.0,
) -> ABRun:
    """Steps 1-3 of the module docstring; files under ``out_dir``."""
    if not 0.0 <= srm_drop < 1.0:
        raise ValueError(f"srm_drop must be in [0, 1), got {srm_drop}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    toml = TOML.format(name=EXPERIMENT, salt=f"sim-ab-{seed}", penalty=TREATMENT_PENALTY)
    (out / "experiments.toml").write_text(toml)
    experiments = ExperimentSet.from_toml(out / "experiments.toml")
    ranker = Ranker.from_export(
        world.artifacts_dir, world.catalog, TorchScriptModel(world.version_dir)
    )
    rng = np.random.default_rng(seed)

    # 1. The pre-period, all control.
    pre_log = RequestLog(out / "pre-log", rows_per_part=5000)
    pre_events = []
    for i in range(requests):
        request = world.request(rng, f"pre{i}", DAY_START, candidates, K)
        response = ranker.rank(request)
        pre_log.append(request, response)
        pre_events += _events(world, response, rng)
    pre_log.close()
    pq.write_table(pa.Table.from_pylist(pre_events), out / "pre-events.parquet")

    # 2. The experiment, logged; 3. its truth.
    lost = f"lost-{seed}"

    log = RequestLog(out / "log", rows_per_part=5000)

    def log_unless_lost(request, response) -> None:
        treated = response.arms.get(EXPERIMENT) == "treatment"
        if treated and unit_position(lost, request.user["user_id"]) < srm_drop:
            return
        log.append(request, response)

    served = ExperimentRanker(
        ranker,
        experiments,
        clock=lambda: datetime(2025, 1, 1, tzinfo=timezone.utc),
        log=log_unless_lost,
    )
    treatment_scoring = ScoringConfig(
        reserve_ecpm=ranker.scoring_config.reserve_ecpm, neg_penalty=TREATMENT_PENALTY
    )
    events = []
    truth = {
        arm: dict.fromkeys(("impressions", "clicks", "negatives", "revenue"), 0.0)
        for arm in ("control", "treatment")
    }
    for i in range(requests):
        request = world.request(rng, f"ab{i}", DAY_START + 86_400, candidates, K)
        response = served.rank(request)
        events += _events(world, response, rng)
        for arm, scoring in (("control", None), ("treatment", treatment_scoring)):
            ranked = ranker.rank(dataclasses.replace(request, scoring=scoring))
            for name, value in _expected(world, ranked).items():
                truth[arm][name] += value
    log.close()
    pq.write_table(pa.Table.from_pylist(events), out / "events.parquet")
    metrics = {
        arm: {
            "CTR": t["clicks"] / t["impressions"],
            "revenue per 1000 requests": 1000.0 * t["revenue"] / requests,
            "ad load (ads per request)": t["impressions"] / requests,
            "negative-feedback rate": t["negatives"] / t["impressions"],
        }
        for arm, t in truth.items()
    }
    (out / "truth.json").write_text(json.dumps(metrics, indent=1))
    return ABRun(out, metrics)


def write_ab_report(run: ABRun) -> tuple[ABReport, Path]:
    """The A/B report of ``run`` (with CUPED from its pre-period) and the truth beside it."""
    d = run.directory
    toml = ExperimentSet.from_toml(d / "experiments.toml").experiments[0]
    report = analyze(
        read_request_log(d / "log"),
        pq.read_table(d / "events.parquet"),
        EXPERIMENT,
        shares={arm.name: arm.share for arm in toml.arms},
        control="control",
        pre=(read_request_log(d / "pre-log"), pq.read_table(d / "pre-events.parquet")),
    )
    path = write_report(report, d / "report")
    lines = ["", "## The truth (simulation)", "", "| metric | true delta | measured | covered |"]
    lines.append("|---|---|---|---|")
    for metric, truth in run.true_deltas.items():
        m = report.deltas["treatment"].get(metric)
        if m is not None:
            lines.append(
                f"| {metric} | {truth:+.5g} | {m.delta:+.5g} [{m.ci_low:+.5g}, {m.ci_high:+.5g}] "
                f"| {'yes' if m.ci_low <= truth <= m.ci_high else 'NO'} |"
            )
    path.write_text(path.read_text() + "\n".join(lines) + "\n")
    return report, path
