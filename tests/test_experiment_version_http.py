"""An arm's model version over real HTTP with the real embedded Triton: two exported versions
(the second's click tower shifted, so its click rates are higher), an experiment whose
treatment arm names version 2; each answer is scored by its arm's version (checked against each
export's TorchScript run in process: Triton serves the int8 ONNX deployment, within 2 %), names
it, and the request log records it. An arm naming a version that is not exported stops
``adrank serve`` at start."""

from __future__ import annotations

import dataclasses

import httpx2 as httpx
import pytest
import torch

from adrank.data import SyntheticConfig
from adrank.experiments.assignment import ExperimentSet
from adrank.experiments.request_log import RequestLog, read_request_log
from adrank.export import export_model
from adrank.models.checkpoint import load_checkpoint
from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker, SelectionConfig
from adrank.orchestrator.scoring import ScoringConfig
from adrank.service.schemas import rank_request_json
from adrank.service.stack import HttpServer, serving_stack
from adrank.workspace import prepare_workspace, sample_requests

pytestmark = pytest.mark.triton

WORLD = SyntheticConfig(
    num_advertisers=10, num_campaigns=30, num_creatives=300, num_users=200, num_categories=6
)
EXPERIMENT = """
[[experiment]]
name = "model"
layer = "model"
salt = "model-v2-http"
[[experiment.arm]]
name = "control"
share = 0.5
[[experiment.arm]]
name = "v2"
share = 0.5
model_version = {version}
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("arm-version")
    workspace = prepare_workspace(
        root, rows=6_000, world=WORLD, repository=root / "models", say=lambda _: None
    )
    model, _, _ = load_checkpoint(root / "ranker.pt")
    with torch.no_grad():  # version 2: the click tower's logit + 0.5, all else kept
        dict(model.named_parameters())["dense.towers.0.1.bias"].add_(0.5)
    export_model(model, repository=workspace.repository, artifacts=root / "artifacts")
    return workspace


def _in_process(workspace, version: int) -> Ranker:
    """``version``'s TorchScript in process; no reserve and no per-advertiser cap, so that every
    candidate's rate is in its answer."""
    artifacts = workspace.artifacts_dir.parent / str(version)
    model = TorchScriptModel(workspace.repository / workspace.model_name / str(version))
    return Ranker.from_export(
        artifacts,
        workspace.catalog_path,
        model,
        scoring_config=ScoringConfig(reserve_ecpm=0.0),
        selection_config=SelectionConfig(max_per_advertiser=1000),
    )


def test_each_arm_is_scored_by_its_version(workspace, tmp_path) -> None:
    experiments = tmp_path / "experiments.toml"
    experiments.write_text(EXPERIMENT.format(version=2))
    log = RequestLog(tmp_path / "log")
    requests = sample_requests(workspace, 12, candidates=100, k=4, seed=3)
    answers = {}
    with (
        serving_stack(
            workspace.artifacts_dir,
            workspace.catalog_path,
            repository=workspace.repository,
            deadline_ms=2000,
            experiments=ExperimentSet.from_toml(experiments),
            request_log=log,
        ) as stack,
        HttpServer(stack.app) as http,
    ):
        status = httpx.get(f"{http.url}/v1/model").json()
        assert (status["version"], status["pinned"]) == (1, [2])
        with httpx.Client(timeout=60) as client:
            for request in requests:
                answer = client.post(f"{http.url}/v1/rank", json=rank_request_json(request))
                assert answer.status_code == 200, answer.text
                answers[request.request_id] = answer.json()
    by_arm = {"control": "ranker/1", "v2": "ranker/2"}
    assert {a["arms"]["model"] for a in answers.values()} == set(by_arm)  # both arms served
    rates = {v: _click_rates(_in_process(workspace, v), requests) for v in (1, 2)}
    shown = {"control": 0, "v2": 0}
    for request in requests:
        answer = answers[request.request_id]
        version = answer["model_version"]
        assert version == by_arm[answer["arms"]["model"]]
        mine = rates[int(version.split("/")[1])][request.request_id]
        other = rates[3 - int(version.split("/")[1])][request.request_id]
        for creative in answer["creatives"]:
            shown[answer["arms"]["model"]] += 1
            p_ctr, creative_id = creative["p_ctr"], creative["creative_id"]
            assert p_ctr == pytest.approx(mine[creative_id], rel=0.02)
            assert abs(p_ctr / other[creative_id] - 1) > 0.1  # the other version's rate is far
    assert min(shown.values()) > 0
    rows = read_request_log(tmp_path / "log").to_pylist()
    assert {r["request_id"]: r["model_version"] for r in rows} == {
        rid: a["model_version"] for rid, a in answers.items()
    }


def _click_rates(ranker: Ranker, requests) -> dict[str, dict[int, float]]:
    """request id -> creative id -> p_ctr, for every eligible candidate (k = all)."""
    rates = {}
    for request in requests:
        every = ranker.rank(dataclasses.replace(request, k=len(request.candidates)))
        rates[request.request_id] = dict(
            zip(every.creative_id.tolist(), every.p_ctr.tolist(), strict=True)
        )
    return rates


def test_serve_stops_at_start_on_an_arm_version_not_exported(workspace, tmp_path) -> None:
    from adrank.cli import main

    experiments = tmp_path / "experiments.toml"
    experiments.write_text(EXPERIMENT.format(version=5))
    with pytest.raises(
        SystemExit, match=r"adrank serve: --experiments: arm model/v2: version 5 is not exported"
    ):
        main(
            [
                "serve",
                "--artifacts",
                str(workspace.artifacts_dir),
                "--catalog",
                str(workspace.catalog_path),
                "--repository",
                str(workspace.repository),
                "--experiments",
                str(experiments),
                "--port",
                "0",
            ]
        )
