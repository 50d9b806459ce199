"""The plain PyTorch baseline's business rules, and ``adrank bench`` end to end at tiny sizes.

One small workspace (a few thousand training rows) serves every test here; ``adrank bench``
finds and reuses it.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from adrank.benchmark.baseline import PlainTorchPipeline
from adrank.benchmark.suite import CONFIGURATIONS
from adrank.cli import main
from adrank.orchestrator.catalog import Catalog
from adrank.orchestrator.request import Constraints
from adrank.workspace import prepare_workspace, sample_requests

ROWS = 3000
CAP = 2


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-world")
    return prepare_workspace(root, rows=ROWS, repository=root / "triton_models", say=lambda _: None)


@pytest.fixture(scope="module")
def catalog(workspace) -> Catalog:
    return Catalog.from_parquet(workspace.catalog_path)


@pytest.fixture(scope="module")
def baseline(workspace) -> PlainTorchPipeline:
    return PlainTorchPipeline.from_workspace(workspace, max_per_advertiser=CAP, frequency_cap=2)


@pytest.fixture(scope="module")
def requests(workspace):
    return sample_requests(workspace, 6, candidates=600, k=12, seed=3)


def _row(catalog: Catalog, creative_id: int) -> dict:
    (row,) = np.flatnonzero(catalog.creative_id == creative_id)
    return catalog.table.slice(int(row), 1).to_pylist()[0]


def _eligible_ids(catalog: Catalog, request) -> set[int]:
    """Eligibility read from the catalog's own columns, row by row."""
    seen, counts = np.unique(request.recently_seen, return_counts=True)
    capped = set(seen[counts >= 2].tolist())
    eligible = set()
    for row in catalog.table.to_pylist():
        if row["creative_id"] not in set(request.candidates.tolist()):
            continue
        if row["status"] != "active" or row["creative_id"] in capped:
            continue
        if row["regions"] and request.region not in row["regions"]:
            continue
        eligible.add(row["creative_id"])
    return eligible


def test_baseline_returns_k_eligible_creatives_capped_per_advertiser(
    baseline, catalog, requests
) -> None:
    for request in requests:
        response = baseline.rank(request)
        eligible = _eligible_ids(catalog, request)
        assert len(response) == min(request.k, len(eligible))
        assert len(response) > 0
        assert set(response.creative_id.tolist()) <= eligible
        _, per_advertiser = np.unique(response.advertiser_id, return_counts=True)
        assert per_advertiser.max() <= CAP
        assert (np.diff(response.ecpm) <= 0).all()  # best first
        assert set(response.timings_ms) >= {"features", "embeddings", "model", "selection"}


def test_baseline_cap_comes_from_the_request(baseline, requests) -> None:
    request = dataclasses.replace(requests[0], constraints=Constraints(max_per_advertiser=1))
    response = baseline.rank(request)
    assert len(np.unique(response.advertiser_id)) == len(response) == request.k


def test_baseline_drops_paused_capped_and_untargeted_creatives(
    workspace, baseline, catalog, requests
) -> None:
    request = requests[1]
    top = int(baseline.rank(request).creative_id[0])

    # Frequency cap 2: seen once it stays, seen twice it goes.
    once = dataclasses.replace(request, recently_seen=np.array([top], dtype=np.int64))
    twice = dataclasses.replace(request, recently_seen=np.array([top, top], dtype=np.int64))
    assert top in baseline.rank(once).creative_id
    assert top not in baseline.rank(twice).creative_id

    # Paused: the same catalog with the top creative's campaign paused.
    table = catalog.table
    paused_status = pc.if_else(
        pc.equal(table["creative_id"], top), pa.scalar("paused"), table["status"]
    )
    status = table.schema.get_field_index("status")
    paused = Catalog.from_arrow(table.set_column(status, "status", paused_status))
    paused_baseline = PlainTorchPipeline.from_workspace(
        workspace, catalog=paused, max_per_advertiser=CAP
    )
    assert top not in paused_baseline.rank(request).creative_id

    # Region: a creative that targets regions is dropped for a region it does not name.
    targeted = next(
        int(c) for c in baseline.rank(request).creative_id if _row(catalog, int(c))["regions"]
    )
    elsewhere = dataclasses.replace(request, region="nowhere")
    assert targeted in baseline.rank(request).creative_id
    assert targeted not in baseline.rank(elsewhere).creative_id


@pytest.mark.triton
def test_bench_command_writes_the_report_and_plots(workspace, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    code = main(
        [
            "bench",
            f"--workspace={workspace.root}",
            f"--rows={ROWS}",
            "--requests=4",
            "--rounds=1",
            "--concurrency=1",
            "--candidates=300",
            "--warmup=1",
            "--perf-analyzer-ms=300",
            f"--out={out}",
        ]
    )
    assert code == 0
    report = (out / "report.md").read_text()
    assert "reusing the workspace" in capsys.readouterr().out  # the fixture's, not a new one
    for name in CONFIGURATIONS:
        assert f"| {name} |" in report
    assert "## Targets at 300 candidates per request" in report
    assert "logical cores" in report
    for plot in ("latency.png", "throughput.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({plot})" in report
    results = json.loads((out / "results.json").read_text())
    summaries = {s["name"]: s for s in results["summaries"]}
    assert set(summaries) == set(CONFIGURATIONS)
    for summary in summaries.values():
        assert summary["requests"] == 4
        assert summary["requests_per_s"] > 0
        assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert summaries["plain-torch"]["stage_p50_ms"]["features"] > 0
    assert summaries["http+triton"]["outside_model_p50_ms"] > 0
    # Triton's perf_analyzer beside adrank's figures (1 and 300 rows, concurrency 1, 2, 4)
    assert "## Triton's perf_analyzer" in report
    perf = [(r["rows"], r["concurrency"]) for r in results["perf_analyzer"]]
    assert perf == [(1, 1), (1, 2), (1, 4), (300, 1), (300, 2), (300, 4)]
    assert all(0 < r["p50_us"] <= r["p99_us"] for r in results["perf_analyzer"])
