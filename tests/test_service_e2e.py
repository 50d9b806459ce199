"""The ranking service end to end: real embedded Triton, real HTTP (uvicorn on loopback).

Fault tests stop Triton under a bounded load and check that the service answers 503 with a
reason (never 500, never a hang) and recovers by itself when Triton is back.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest

from adrank.orchestrator.catalog import Catalog
from adrank.orchestrator.model import TorchScriptModel, TritonModel
from adrank.orchestrator.ranker import Ranker
from adrank.ports import free_port
from adrank.service.schemas import rank_request_json
from adrank.service.stack import HttpServer, serving_stack
from adrank.triton import EmbeddedTriton
from adrank.workspace import fallback_rates, sample_requests
from serving_process import start_serve

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def workspace(serving_workspace):
    return serving_workspace


@pytest.fixture(scope="module")
def requests(workspace):
    return sample_requests(workspace, 8, candidates=300, k=6, seed=5)


@pytest.fixture(scope="module")
def service(workspace):
    # The in-process reference runs model.pt (TorchScript fp32): serve that form, not the
    # default int8 ONNX one, so the two must agree to float precision.
    triton = EmbeddedTriton(
        workspace.repository, models=[workspace.model_name], model_config_name="python_torch_fp32"
    )
    with (
        triton,
        serving_stack(
            workspace.artifacts_dir,
            workspace.catalog_path,
            repository=workspace.repository,
            triton_url=triton.grpc_url,
        ) as stack,
        HttpServer(stack.app) as http,
    ):
        yield stack, http


def test_http_ranking_equals_the_in_process_ranker(workspace, requests, service) -> None:
    _, http = service
    version_dir = workspace.repository / workspace.model_name / str(workspace.version)
    local = Ranker.from_export(
        workspace.artifacts_dir, workspace.catalog_path, TorchScriptModel(version_dir)
    )
    for request in requests:
        response = httpx.post(f"{http.url}/v1/rank", json=rank_request_json(request), timeout=30)
        assert response.status_code == 200, response.text
        got = response.json()
        expected = local.rank(request)
        assert [c["creative_id"] for c in got["creatives"]] == expected.creative_id.tolist()
        np.testing.assert_allclose([c["ecpm"] for c in got["creatives"]], expected.ecpm, rtol=1e-5)
        np.testing.assert_allclose(
            [c["price"] for c in got["creatives"]], expected.price, rtol=1e-5
        )
        assert got["model_version"].startswith("ranker/")
        assert got["degraded"] is False


def test_ready_health_and_metrics(service, requests) -> None:
    _, http = service
    assert httpx.get(f"{http.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{http.url}/readyz")
    assert ready.status_code == 200
    assert "ready" in ready.json()["detail"]
    httpx.post(f"{http.url}/v1/rank", json=rank_request_json(requests[0]), timeout=30)
    metrics = httpx.get(f"{http.url}/metrics").text
    assert 'adrank_stage_seconds_count{stage="model"}' in metrics
    assert 'adrank_requests_total{status="200"}' in metrics
    bad = httpx.post(f"{http.url}/v1/rank", json={**rank_request_json(requests[0]), "k": -1})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "k"]


def test_catalog_swap_under_http_load_fails_no_request(service, requests, workspace) -> None:
    stack, http = service
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(40):
                if stop.is_set():
                    return
                statuses.append(
                    client.post(
                        f"{http.url}/v1/rank", json=rank_request_json(requests[1])
                    ).status_code
                )

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(4):
        stack.ranker.swap_catalog(Catalog.from_parquet(workspace.catalog_path))
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert statuses
    assert set(statuses) == {200}


def test_kill_switch_under_load_takes_effect_on_the_next_request(service, requests) -> None:
    _, http = service
    url, payload = f"{http.url}/v1/rank", rank_request_json(requests[3])
    advertiser = httpx.post(url, json=payload, timeout=30).json()["creatives"][0]["advertiser_id"]
    answers: list[tuple[float, httpx.Response]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set() and len(answers) < 300:
                sent = time.monotonic()
                answers.append((sent, client.post(url, json=payload)))

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.3)
        killed = httpx.put(
            f"{http.url}/v1/kill-switches/advertiser/{advertiser}", json={"reason": "review"}
        )
        killed_at = time.monotonic()
        assert killed.status_code == 200
        assert str(advertiser) in killed.json()["advertisers"]
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(timeout=60)
        httpx.delete(f"{http.url}/v1/kill-switches/advertiser/{advertiser}")
    after = [r for sent, r in answers if sent > killed_at]
    assert after
    assert all(r.status_code == 200 for _, r in answers)
    for response in after:
        assert advertiser not in [c["advertiser_id"] for c in response.json()["creatives"]]
    restored = httpx.post(url, json=payload, timeout=30).json()["creatives"]
    assert restored[0]["advertiser_id"] == advertiser


def test_spend_events_over_http_stop_a_spent_campaign(service, requests) -> None:
    _, http = service
    url, payload = f"{http.url}/v1/rank", rank_request_json(requests[4])
    campaign = httpx.post(url, json=payload, timeout=30).json()["creatives"][0]["campaign_id"]
    budget = httpx.put(f"{http.url}/v1/campaigns/{campaign}/budget", json={"daily_budget": 5})
    assert budget.status_code == 200
    event = {"campaign_id": campaign, "kind": "impression", "cost": 5.0, "timestamp": time.time()}
    recorded = httpx.post(f"{http.url}/v1/events", json={"events": [{"event_id": "e1", **event}]})
    assert recorded.json() == {"accepted": 1, "duplicates": 0}
    assert httpx.get(f"{http.url}/v1/campaigns/{campaign}/pacing").json()["exhausted"]
    creatives = httpx.post(url, json=payload, timeout=30).json()["creatives"]
    assert campaign not in [c["campaign_id"] for c in creatives]
    bad = httpx.post(f"{http.url}/v1/events", json={"events": [{**event, "event_id": ""}]})
    assert bad.status_code == 422


def _hammer(url: str, payload: dict, seconds: float) -> list[httpx.Response]:
    """Closed loop on loopback for a bounded time; every answer is kept."""
    answers: list[httpx.Response] = []
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline and len(answers) < 400:
            answers.append(client.post(url, json=payload))
    return answers


@pytest.mark.parametrize("fallback", [False, True], ids=["503", "degraded"])
def test_triton_down_under_load_then_back(workspace, requests, fallback) -> None:
    ports = {"grpc_port": free_port(), "http_port": free_port(), "models": [workspace.model_name]}
    triton = EmbeddedTriton(workspace.repository, **ports).start()
    try:
        with (
            serving_stack(
                workspace.artifacts_dir,
                workspace.catalog_path,
                triton_url=triton.grpc_url,
                deadline_ms=200,
                fallback=fallback_rates(workspace) if fallback else None,
            ) as stack,
            HttpServer(stack.app) as http,
        ):
            url, payload = f"{http.url}/v1/rank", rank_request_json(requests[2])
            assert httpx.post(url, json=payload, timeout=30).status_code == 200
            results: list[httpx.Response] = []
            worker = threading.Thread(target=lambda: results.extend(_hammer(url, payload, 4.0)))
            worker.start()
            time.sleep(0.5)
            triton.stop()  # Triton dies under load
            worker.join(timeout=60)
            statuses = {r.status_code for r in results}
            assert 500 not in statuses
            if fallback:
                assert statuses == {200}
                assert any(r.json()["degraded"] for r in results)
            else:
                assert 503 in statuses
                assert statuses <= {200, 503}
                failed = next(r for r in results if r.status_code == 503)
                assert failed.json()["error"] == "model_unavailable"
                assert "ranking model unavailable" in failed.json()["detail"]
                assert httpx.get(f"{http.url}/readyz").status_code == 503

            triton = EmbeddedTriton(workspace.repository, **ports).start()  # Triton is back
            deadline = time.monotonic() + 30
            while True:
                answer = httpx.post(url, json=payload, timeout=30)
                if answer.status_code == 200 and not answer.json()["degraded"]:
                    break
                assert time.monotonic() < deadline, answer.text
                time.sleep(0.2)
            assert httpx.get(f"{http.url}/readyz").status_code == 200
    finally:
        triton.stop()


def _triton_url_of(parent: int) -> str:
    """The gRPC address of the tritonserver that process ``parent`` started."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and command[0].endswith(b"/tritonserver"):
            args = dict(a.decode().split("=", 1) for a in command[1:] if b"=" in a)
            return f"{args['--grpc-address']}:{args['--grpc-port']}"
    raise AssertionError(f"process {parent} runs no tritonserver")


def test_adrank_serve_int8_answers_and_stops_cleanly_on_sigterm(
    workspace, requests, tmp_path
) -> None:
    process, url = start_serve(
        "--precision=int8",
        f"--workspace={workspace.root}",
        f"--repository={workspace.repository}",
        f"--state={tmp_path / 'state.sqlite'}",
        "--deadline-ms=5000",
        port=free_port(),
    )
    try:
        answer = httpx.post(f"{url}/v1/rank", json=rank_request_json(requests[0]), timeout=30)
        assert answer.status_code == 200, answer.text
        creatives = answer.json()["creatives"]
        # Scored with the int8 tables: as an int8 ranker in this process over the same Triton
        # model, not as an fp32 one.
        model = TritonModel(
            _triton_url_of(process.pid), version=str(workspace.version), timeout_s=30
        )
        try:
            local = {
                precision: Ranker.from_export(
                    workspace.artifacts_dir, workspace.catalog_path, model, precision=precision
                ).rank(requests[0])
                for precision in ("fp32", "int8")
            }
        finally:
            model.close()
        assert [c["creative_id"] for c in creatives] == local["int8"].creative_id.tolist()
        ecpm = [c["ecpm"] for c in creatives]
        np.testing.assert_allclose(ecpm, local["int8"].ecpm, rtol=1e-5)
        assert ecpm != local["fp32"].ecpm.tolist()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "leaked" not in err
    assert (tmp_path / "state.sqlite").exists()
    assert not (workspace.repository / workspace.model_name / "2").exists()  # served as built
