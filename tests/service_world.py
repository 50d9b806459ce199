"""A small real serving world for the HTTP tests: the default schema, random tables, a scripted
dense model run in process (TorchScriptModel), a synthetic catalog, and the app over them.

Glossary: a *world* is everything the app needs except the HTTP layer; ``good_body()`` is a
rank body that must answer 200 with creatives, whatever hostile request came before it.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adrank import EmbeddingTable
from adrank.artifacts import MODEL_FILE
from adrank.data import SyntheticConfig, generate_log
from adrank.data.catalog import catalog_table
from adrank.features import load_schema
from adrank.orchestrator.catalog import Catalog
from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker
from adrank.pacing import PacingService, SQLitePacingStore
from adrank.safety import SafetyGate
from adrank.safety.control import make_safety_router
from adrank.service.app import create_app
from adrank.service.control import make_control_router
from adrank.service.limits import ServiceLimits
from adrank.service.security import AccessPolicy
from adrank.traffic import SQLiteTrafficStore, TrafficControl
from adrank.triton.testing import DemoDenseRanker

WORLD = SyntheticConfig(
    num_advertisers=12, num_campaigns=40, num_creatives=400, num_users=200, num_categories=8
)
NOW = 1_735_689_600.0 + 9 * 3600  # 09:00 on a campaign day
TOKEN = "test-token-0123456789abcdef"
LOCAL = "http://localhost"


@dataclass
class World:
    schema: Any
    ranker: Ranker
    catalog: Any  # pyarrow Table
    user: dict[str, Any]
    tables: dict[str, EmbeddingTable]

    def sold_in(self, region: str, count: int) -> list[int]:
        """``count`` active creatives sold in ``region``."""
        rows = self.catalog.to_pylist()
        ids = [r["creative_id"] for r in rows if r["status"] == "active" and region in r["regions"]]
        return ids[:count]

    def good_body(self, request_id: str = "good") -> dict[str, Any]:
        region = self.user["country"]
        return {
            "request_id": request_id,
            "user": self.user,
            "context": {"placement": "feed", "hour": 20, "network": "wifi"},
            "candidates": self.sold_in(region, 30),
            "k": 5,
            "region": region,
        }


def build_world(
    root: Path,
    config: SyntheticConfig = WORLD,
    *,
    seed: int = 7,
    catalog_seed: int = 1,
    paused_share: float = 0.2,
) -> World:
    """The world of ``config``; the demo's catalog is ``(DEMO_WORLD, seed=0, catalog_seed=0,
    paused_share=0.05)`` (catalogs are drawn before impressions: the row count is irrelevant)."""
    log = generate_log(500, seed=seed, config=config)
    schema = load_schema()
    rng = np.random.default_rng(0)
    tables = {
        name: EmbeddingTable(rng.normal(0, 0.3, (spec.num_buckets, spec.dim)).astype(np.float32))
        for name, spec in schema.tables.items()
    }
    version_dir = root / "ranker" / "1"
    version_dir.mkdir(parents=True)
    module = DemoDenseRanker(schema.embedding_dim, schema.dense_dim, seed=3).eval()
    with warnings.catch_warnings():  # TorchScript is what export writes, deprecated or not
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        torch.jit.script(module).save(str(version_dir / MODEL_FILE))
    table = catalog_table(log, paused_share=paused_share, seed=catalog_seed)
    ranker = Ranker(schema, tables, TorchScriptModel(version_dir), Catalog.from_arrow(table))
    user = {k: v for k, v in log.users.slice(0, 1).to_pylist()[0].items() if v is not None}
    return World(schema, ranker, table, user, tables)


@dataclass
class Service:
    app: Any
    pacing: PacingService
    traffic: TrafficControl


def make_service(
    world: World,
    limits: ServiceLimits | None = None,
    access: AccessPolicy | None = None,
    safety: SafetyGate | None = None,
) -> Service:
    """The app as ``adrank serve`` builds it, over ``world`` and fresh in-memory state; with
    ``safety``, its audit and override routes too."""
    pacing = PacingService(SQLitePacingStore(":memory:"))
    traffic = TrafficControl(SQLiteTrafficStore(":memory:"))
    control = make_control_router(pacing, traffic, clock=lambda: NOW)
    if safety is not None:
        control.include_router(make_safety_router(safety))
    app = create_app(world.ranker, limits, control, access=access, schema=world.schema)
    return Service(app, pacing, traffic)


def event(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": name,
        "campaign_id": 50_007,
        "kind": "click",
        "cost": 1.5,
        "timestamp": NOW - 10,
        **fields,
    }


def wait_until(condition: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()
