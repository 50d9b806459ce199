"""The demo workspace: a synthetic world, a model trained on it and exported, and a catalog.

``prepare_workspace`` builds it once under ``root`` and reuses it on later runs (the demo, the
service command, the benchmarks), so the two README commands stay fast the second time:

    root/log/                    the synthetic log (Parquet, one file per table)
    root/catalog.parquet         the serving catalog (``adrank.data.catalog_table``)
    root/ranker.pt               the trained checkpoint
    root/metrics.json            held-out metrics of the training run
    root/artifacts/NAME/V/       embedding tables, manifest and schema of the exported version
    repository/NAME/V/           the Triton model version (TorchScript + model.py)

``sample_requests`` draws ranking requests from the world's users, contexts and catalog.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adrank.artifacts import MODEL_FILE
from adrank.data.synthetic import NETWORKS, PLACEMENTS, SyntheticConfig
from adrank.orchestrator.ranker import FallbackRates
from adrank.orchestrator.request import RankRequest

WORKSPACE_FILE = "workspace.json"
DEMO_WORLD = SyntheticConfig(
    num_advertisers=100, num_campaigns=400, num_creatives=4000, num_users=10000
)


@dataclass(frozen=True)
class Workspace:
    root: Path
    repository: Path
    model_name: str
    version: int
    artifacts_dir: Path
    catalog_path: Path
    users_path: Path
    metrics: dict[str, Any]


def open_workspace(
    root: str | Path, repository: str | Path = "triton_models", model_name: str = "ranker"
) -> Workspace | None:
    """The workspace built under ``root``, whatever its settings; None if there is none yet
    (or its model version is missing from ``repository``)."""
    root, repository = Path(root), Path(repository)
    record = root / WORKSPACE_FILE
    if not record.exists():
        return None
    saved = json.loads(record.read_text())
    if saved["settings"].get("model_name", model_name) != model_name:
        return None
    if not (repository / model_name / str(saved["version"]) / MODEL_FILE).exists():
        return None
    return _workspace(root, repository, model_name, saved)


def prepare_workspace(
    root: str | Path = "artifacts/demo",
    *,
    rows: int = 200_000,
    seed: int = 0,
    world: SyntheticConfig = DEMO_WORLD,
    repository: str | Path = "triton_models",
    model_name: str = "ranker",
    say: Callable[[str], None] = print,
) -> Workspace:
    """Builds the workspace under ``root``, or reuses it when it was built with these settings."""
    root, repository = Path(root), Path(repository)
    settings = {"rows": rows, "seed": seed, "world": asdict(world), "model_name": model_name}
    record = root / WORKSPACE_FILE
    if record.exists():
        saved = json.loads(record.read_text())
        version_dir = repository / model_name / str(saved["version"])
        if saved["settings"] == settings and (version_dir / MODEL_FILE).exists():
            say(f"reusing the workspace in {root} (model {model_name} version {saved['version']})")
            return _workspace(root, repository, model_name, saved)
    return _build(root, repository, model_name, rows, seed, world, settings, say)


def _build(
    root: Path,
    repository: Path,
    model_name: str,
    rows: int,
    seed: int,
    world: SyntheticConfig,
    settings: dict[str, Any],
    say: Callable[[str], None],
) -> Workspace:
    import pyarrow.parquet as pq

    from adrank.data import generate_log
    from adrank.data.catalog import catalog_table
    from adrank.export import export_model
    from adrank.features import load_schema
    from adrank.models import save_checkpoint
    from adrank.training.loop import TrainConfig, train
    from adrank.training.report import format_report, oracle_for

    root.mkdir(parents=True, exist_ok=True)
    say(f"drawing a synthetic log of {rows:,} impressions ({world.num_creatives:,} creatives)")
    log = generate_log(rows, seed=seed, config=world)
    log.write(root / "log")
    pq.write_table(catalog_table(log, seed=seed), root / "catalog.parquet")
    say("training the multi-task ranker (click, conversion, negative feedback)")
    result = train(log.impressions, load_schema(), config=TrainConfig(seed=seed, progress=True))
    say(format_report(result.metrics, oracle_for(log.impressions, result.heldout_rows)))
    save_checkpoint(root / "ranker.pt", result.model, metrics=result.metrics)
    export = export_model(
        result.model, repository=repository, name=model_name, artifacts=root / "artifacts"
    )
    say(f"exported version {export.version}: {export.version_dir} and {export.artifacts_dir}")
    saved = {"settings": settings, "version": export.version, "metrics": result.metrics}
    (root / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
    (root / WORKSPACE_FILE).write_text(json.dumps(saved, indent=2) + "\n")
    return _workspace(root, repository, model_name, saved)


def _workspace(root: Path, repository: Path, model_name: str, saved: dict) -> Workspace:
    return Workspace(
        root=root,
        repository=repository,
        model_name=model_name,
        version=saved["version"],
        artifacts_dir=root / "artifacts" / model_name / str(saved["version"]),
        catalog_path=root / "catalog.parquet",
        users_path=root / "log" / "users.parquet",
        metrics=saved["metrics"],
    )


def sample_requests(
    workspace: Workspace, count: int, *, candidates: int = 1000, k: int = 10, seed: int = 0
) -> list[RankRequest]:
    """``count`` requests: a random user, context and ``candidates`` catalog creatives each."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    users = pq.read_table(workspace.users_path)
    creative_ids = pq.read_table(workspace.catalog_path, columns=["creative_id"])["creative_id"]
    creative_ids = creative_ids.to_numpy()
    picked = users.take(rng.integers(0, len(users), count)).to_pylist()
    requests = []
    for i, user in enumerate(picked):
        context = {
            "placement": PLACEMENTS[rng.integers(len(PLACEMENTS))],
            "hour": int(rng.integers(24)),
            "network": NETWORKS[rng.integers(len(NETWORKS))],
        }
        chosen = rng.choice(creative_ids, size=min(candidates, len(creative_ids)), replace=False)
        requests.append(user_request(f"req-{seed}-{i}", user, context, chosen, k))
    return requests


def user_request(
    request_id: str, user: dict[str, Any], context: dict[str, Any], candidates: Any, k: int
) -> RankRequest:
    """A request of a user row of the synthetic log: their country is the region, their
    recently watched creatives the frequency-cap history."""
    return RankRequest(
        request_id=request_id,
        user=user,
        context=context,
        candidates=candidates,
        k=k,
        region=user["country"],
        recently_seen=np.asarray(user.get("recent_creatives") or [], dtype=np.int64),
    )


def fallback_rates(workspace: Workspace) -> FallbackRates:
    """The log's average rates from the training run: what the service scores when degraded."""
    from adrank.orchestrator.ranker import FallbackRates

    metrics = workspace.metrics
    click = metrics["click"]["observed_rate"]
    converted = metrics["conversion"]["observed_rate"]  # per impression (ESMM's pCTCVR)
    return FallbackRates(
        p_ctr=click,
        p_cvr=converted / click if click > 0 else 0.0,
        p_neg=metrics["negative"]["observed_rate"],
    )
