"""The world of a simulated day: a trained, exported ranker's workspace, its users, a clock.

Glossary: ``R`` creatives in the catalog; ``N`` campaigns that can serve (not paused).

The world is the one :func:`adrank.workspace.prepare_workspace` builds (a synthetic log, the
multi-task ranker trained on it and exported, the serving catalog), sized by
:func:`simulation_world` so that a day of tens of thousands of requests gives every campaign
enough billable events for its spend curve to mean something. Requests draw a user from the
world's users and a random set of the catalog's creatives as candidates, as retrieval would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adrank.data.synthetic import NETWORKS, PLACEMENTS, SyntheticConfig
from adrank.orchestrator.catalog import Catalog
from adrank.orchestrator.request import RankRequest
from adrank.orchestrator.scoring import Objective
from adrank.pacing import TrafficCurve
from adrank.workspace import user_request

DAY_START = 1_735_689_600.0  # 2025-01-01 00:00 UTC
PLACEMENT_SHARES = (0.6, 0.15, 0.15, 0.1)  # as in the synthetic log


class SimClock:
    """Simulated unix seconds; the ranker's pacing lookup and the replay share one."""

    def __init__(self, now: float = DAY_START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def simulation_world(campaigns: int) -> SyntheticConfig:
    """The synthetic world of ``adrank simulate``: few campaigns, each with many creatives."""
    return SyntheticConfig(
        num_advertisers=max(1, campaigns // 2),
        num_campaigns=campaigns,
        num_creatives=20 * campaigns,
        num_users=2000,
        num_categories=8,
    )


@dataclass(frozen=True)
class SyntheticWorld:
    artifacts_dir: Path  # the exported version the ranker loads
    version_dir: Path  # its dense model (TorchScript), run in process
    catalog: Catalog
    users: list[dict[str, Any]]
    traffic: TrafficCurve  # the day's true traffic (differs from the controller's expectation)

    @property
    def campaign_ids(self) -> np.ndarray:
        """Campaigns that can serve (int64 [N], sorted): some creative of theirs is active."""
        return np.unique(self.catalog.campaign_id[self.catalog.active])

    @property
    def max_charges(self) -> np.ndarray:
        """The most one event of each campaign can cost (float64 [N], nan where unbounded): a
        CPC click is priced at most its bid, a CPM impression at most bid / 1000. An oCPM
        impression pays price x p_ctr x p_cvr, which no bid bounds usefully."""
        catalog = self.catalog
        charge = np.where(
            catalog.objective == Objective.CPC,
            catalog.bid,
            np.where(catalog.objective == Objective.CPM, catalog.bid / 1000.0, np.nan),
        )
        ids = self.campaign_ids
        out = np.full(len(ids), -np.inf)
        rows = np.searchsorted(ids, catalog.campaign_id)
        serving = (rows < len(ids)) & (ids[np.minimum(rows, len(ids) - 1)] == catalog.campaign_id)
        np.fmax.at(out, rows[serving], charge[serving])
        return np.where(np.isfinite(out), out, np.nan)

    def request(
        self, rng: np.random.Generator, request_id: str, now: float, candidates: int, k: int
    ) -> RankRequest:
        """A ranking request at ``now``: a random user, context and ``candidates`` creatives."""
        user = self.users[int(rng.integers(len(self.users)))]
        hour = int(((now - DAY_START) % 86_400) // 3600)
        context = {
            "placement": PLACEMENTS[int(rng.choice(len(PLACEMENTS), p=PLACEMENT_SHARES))],
            "hour": hour,
            "network": NETWORKS[int(rng.integers(len(NETWORKS)))],
        }
        creatives = self.catalog.creative_id
        chosen = rng.choice(creatives, size=min(candidates, len(creatives)), replace=False)
        return user_request(request_id, user, context, chosen, k)


def charges(
    objective: np.ndarray, price: np.ndarray, p_ctr: np.ndarray, p_cvr: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """What each shown ad bills in this world: ``(per click, per impression)``, float [K].

    CPC bills its price per click; CPM its price per thousand, so ``price / 1000`` per
    impression; oCPM bills per impression at the expected conversion value ``price * p_ctr *
    p_cvr`` (its price is per conversion)."""
    per_click = np.where(objective == Objective.CPC, price, 0.0)
    per_impression = np.where(
        objective == Objective.CPM,
        price / 1000.0,
        np.where(objective == Objective.OCPM, price * p_ctr * p_cvr, 0.0),
    )
    return per_click, per_impression


def make_world(workspace: Any, seed: int = 0) -> SyntheticWorld:
    """The world of ``workspace`` (:class:`adrank.workspace.Workspace`), with a true traffic
    curve that deviates from the expected one by up to +-15 % an hour."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    expected = np.asarray(TrafficCurve().hourly_weights)
    traffic = TrafficCurve(tuple(expected * rng.uniform(0.85, 1.15, 24)))
    return SyntheticWorld(
        artifacts_dir=workspace.artifacts_dir,
        version_dir=workspace.repository / workspace.model_name / str(workspace.version),
        catalog=Catalog.from_parquet(workspace.catalog_path),
        users=pq.read_table(workspace.users_path).to_pylist(),
        traffic=traffic,
    )
