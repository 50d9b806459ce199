"""The HTTP API's contract over a stand-in backend: statuses, limits, error bodies, metrics."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from adrank.orchestrator.errors import ModelUnavailableError
from adrank.orchestrator.request import RankRequest, RankResponse
from adrank.service.app import ServiceLimits, create_app


class StandInBackend:
    """Ranks candidates by id, descending; can be told to fail like a down model."""

    def __init__(self) -> None:
        self.down = False
        self.requests: list[RankRequest] = []

    def rank(self, request: RankRequest) -> RankResponse:
        if self.down:
            raise ModelUnavailableError("Triton did not answer within 50 ms (deadline)")
        self.requests.append(request)
        chosen = np.sort(request.candidates)[::-1][: request.k]
        ones = np.ones(len(chosen))
        return RankResponse(
            request_id=request.request_id,
            model_version="ranker/1",
            creative_id=chosen,
            campaign_id=chosen // 10,
            advertiser_id=chosen // 100,
            p_ctr=ones * 0.01,
            p_cvr=ones * 0.1,
            p_neg=ones * 0.001,
            ecpm=ones * 5.0,
            price=ones * 1.0,
            timings_ms={"catalog": 0.01, "model": 0.5},
            unknown_candidates=1,
        )

    def readiness(self) -> tuple[bool, str]:
        return (not self.down, "model ranker/1 ready" if not self.down else "Triton is down")


@pytest.fixture
def backend() -> StandInBackend:
    return StandInBackend()


@pytest.fixture
def client(backend: StandInBackend) -> TestClient:
    app = create_app(backend, ServiceLimits(max_candidates=100, max_body_bytes=4096))
    return TestClient(app, base_url="http://localhost")


JSON = {"content-type": "application/json"}
BODY = {
    "request_id": "r1",
    "user": {"age_bucket": "25-34", "interests": ["music", "games"]},
    "context": {"placement": "feed", "hour": 21},
    "candidates": [101, 305, 202],
    "k": 2,
    "region": "US",
    "recently_seen": [305],
    "constraints": {"max_per_advertiser": 1, "blocked_categories": [4]},
}


def test_rank_returns_creatives_in_order(client: TestClient, backend: StandInBackend) -> None:
    response = client.post("/v1/rank", json=BODY)
    assert response.status_code == 200
    body = response.json()
    assert [c["creative_id"] for c in body["creatives"]] == [305, 202]
    assert body["creatives"][0] == {
        "creative_id": 305,
        "campaign_id": 30,
        "advertiser_id": 3,
        "p_ctr": 0.01,
        "p_cvr": 0.1,
        "p_neg": 0.001,
        "ecpm": 5.0,
        "price": 1.0,
        "slot": None,  # no feed in the request
    }
    assert body["model_version"] == "ranker/1"
    assert body["timings_ms"] == {"catalog": 0.01, "model": 0.5}
    request = backend.requests[0]
    assert request.constraints.max_per_advertiser == 1
    assert request.constraints.blocked_categories == (4,)
    np.testing.assert_array_equal(request.recently_seen, [305])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"k": 0}, "k"),
        ({"k": "ten"}, "k"),
        ({"candidates": []}, "candidates"),
        ({"candidates": ["abc"]}, "candidates"),
        ({"request_id": ""}, "request_id"),
        ({"constraints": {"frequency_cap": 0}}, "frequency_cap"),
        ({"unexpected": 1}, "unexpected"),
        ({"user": {"age": {"nested": 1}}}, "user"),
    ],
)
def test_bad_requests_get_422_naming_the_field(client: TestClient, change, field) -> None:
    response = client.post("/v1/rank", json={**BODY, **change})
    assert response.status_code == 422
    locations = [entry["loc"] for entry in response.json()["detail"]]
    assert any(field in loc for loc in locations), locations


def test_missing_field_and_broken_json(client: TestClient) -> None:
    body = {k: v for k, v in BODY.items() if k != "candidates"}
    response = client.post("/v1/rank", json=body)
    assert response.status_code == 422
    assert ["body", "candidates"] in [e["loc"] for e in response.json()["detail"]]
    broken = client.post("/v1/rank", content=b"{not json", headers=JSON)
    assert broken.status_code == 422


def test_too_many_candidates_gets_413(client: TestClient) -> None:
    response = client.post("/v1/rank", json={**BODY, "candidates": list(range(101))})
    assert response.status_code == 413
    assert response.json() == {
        "error": "too_many_candidates",
        "detail": "candidates has 101 ids; the limit is 100",
    }


def test_too_large_a_body_gets_413(client: TestClient) -> None:
    huge = {**BODY, "recently_seen": list(range(2000))}
    response = client.post("/v1/rank", json=huge)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"

    def chunks():  # no Content-Length: the limit holds for streamed bodies too
        yield b'{"request_id": "r", "candidates": ['
        for _ in range(500):
            yield b"1234567,"
        yield b'1], "k": 1}'

    streamed = client.post("/v1/rank", content=chunks(), headers=JSON)
    assert streamed.status_code == 413


def test_model_down_gets_503_with_reason(client: TestClient, backend: StandInBackend) -> None:
    backend.down = True
    response = client.post("/v1/rank", json=BODY)
    assert response.status_code == 503
    assert response.json() == {
        "error": "model_unavailable",
        "detail": "Triton did not answer within 50 ms (deadline)",
    }
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["detail"] == "Triton is down"
    backend.down = False
    assert client.post("/v1/rank", json=BODY).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_health_metrics_and_docs(client: TestClient, backend: StandInBackend) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    client.post("/v1/rank", json=BODY)
    backend.down = True
    client.post("/v1/rank", json=BODY)
    client.post("/v1/rank", json={**BODY, "candidates": list(range(101))})
    text = client.get("/metrics").text
    assert 'adrank_requests_total{status="200"} 1.0' in text
    assert 'adrank_requests_total{status="503"} 1.0' in text
    assert 'adrank_errors_total{kind="model_unavailable"} 1.0' in text
    assert 'adrank_errors_total{kind="too_many_candidates"} 1.0' in text
    assert 'adrank_stage_seconds_count{stage="model"} 1.0' in text
    assert "adrank_unknown_candidates_total 1.0" in text
    schema = client.get("/openapi.json").json()
    assert "/v1/rank" in schema["paths"]


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_candidates must be an integer >= 1, got 0"):
        ServiceLimits(max_candidates=0)
    with pytest.raises(ValueError, match="max_body_bytes must be an integer >= 1024, got 10"):
        ServiceLimits(max_body_bytes=10)
