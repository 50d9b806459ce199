"""The trained ranker's model stage on the embedded Triton: every served variant side by side.

Glossary: variant: a Python-backend deployment (``adrank.triton.model_config.DEPLOYMENTS``: a
runtime, a precision and a model file) with its thread count; model stage: one Triton call
(client to answer) for the ``CANDIDATES`` rows of one request.

A ranker is trained on the synthetic log (the default schema, as ``adrank demo`` trains it) and
exported once; one server holds a copy of the version per variant, so one run compares them
all on the same machine at the same moment. The baseline is ``python_torch_fp32`` (TorchScript
fp32 through the Python backend: the model as it served before). Each variant's click AUC is
measured on the held-out rows through the server, beside the training-time model's.

Run: ``.venv/bin/python bench/bench_triton.py`` (every variant in turn, a block of calls each,
round after round, which holds up better on a shared, noisy machine; prints the table), or
``.venv/bin/python -m pytest bench/bench_triton.py --benchmark-only`` (pytest-benchmark groups).
Rows per request: ``ADRANK_BENCH_CANDIDATES`` (default 1000); rounds: ``ADRANK_BENCH_ROUNDS``
(20) of ``ADRANK_BENCH_BLOCK`` (10) calls per variant;
concurrency levels of the table: ``ADRANK_BENCH_CONCURRENCY`` (``1,2,4``; default 1). The script
then runs Triton's perf_analyzer against the baseline and the default variant
(``ADRANK_BENCH_PERF_ANALYZER=0`` skips it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from adrank.benchmark.perf_analyzer import run_perf_analyzer
from adrank.data import SyntheticConfig, generate_log
from adrank.export import ExportResult, export_model
from adrank.features import FeaturePipeline, load_schema
from adrank.training.loop import TrainConfig, predict, train
from adrank.training.metrics import auc
from adrank.triton.client import RankerClient
from adrank.triton.model_config import write_model_config
from adrank.triton.server import EmbeddedTriton

CANDIDATES = int(os.environ.get("ADRANK_BENCH_CANDIDATES", "1000"))
ROUNDS = int(os.environ.get("ADRANK_BENCH_ROUNDS", "20"))
BLOCK = int(os.environ.get("ADRANK_BENCH_BLOCK", "10"))
BASELINE = "torch_fp32"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One served model: a deployment, its threads and instances, and the client's transport."""

    name: str
    deployment: str
    threads: int = 1
    instances: int = 1
    shm: bool = True  # inputs through Triton's system shared memory (else in the gRPC message)
    batching: bool = True  # Triton's dynamic batcher in front of the model


VARIANTS = [
    Variant("torch_fp32", "python_torch_fp32"),
    Variant("torch_bf16", "python_torch_bf16"),
    Variant("onnx_fp32", "python_onnx_fp32"),
    Variant("onnx_int8", "python_onnx_int8"),
    Variant("onnx_int8_grpc", "python_onnx_int8", shm=False),
    Variant("onnx_int8_2threads", "python_onnx_int8", threads=2),
    Variant("onnx_int8_2instances", "python_onnx_int8", instances=2),
    Variant("onnx_int8_nobatch", "python_onnx_int8", batching=False),
    Variant("torch_fp32_2threads", "python_torch_fp32", threads=2),
]


@dataclasses.dataclass
class Workload:
    export: ExportResult
    requests: list[tuple[np.ndarray, np.ndarray]]  # one per concurrent caller, CANDIDATES rows
    heldout: tuple[np.ndarray, np.ndarray, np.ndarray]  # embeddings, dense, click labels
    trained_auc: float  # click AUC of the training-time model on the held-out rows


def build_workload(root: Path, rows: int = 40_000) -> Workload:
    world = SyntheticConfig(
        num_advertisers=10, num_campaigns=20, num_creatives=60, num_users=2000, num_categories=8
    )
    log = generate_log(rows, seed=4, config=world).impressions
    result = train(log, load_schema(), config=TrainConfig(seed=0))
    model = result.model
    heldout = FeaturePipeline(model.schema)(log.take(result.heldout_rows))
    with torch.no_grad():  # the training-time model's own sparse part
        bags = {
            n: (torch.from_numpy(f.values), torch.from_numpy(f.offsets))
            for n, f in heldout.sparse.items()
        }
        embeddings = model.sparse(bags).numpy()
    labels = heldout.labels["click"]
    export = export_model(model, repository=root / "models", artifacts=root / "artifacts")
    requests = [
        (embeddings[start : start + CANDIDATES], heldout.dense[start : start + CANDIDATES])
        for start in range(0, 4 * CANDIDATES, CANDIDATES)
    ]
    trained_auc = auc(labels, predict(model, heldout)["ctr"])
    return Workload(export, requests, (embeddings, heldout.dense, labels), trained_auc)


def variant_repository(export: ExportResult, root: Path, variants: list[Variant]) -> Path:
    """A repository with one model per variant (named after it), each a copy of the version."""
    for variant in variants:
        model_dir = root / variant.name
        shutil.copytree(export.version_dir, model_dir / "1")
        write_model_config(
            model_dir,
            embedding_dim=export.manifest["embedding_dim"],
            dense_dim=export.manifest["dense_dim"],
            deployment=variant.deployment,
            outputs=export.manifest["outputs"],
            threads=variant.threads,
            instances=variant.instances,
            dynamic_batching=variant.batching,
        )
    return root


def served_click_auc(client: RankerClient, heldout: tuple[np.ndarray, ...]) -> float:
    embeddings, dense, labels = heldout
    p_ctr = np.concatenate(
        [
            client.predict(embeddings[s : s + CANDIDATES], dense[s : s + CANDIDATES]).p_ctr
            for s in range(0, len(labels), CANDIDATES)
        ]
    )
    return auc(labels, p_ctr.astype(np.float64))


def _clients(server: EmbeddedTriton, variants: list[Variant]) -> dict[str, RankerClient]:
    return {
        v.name: RankerClient(
            server.grpc_url, model=v.name, timeout_s=60, shm_threshold_bytes=0 if v.shm else -1
        )
        for v in variants
    }


@contextlib.contextmanager
def serving(variants: list[Variant]) -> Iterator[tuple[Workload, dict[str, RankerClient]]]:
    """Train, export, serve every variant on one embedded Triton; yield the workload and one
    warmed-up client per variant; always stop the server."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        workload = build_workload(root)
        repository = variant_repository(workload.export, root / "variants", variants)
        with EmbeddedTriton(repository) as server:
            clients = _clients(server, variants)
            try:
                for client in clients.values():
                    for _ in range(5):  # the first calls compile and allocate
                        client.predict(*workload.requests[0])
                yield workload, clients
            finally:
                for client in clients.values():
                    client.close()


def _round(pool: ThreadPoolExecutor | None, call, requests, concurrency: int) -> list:
    if pool is None or concurrency == 1:
        return [call(*requests[0])]
    return list(pool.map(lambda i: call(*requests[i]), range(concurrency)))


def _compute_infer_us(client: RankerClient) -> tuple[int, int]:
    """(successful requests, total compute_infer ns) of the client's model so far."""
    stats = client._client.get_inference_statistics(client.model, as_json=True)
    inference = stats["model_stats"][0]["inference_stats"]
    return int(inference["success"].get("count", 0)), int(inference["compute_infer"].get("ns", 0))


def interleaved_table(
    workload: Workload,
    clients: dict[str, RankerClient],
    concurrency: int = 1,
    rounds: int = ROUNDS,
    block: int = BLOCK,
) -> list[dict]:
    """Every variant in turn, ``rounds`` times, so that a shared machine's noise falls on all
    alike. ``block=0``: one call per variant per round (each call follows calls to the other
    models: caches and the stub's threads gone cold, as in a request path where other stages
    run between model calls); ``block=N``: one unmeasured call, then N measured calls in a row
    (steady state). One row per variant: p50/p99 of the model stage (a Triton call of
    CANDIDATES rows), ratio to the baseline's p50, Triton's compute_infer, the click AUC through
    the server and its difference from the trained model's."""
    rows = []
    aucs = {name: served_click_auc(c, workload.heldout) for name, c in clients.items()}
    before = {name: _compute_infer_us(c) for name, c in clients.items()}
    times: dict[str, list[float]] = {name: [] for name in clients}
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(rounds):
            for name, client in clients.items():
                if block:
                    _round(pool, client.predict, workload.requests, concurrency)
                for _ in range(max(block, 1)):
                    start = time.perf_counter()
                    _round(pool, client.predict, workload.requests, concurrency)
                    times[name].append(time.perf_counter() - start)
    after = {name: _compute_infer_us(c) for name, c in clients.items()}
    base = float(np.median(times[BASELINE]))
    for variant in VARIANTS:
        samples = np.array(times[variant.name])
        requests = after[variant.name][0] - before[variant.name][0]
        model_s = (after[variant.name][1] - before[variant.name][1]) / max(requests, 1) / 1e9
        p50 = float(np.median(samples))
        rows.append(
            {
                "variant": variant.name,
                "deployment": variant.deployment,
                "threads": variant.threads,
                "transport": "shm" if variant.shm else "grpc",
                "concurrency": concurrency,
                "block": block,
                "rounds": rounds,
                "p50_ms": p50 * 1e3,
                "p99_ms": float(np.percentile(samples, 99)) * 1e3,
                "speedup": base / p50,
                "compute_infer_ms": model_s * 1e3,
                "click_auc": aucs[variant.name],
                "auc_delta": aucs[variant.name] - workload.trained_auc,
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    print(
        f"model stage, {CANDIDATES} candidates per request, concurrency {rows[0]['concurrency']}, "
        f"{rows[0]['rounds']} interleaved rounds, "
        + (f"blocks of {rows[0]['block']} calls" if rows[0]["block"] else "one call per variant")
        + f"; baseline {BASELINE}"
    )
    header = ["variant", "p50 ms", "p99 ms", "x vs torch fp32", "compute_infer ms", "click AUC"]
    print("| " + " | ".join([*header, "AUC - trained"]) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['variant']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['speedup']:.2f} | "
            f"{r['compute_infer_ms']:.2f} | {r['click_auc']:.4f} | {r['auc_delta']:+.4f} |"
        )


# -- pytest-benchmark: one group per concurrency, the baseline beside each variant ------------


@pytest.fixture(scope="module")
def served():
    with serving(VARIANTS) as running:
        yield running


@pytest.mark.parametrize("concurrency", [1, 2, 4])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_model_stage(benchmark, served, variant, concurrency):
    workload, clients = served
    client = clients[variant.name]
    benchmark.group = f"ranker model stage {CANDIDATES} candidates x{concurrency}"
    benchmark.extra_info.update(
        role="baseline" if variant.name == BASELINE else "adrank",
        items=CANDIDATES * concurrency,
        candidates=CANDIDATES,
        concurrency=concurrency,
        deployment=variant.deployment,
        threads=variant.threads,
        transport="shm" if variant.shm else "grpc",
    )
    with ThreadPoolExecutor(concurrency) as pool:
        results = benchmark(_round, pool, client.predict, workload.requests, concurrency)
    assert results[0].p_ctr.shape == (CANDIDATES,)


def test_click_auc_within_bound(served):
    """Every variant's click AUC through the server within 0.001 of the training-time model's."""
    workload, clients = served
    for name, client in clients.items():
        assert abs(served_click_auc(client, workload.heldout) - workload.trained_auc) <= 1e-3, name


def print_perf_analyzer(url: str, variants: list[str]) -> None:
    """Triton's perf_analyzer against ``variants`` (model names on the server at ``url``)."""
    print(f"perf_analyzer (gRPC, system shared memory, random inputs), {CANDIDATES} and 1 rows")
    columns = ["variant", "rows", "concurrency", "requests/s", "p50 ms", "p90 ms", "p99 ms"]
    print("| " + " | ".join([*columns, "compute_infer ms"]) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in variants:
        for r in run_perf_analyzer(url, name, rows=[1, CANDIDATES]):
            print(
                f"| {name} | {r.rows} | {r.concurrency} | {r.requests_per_s:.1f} | "
                f"{r.p50_us / 1e3:.2f} | {r.p90_us / 1e3:.2f} | {r.p99_us / 1e3:.2f} | "
                f"{r.server_compute_infer_us / 1e3:.2f} |"
            )


if __name__ == "__main__":
    torch.set_num_threads(1)
    levels = [int(c) for c in os.environ.get("ADRANK_BENCH_CONCURRENCY", "1").split(",")]
    with serving(VARIANTS) as (workload, clients):
        for level in levels:
            print_table(interleaved_table(workload, clients, level, rounds=5 * ROUNDS, block=0))
            print_table(interleaved_table(workload, clients, level))
        if os.environ.get("ADRANK_BENCH_PERF_ANALYZER", "1") != "0":
            url = next(iter(clients.values())).url
            print_perf_analyzer(url, [BASELINE, "onnx_int8"])
