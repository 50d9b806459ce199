"""``adrank demo``: the README's main job, end to end on this machine.

Builds (or reuses) the demo workspace: a synthetic short-video ads log and catalog, a
multi-task ranker trained on it and exported. Then starts the embedded Triton and the ranking
service on loopback ports, sends ranking requests over HTTP, prints the ranked creatives and a
latency summary, and stops everything it started. Triton runs under the same supervisor as in
``adrank serve`` (:mod:`adrank.triton.supervisor`): if it dies mid-demo, it is restarted.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from pathlib import Path

import numpy as np

HELP = "run the end-to-end demo: train, export, serve on the embedded Triton, rank over HTTP"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", type=Path, default=Path("artifacts/demo"))
    # 2M rows: the click AUC comes within 0.01 of the oracle (about 3 minutes on 2 cores).
    parser.add_argument("--rows", type=int, default=2_000_000, help="impressions to train on")
    parser.add_argument("--requests", type=int, default=50, help="requests for the latency summary")
    parser.add_argument("--candidates", type=int, default=1000, help="candidates per request")
    parser.add_argument("--k", type=int, default=8, help="creatives per response")


def _post(url: str, body: dict) -> tuple[dict, float]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"content-type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    return payload, (time.perf_counter() - start) * 1e3


def _print_ranking(body: dict, response: dict) -> None:
    user = body["user"]
    context = body["context"]
    print(
        f"\nrequest {body['request_id']}: user {user.get('user_id')} ({user.get('country')}, "
        f"age bucket {user.get('age_bucket')}), {context['placement']} at {context['hour']}h, "
        f"{len(body['candidates'])} candidates -> top {body['k']}"
    )
    header = (
        f"{'#':>2} {'creative':>9} {'campaign':>9} {'advertiser':>10} {'pCTR':>7} "
        f"{'pCVR':>7} {'pNeg':>7} {'eCPM':>9} {'price':>8}"
    )
    print(header)
    print("-" * len(header))
    for rank, c in enumerate(response["creatives"], 1):
        rates = " ".join(  # a rate the model does not predict is null
            f"{'-':>7}" if c[name] is None else f"{c[name]:>7.4f}"
            for name in ("p_ctr", "p_cvr", "p_neg")
        )
        print(
            f"{rank:>2} {c['creative_id']:>9} {c['campaign_id']:>9} {c['advertiser_id']:>10} "
            f"{rates} {c['ecpm']:>9.2f} {c['price']:>8.3f}"
        )


def run(args: argparse.Namespace) -> int:
    from adrank.service.schemas import rank_request_json
    from adrank.service.stack import HttpServer, serving_stack
    from adrank.workspace import prepare_workspace, sample_requests

    workspace = prepare_workspace(args.workspace, rows=args.rows)
    requests = sample_requests(
        workspace, args.requests, candidates=args.candidates, k=args.k, seed=1
    )
    print("\nstarting the embedded Triton and the ranking service (loopback)")
    with (
        serving_stack(
            workspace.artifacts_dir, workspace.catalog_path, repository=workspace.repository
        ) as stack,
        HttpServer(stack.app) as http,
    ):
        print(f"Triton gRPC at {stack.triton.grpc_url}, service at {http.url}")
        url = f"{http.url}/v1/rank"
        latencies, stages = [], []
        for i, request in enumerate(requests):
            body = rank_request_json(request)
            response, ms = _post(url, body)
            if i < 2:
                _print_ranking(body, response)
            if i > 0:  # the first request warms the caches and Triton's model instance
                latencies.append(ms)
                stages.append(response["timings_ms"])
        with urllib.request.urlopen(f"{http.url}/readyz", timeout=10) as ready:
            print(f"\nreadyz: {json.loads(ready.read())['detail']}")
    _print_latency(latencies, stages, args.candidates)
    print("stopped the service and Triton")
    return 0


def _print_latency(latencies: list[float], stages: list[dict], candidates: int) -> None:
    if not latencies:
        return
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    print(
        f"\nlatency over {len(latencies)} requests of {candidates} candidates, end to end over "
        f"HTTP: p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms"
    )
    names = list(stages[0])
    medians = {name: float(np.median([s[name] for s in stages])) for name in names}
    outside = float(np.median([sum(v for k, v in s.items() if k != "model") for s in stages]))
    print("per stage, p50 ms: " + ", ".join(f"{n} {medians[n]:.3f}" for n in names))
    print(f"outside the model (every stage but the Triton call), p50: {outside:.3f} ms")
