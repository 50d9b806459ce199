"""One ranking request of 1,000 candidates, end to end: adrank's Ranker against the plain
PyTorch pipeline a user would otherwise write (:mod:`adrank.benchmark.baseline`).

Same workspace (a synthetic world, a trained and exported model, its catalog), same requests.
adrank ranks with the dense model in process (TorchScript, one torch thread) and on the embedded
Triton; the baseline runs the same TorchScript model in process, so the in-process pair differs
only in what surrounds the model. One benchmarked call ranks the next request of a fixed cycle.

    .venv/bin/python -m pytest bench/bench_end_to_end.py --benchmark-only

The workspace is the one ``adrank bench`` builds (``artifacts/bench-world``, reused when
present); ``ADRANK_BENCH_WORKSPACE`` and ``ADRANK_BENCH_ROWS`` pick another. The closed-loop
load test with concurrency, percentiles and the HTTP service is ``adrank bench``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from adrank.benchmark.baseline import PlainTorchPipeline
from adrank.benchmark.suite import SuiteConfig
from adrank.orchestrator.model import TorchScriptModel, TritonModel
from adrank.orchestrator.ranker import Ranker
from adrank.triton.server import EmbeddedTriton
from adrank.workspace import prepare_workspace, sample_requests

CANDIDATES = 1000
K = 10
CAP = 2
REQUESTS = 32
GROUP = f"rank {CANDIDATES} candidates, k={K}"


@pytest.fixture(scope="module")
def workspace():
    defaults = SuiteConfig()
    root = Path(os.environ.get("ADRANK_BENCH_WORKSPACE", defaults.workspace))
    rows = int(os.environ.get("ADRANK_BENCH_ROWS", defaults.rows))
    return prepare_workspace(root, rows=rows, repository=root / "triton_models")


@pytest.fixture(scope="module")
def requests(workspace):
    return sample_requests(workspace, REQUESTS, candidates=CANDIDATES, k=K, seed=1)


@pytest.fixture(scope="module")
def version_dir(workspace) -> Path:
    return workspace.repository / workspace.model_name / str(workspace.version)


def _check(response, request) -> None:
    """Checked once, outside the timed calls: k creatives at most CAP per advertiser."""
    assert 0 < len(response.creative_id) <= request.k
    assert np.isin(response.creative_id, request.candidates).all()
    assert np.unique(response.advertiser_id, return_counts=True)[1].max() <= CAP


def _run(benchmark, rank, requests, role: str, model: str) -> None:
    _check(rank(requests[0]), requests[0])
    cycle = itertools.cycle(requests)
    for _ in range(5):  # warm up: TorchScript's profiling runs, Triton's instance
        rank(next(cycle))
    benchmark.group = GROUP
    benchmark.extra_info.update(role=role, items=CANDIDATES, candidates=CANDIDATES, model=model)
    benchmark(lambda: rank(next(cycle)))


def test_plain_torch_pipeline(benchmark, workspace, requests) -> None:
    baseline = PlainTorchPipeline.from_workspace(workspace, max_per_advertiser=CAP)
    _run(benchmark, baseline.rank, requests, "baseline", "torchscript in process")


def test_ranker_torchscript_in_process(benchmark, workspace, requests, version_dir) -> None:
    ranker = Ranker.from_export(
        workspace.artifacts_dir, workspace.catalog_path, TorchScriptModel(version_dir)
    )
    _run(benchmark, ranker.rank, requests, "adrank", "torchscript in process")


def test_ranker_on_embedded_triton(benchmark, workspace, requests) -> None:
    with EmbeddedTriton(workspace.repository, models=[workspace.model_name]) as server:
        model = TritonModel(server.grpc_url, model=workspace.model_name, timeout_s=10.0)
        try:
            ranker = Ranker.from_export(workspace.artifacts_dir, workspace.catalog_path, model)
            _run(benchmark, ranker.rank, requests, "adrank", "embedded triton")
        finally:
            model.close()
