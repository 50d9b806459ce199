"""The ranker's dense part on the embedded Triton vs the same module run in-process with torch.

1,000 candidates per request at concurrency 1, 2 and 4 (threads sharing one client), through
gRPC and through system shared memory. The in-process TorchScript module is the baseline
(torch with one thread per call, as each Triton instance runs). After the run, Triton's own
statistics split each request's time into the model (``compute_infer``) and the rest
(serialization, transport, queueing, the Python backend's copies); that share is printed and
stored in ``extra_info``.

Run: ``.venv/bin/python -m pytest bench/bench_triton.py --benchmark-only`` (ratio table), or
``.venv/bin/python bench/bench_triton.py``: every variant once per round, in turn, which holds up
better on a shared, noisy machine.
Shapes: ``ADRANK_BENCH_E`` (embedding width, default 160), ``ADRANK_BENCH_N`` (dense, 8);
Triton instances: ``ADRANK_BENCH_INSTANCES`` (default 1).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from adrank.triton.client import RankerClient
from adrank.triton.server import EmbeddedTriton
from adrank.triton.testing import DemoDenseRanker, make_model_repository, script

CANDIDATES = 1000
E = int(os.environ.get("ADRANK_BENCH_E", "160"))
N = int(os.environ.get("ADRANK_BENCH_N", "8"))
INSTANCES = int(os.environ.get("ADRANK_BENCH_INSTANCES", "1"))
CONCURRENCY = [1, 2, 4]


def _module() -> torch.nn.Module:
    # About the size of the trained ranker's dense part: 2 cross layers, a 256-128 MLP.
    return DemoDenseRanker(E, N, hidden=(256, 128), cross_layers=2).eval()


@pytest.fixture(scope="module")
def requests_inputs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        (
            rng.standard_normal((CANDIDATES, E), dtype=np.float32),
            rng.standard_normal((CANDIDATES, N), dtype=np.float32),
        )
        for _ in range(max(CONCURRENCY))
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repository = make_model_repository(
        tmp_path_factory.mktemp("triton_models"),
        _module(),
        embedding_dim=E,
        dense_dim=N,
        instances=INSTANCES,
    )
    with EmbeddedTriton(repository) as running:
        yield running


def _round(pool: ThreadPoolExecutor, call, inputs, concurrency: int) -> list:
    if concurrency == 1:
        return [call(*inputs[0])]
    return list(pool.map(lambda i: call(*inputs[i]), range(concurrency)))


def _describe(benchmark, group: str, role: str, concurrency: int) -> None:
    benchmark.group = group
    benchmark.extra_info.update(
        role=role,
        items=CANDIDATES * concurrency,
        candidates=CANDIDATES,
        concurrency=concurrency,
        embedding_dim=E,
        dense_dim=N,
        instances=INSTANCES,
    )


@pytest.mark.parametrize("concurrency", CONCURRENCY)
def test_torch_in_process(benchmark, requests_inputs, concurrency):
    module = script(_module())
    torch.set_num_threads(1)  # as one Triton instance; threads give the parallelism

    def call(embeddings: np.ndarray, dense: np.ndarray):
        with torch.inference_mode():
            outputs = module(torch.from_numpy(embeddings), torch.from_numpy(dense))
        return [o.numpy() for o in outputs]

    _describe(benchmark, f"ranker {CANDIDATES} candidates x{concurrency}", "baseline", concurrency)
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(3):
            _round(pool, call, requests_inputs, concurrency)
        results = benchmark(_round, pool, call, requests_inputs, concurrency)
    assert results[0][0].shape == (CANDIDATES, 1)


@pytest.mark.parametrize("concurrency", CONCURRENCY)
@pytest.mark.parametrize("transport", ["grpc", "shm"])
def test_triton(benchmark, server, requests_inputs, concurrency, transport):
    threshold = 0 if transport == "shm" else -1
    client = RankerClient(server.grpc_url, timeout_s=30.0, shm_threshold_bytes=threshold)
    _describe(benchmark, f"ranker {CANDIDATES} candidates x{concurrency}", "adrank", concurrency)
    benchmark.extra_info["transport"] = transport
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            for _ in range(5):
                _round(pool, client.predict, requests_inputs, concurrency)
            before = _model_stats(client)
            results = benchmark(_round, pool, client.predict, requests_inputs, concurrency)
            after = _model_stats(client)
    finally:
        client.close()
    assert results[0].p_ctr.shape == (CANDIDATES,)
    _report_time_outside_model(benchmark, before, after, concurrency)


def _model_stats(client: RankerClient) -> dict[str, int]:
    stats = client._client.get_inference_statistics("ranker", as_json=True)["model_stats"][0]
    inference = stats["inference_stats"]
    totals = {k: int(inference[k].get("ns", 0)) for k in inference if k in _STAGES}
    totals["requests"] = int(inference["success"].get("count", 0))
    totals["executions"] = int(stats.get("execution_count", 0))
    return totals


_STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


def _report_time_outside_model(benchmark, before, after, concurrency) -> None:
    requests = after["requests"] - before["requests"]
    if requests == 0:
        return
    per_request = {k: (after[k] - before[k]) / requests / 1e3 for k in _STAGES}  # us
    # A request's latency is the round time (all `concurrency` requests run together).
    latency_us = benchmark.stats.stats.median * 1e6
    model_us = per_request["compute_infer"]
    benchmark.extra_info.update(
        latency_us=latency_us,
        server_us={k: round(v, 1) for k, v in per_request.items()},
        batched_executions_per_request=(after["executions"] - before["executions"]) / requests,
        share_outside_model=1 - model_us / latency_us,
    )
    print(
        f"\n  x{concurrency} {benchmark.extra_info['transport']}: latency {latency_us:.0f} us, "
        f"model (compute_infer) {model_us:.0f} us -> {1 - model_us / latency_us:.0%} outside "
        f"the model; server queue {per_request['queue']:.0f} us, input "
        f"{per_request['compute_input']:.0f} us, output {per_request['compute_output']:.0f} us"
    )


def interleaved_summary(rounds: int = 60) -> None:
    """Each round runs every variant once, in turn, so that a shared machine's noise hits all
    of them alike; prints per-variant medians and Triton's split of the time."""
    import tempfile
    import time

    module = _module()
    scripted = script(module)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    inputs = [
        (
            rng.standard_normal((CANDIDATES, E), dtype=np.float32),
            rng.standard_normal((CANDIDATES, N), dtype=np.float32),
        )
        for _ in range(max(CONCURRENCY))
    ]

    def in_process(embeddings: np.ndarray, dense: np.ndarray):
        with torch.inference_mode():
            return scripted(torch.from_numpy(embeddings), torch.from_numpy(dense))

    with tempfile.TemporaryDirectory() as root:
        # One model per transport, so that Triton's statistics tell them apart.
        for model in ("ranker_grpc", "ranker_shm"):
            make_model_repository(
                root, module, embedding_dim=E, dense_dim=N, model=model, instances=INSTANCES
            )
        with EmbeddedTriton(root) as server:
            clients = {
                "grpc": RankerClient(
                    server.grpc_url, model="ranker_grpc", timeout_s=30, shm_threshold_bytes=-1
                ),
                "shm": RankerClient(
                    server.grpc_url, model="ranker_shm", timeout_s=30, shm_threshold_bytes=0
                ),
            }
            calls = {"torch": in_process} | {k: c.predict for k, c in clients.items()}
            print(f"ranker dense part, E={E} N={N}, {CANDIDATES} candidates per request, "
                  f"{INSTANCES} Triton instance(s), {rounds} interleaved rounds")  # fmt: skip
            for concurrency in CONCURRENCY:
                with ThreadPoolExecutor(concurrency) as pool:
                    for call in calls.values():
                        for _ in range(5):
                            _round(pool, call, inputs, concurrency)
                    before = {k: _model_stats_of(c) for k, c in clients.items()}
                    times: dict[str, list[float]] = {k: [] for k in calls}
                    for _ in range(rounds):
                        for name, call in calls.items():
                            start = time.perf_counter()
                            _round(pool, call, inputs, concurrency)
                            times[name].append(time.perf_counter() - start)
                    after = {k: _model_stats_of(c) for k, c in clients.items()}
                base = np.median(times["torch"])
                for name, samples in times.items():
                    median, p99 = np.median(samples), np.percentile(samples, 99)
                    line = (
                        f"  x{concurrency} {name:<5} round p50 {median * 1e3:7.2f} ms  "
                        f"p99 {p99 * 1e3:7.2f} ms  {CANDIDATES * concurrency / median / 1e3:7.1f}"
                        f" k candidates/s  {base / median:5.2f}x torch"
                    )
                    if name in clients:
                        requests = after[name]["requests"] - before[name]["requests"]
                        model_s = after[name]["compute_infer"] - before[name]["compute_infer"]
                        model_s = model_s / requests / 1e9
                        # Requests of a round run together: one request's latency ~ the round.
                        # Two views of the overhead: the round minus the in-process model time,
                        # and minus Triton's compute_infer (which holds the stub's IPC too).
                        line += (
                            f"  outside the model {1 - base / median:4.0%} (vs torch), "
                            f"{1 - model_s / median:4.0%} (vs compute_infer)"
                        )
                    print(line)
            for client in clients.values():
                client.close()


def _model_stats_of(client: RankerClient) -> dict[str, int]:
    stats = client._client.get_inference_statistics(client.model, as_json=True)
    inference = stats["model_stats"][0]["inference_stats"]
    return {
        "requests": int(inference["success"].get("count", 0)),
        "compute_infer": int(inference["compute_infer"].get("ns", 0)),
    }


if __name__ == "__main__":
    interleaved_summary()
