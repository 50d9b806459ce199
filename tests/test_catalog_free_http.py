"""Serving without a catalog over HTTP: a Criteo-style model (every field describes the
impression) ranks candidates sent as rows of raw values in ``candidate_rows``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from adrank import EmbeddingTable
from adrank.artifacts import MODEL_FILE
from adrank.features import criteo_schema_path, load_schema
from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker
from adrank.service.app import create_app
from adrank.service.limits import ServiceLimits
from adrank.triton.testing import DemoDenseRanker


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    schema = load_schema(criteo_schema_path())
    rng = np.random.default_rng(0)
    tables = {
        name: EmbeddingTable(rng.normal(0, 0.3, (spec.num_buckets, spec.dim)).astype(np.float32))
        for name, spec in schema.tables.items()
    }
    version_dir = tmp_path_factory.mktemp("criteo") / "ranker" / "1"
    version_dir.mkdir(parents=True)
    module = DemoDenseRanker(schema.embedding_dim, schema.dense_dim, seed=1).eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        torch.jit.script(module).save(str(version_dir / MODEL_FILE))
    ranker = Ranker(schema, tables, TorchScriptModel(version_dir))  # no catalog
    app = create_app(ranker, ServiceLimits(max_candidates=100), schema=schema)
    return TestClient(app, base_url="http://localhost")


def rows(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "creative_id": 500 + i,
            "bid": float(rng.uniform(0.5, 2.0)),
            "objective": "CPC",
            "advertiser_id": 10 + i % 4,
            **{f"I{j}": int(rng.integers(0, 50)) for j in range(1, 14)},
            **{f"C{j}": f"{int(rng.integers(0, 30)):08x}" for j in range(1, 27)},
        }
        for i in range(count)
    ]


def test_rows_of_raw_values_are_ranked(client: TestClient) -> None:
    body = {"request_id": "c1", "candidate_rows": rows(40), "k": 5}
    answer = client.post("/v1/rank", json=body)
    assert answer.status_code == 200, answer.text
    creatives = answer.json()["creatives"]
    assert len(creatives) == 5
    ecpm = [c["ecpm"] for c in creatives]
    assert ecpm == sorted(ecpm, reverse=True)
    assert all(c["p_cvr"] is None and c["p_neg"] is None for c in creatives)  # click only
    per_advertiser = [c["advertiser_id"] for c in creatives]
    assert max(per_advertiser.count(a) for a in per_advertiser) <= 2  # the cap binds
    # A context value fills the column the rows leave out.
    sparse = [{k: v for k, v in row.items() if k != "C2"} for row in rows(40)]
    with_context = {**body, "candidate_rows": sparse, "context": {"C2": "0000000a"}}
    assert client.post("/v1/rank", json=with_context).status_code == 200


@pytest.mark.parametrize(
    ("change", "status", "loc"),
    [
        (lambda b: b["candidate_rows"][0].pop("bid"), 422, ["body", "candidate_rows", 0, "bid"]),
        (
            lambda b: b["candidate_rows"][1].update(objective="CPX"),
            422,
            ["body", "candidate_rows", 1, "objective"],
        ),
        (
            lambda b: b["candidate_rows"][2].update(C5=[1.5]),
            422,
            ["body", "candidate_rows", 2],
        ),
        (
            lambda b: b["candidate_rows"][3].update(I1="many"),
            422,
            ["body", "candidate_rows", 3, "I1"],
        ),
        (lambda b: b.update(candidates=[1, 2]), 422, ["body", "candidates"]),
        (lambda b: b.update(candidate_rows=rows(101)), 413, None),
        (lambda b: b["candidate_rows"][1].update(creative_id=500), 422, ["body"]),
    ],
)
def test_bad_rows_name_the_field(client: TestClient, change, status, loc) -> None:
    body = {"request_id": "c2", "candidate_rows": rows(5), "k": 3}
    change(body)
    answer = client.post("/v1/rank", json=body)
    assert answer.status_code == status, answer.text
    if loc is not None:
        assert answer.json()["detail"][0]["loc"] == loc
