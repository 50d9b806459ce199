"""A corpus of hostile HTTP requests against the real app (a real Ranker over an in-process
TorchScript model): each gets its declared status with a body naming the field, never a 500,
and the service ranks exactly as before afterwards. Slow and truncated bodies run over real
HTTP on loopback (uvicorn), sent byte by byte from a raw socket.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from adrank.pacing.events import MAX_COST, EventBounds, SpendEvent
from adrank.service.limits import ServiceLimits
from adrank.service.stack import HttpServer
from service_world import LOCAL, NOW, Service, build_world, event, make_service

LIMITS = ServiceLimits(max_candidates=2000, max_body_bytes=64 * 1024, read_timeout_s=0.5)
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("hostile"))


@pytest.fixture
def service(world) -> Service:
    return make_service(world, LIMITS)


@pytest.fixture
def client(service: Service) -> TestClient:
    return TestClient(service.app, base_url=LOCAL, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def baseline(world) -> list[int]:
    app = make_service(world, LIMITS).app
    response = TestClient(app, base_url=LOCAL).post("/v1/rank", json=world.good_body())
    assert response.status_code == 200, response.text
    ranked = [c["creative_id"] for c in response.json()["creatives"]]
    assert len(ranked) == 5
    return ranked


def encode(body: Any) -> bytes:
    """JSON as a hostile client writes it: lone surrogates escaped, NaN allowed."""
    return json.dumps(body, ensure_ascii=True, allow_nan=True).encode()


def rank_with(**changes: Any) -> Callable[[Any], bytes]:
    """The good body with fields replaced (``user__x`` sets ``user["x"]``)."""

    def build(world) -> bytes:
        body = world.good_body("hostile")
        for key, value in changes.items():
            if "__" in key:
                side, name = key.split("__")
                body[side] = {**body[side], name: value}
            else:
                body[key] = value
        return encode(body)

    return build


def raw(data: bytes) -> Callable[[Any], bytes]:
    return lambda _: data


def deep(levels: int) -> bytes:
    return b'{"request_id": "r", "k": 1, "candidates": [1], "user": {"x": ' + (
        b"[" * levels + b"]" * levels + b"}}"
    )


# (case, body, status, a field the 422 must name)
RANK_CASES = [
    ("candidate above int64", rank_with(candidates=[2**63]), 422, "candidates"),
    ("candidate below int64", rank_with(candidates=[-(2**63) - 1]), 422, "candidates"),
    ("recently_seen above int64", rank_with(recently_seen=[2**63]), 422, "recently_seen"),
    (
        "blocked category above int64",
        rank_with(constraints={"blocked_categories": [2**64]}),
        422,
        "blocked_categories",
    ),
    ("user_id above int64", rank_with(user__user_id=2**63), 422, "user_id"),
    ("interest above int64", rank_with(user__interests=[2**63]), 422, "interests"),
    (
        "max_per_advertiser 2**64",
        rank_with(constraints={"max_per_advertiser": 2**64}),
        422,
        "max_per_advertiser",
    ),
    (
        "max_per_advertiser 0",
        rank_with(constraints={"max_per_advertiser": 0}),
        422,
        "max_per_advertiser",
    ),
    ("frequency_cap 2**63", rank_with(constraints={"frequency_cap": 2**63}), 422, "frequency_cap"),
    ("categorical float", rank_with(user__user_id=1.5), 422, "user_id"),
    ("categorical list", rank_with(user__user_id=[1, 2]), 422, "user_id"),
    ("categorical 1e308", rank_with(context__hour=1e308), 422, "hour"),
    ("categorical bool", rank_with(user__user_id=True), 422, "user_id"),
    ("numeric string", rank_with(user__watch_minutes="x"), 422, "watch_minutes"),
    ("numeric bool", rank_with(user__watch_minutes=False), 422, "watch_minutes"),
    ("numeric list", rank_with(user__watch_minutes=[1.0]), 422, "watch_minutes"),
    ("multi-valued scalar", rank_with(user__interests="music"), 422, "interests"),
    ("multi-valued mixed list", rank_with(user__interests=[1, "a"]), 422, "interests"),
    ("feature object", rank_with(user__age_bucket={"nested": 1}), 422, "age_bucket"),
    ("k as string", rank_with(k="5"), 422, "k"),
    ("k as bool", rank_with(k=True), 422, "k"),
    ("k as float", rank_with(k=5.0), 422, "k"),
    ("k over max_k", rank_with(k=1001), 422, "k"),
    ("k zero", rank_with(k=0), 422, "k"),
    ("candidate bool", rank_with(candidates=[True]), 422, "candidates"),
    ("candidate string", rank_with(candidates=["100007"]), 422, "candidates"),
    ("region number", rank_with(region=5), 422, "region"),
    ("request_id number", rank_with(request_id=5), 422, "request_id"),
    ("request_id lone surrogate", rank_with(request_id="\ud800"), 422, "request_id"),
    ("region lone surrogate", rank_with(region="\udfff"), 422, "region"),
    ("unknown feature is ignored", rank_with(user__x="ok"), 200, None),
    ("feature value lone surrogate", rank_with(user__country="\ud800x"), 422, "country"),
    ("request_id too long", rank_with(request_id="r" * 129), 422, "request_id"),
    ("feature string too long", rank_with(user__country="U" * 257), 422, "country"),
    ("feature list too long", rank_with(user__interests=list(range(1001))), 422, "interests"),
    ("unknown field", rank_with(debug=True), 422, "debug"),
    ("missing candidates", raw(b'{"request_id": "r", "k": 1}'), 422, "candidates"),
    ("NaN literal", raw(b'{"request_id": "r", "k": NaN, "candidates": [1]}'), 422, "body"),
    (
        "Infinity literal",
        raw(b'{"request_id": "r", "k": Infinity, "candidates": [1]}'),
        422,
        "body",
    ),
    ("NaN feature", rank_with(user__watch_minutes=float("nan")), 422, "body"),
    ("1e400", raw(b'{"request_id": "r", "k": 1e400, "candidates": [1]}'), 422, "body"),
    ("5,000-digit integer", raw(b'{"request_id": "r", "k": ' + b"9" * 5000 + b"}"), 422, "body"),
    ("broken JSON", raw(b"{not json"), 422, "body"),
    ("not UTF-8", raw(b'{"request_id": "\xff\xfe"}'), 422, "body"),
    ("empty body", raw(b""), 422, "body"),
    ("top-level array", raw(b"[1, 2]"), 422, "body"),
    ("nesting 17 deep", raw(deep(17)), 422, "body"),
    ("nesting 30,000 deep", raw(deep(30_000)), 422, "body"),
    ("too many candidates", rank_with(candidates=list(range(1, 2002))), 413, None),
    ("body over the limit", rank_with(recently_seen=list(range(20_000))), 413, None),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "field"), RANK_CASES, ids=[c[0] for c in RANK_CASES]
)
def test_hostile_rank_request(client, world, baseline, case, body, status, field) -> None:
    response = client.post("/v1/rank", content=body(world), headers=JSON)
    assert response.status_code == status, response.text
    if status == 422:
        locations = [entry["loc"] for entry in response.json()["detail"]]
        assert any(field in loc for loc in locations), locations
    elif status == 413:
        assert response.json()["error"] in ("too_many_candidates", "body_too_large")
    still_ranks(client, world, baseline)


def still_ranks(client: TestClient, world, baseline: list[int]) -> None:
    response = client.post("/v1/rank", json=world.good_body())
    assert response.status_code == 200, response.text
    assert [c["creative_id"] for c in response.json()["creatives"]] == baseline


def test_a_lone_surrogate_feature_name_is_named(client, world, baseline) -> None:
    body = world.good_body()
    text = encode(body).replace(b'"user": {', b'"user": {"\\ud800": 1, ', 1)
    response = client.post("/v1/rank", content=text, headers=JSON)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "user"]
    still_ranks(client, world, baseline)


def test_streamed_body_over_the_limit_is_413(client, world, baseline) -> None:
    def chunks():  # no Content-Length: the limit holds as the body streams in
        yield b'{"request_id": "r", "k": 1, "candidates": ['
        for _ in range(20_000):
            yield b"1234567,"
        yield b"1]}"

    response = client.post("/v1/rank", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    still_ranks(client, world, baseline)


def test_duplicate_candidates_are_merged_and_counted(client, world, baseline) -> None:
    body = world.good_body()
    candidates = body["candidates"]
    response = client.post(
        "/v1/rank", json={**body, "candidates": candidates * 3 + candidates[::-1]}
    )
    assert response.status_code == 200
    got = response.json()
    ids = [c["creative_id"] for c in got["creatives"]]
    assert ids == baseline
    assert len(set(ids)) == len(ids)
    assert got["duplicate_candidates"] == 3 * len(candidates)
    metrics = client.get("/metrics").text
    assert f"adrank_duplicate_candidates_total {3.0 * len(candidates)}" in metrics


def test_foreign_host_and_methods(client, world, baseline) -> None:
    for host in ("attacker.example", "localhost.attacker.example", "127.0.0.2"):
        response = client.post("/v1/rank", json=world.good_body(), headers={"host": host})
        assert response.status_code == 421, host
        assert response.json()["error"] == "misdirected_host"
    options = client.options("/v1/ad-load-caps")
    assert options.status_code == 204
    assert options.headers["allow"] == "DELETE, GET, OPTIONS, PUT"
    for method, path, allow in (
        ("PATCH", "/v1/rank", "OPTIONS, POST"),
        ("GET", "/v1/rank", "OPTIONS, POST"),
        ("POST", "/v1/kill-switches/campaign/1", "DELETE, OPTIONS, PUT"),
    ):
        response = client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allow
    still_ranks(client, world, baseline)


# (case, events or a raw body, a field the 422 must name)
EVENT_CASES = [
    ("cost 1e308", [event("a", cost=1e308)], "cost"),
    ("cost over the service's max", [event("a", cost=10_000.5)], "cost"),
    ("cost negative", [event("a", cost=-1)], "cost"),
    ("cost string", [event("a", cost="1")], "cost"),
    ("cost bool", [event("a", cost=True)], "cost"),
    ("timestamp 1e300", [event("a", timestamp=1e300)], "timestamp"),
    ("timestamp false", [event("a", timestamp=False)], "timestamp"),
    ("timestamp 4 days old", [event("a", timestamp=NOW - 4 * 86_400)], "timestamp"),
    ("timestamp an hour ahead", [event("a", timestamp=NOW + 3600)], "timestamp"),
    ("event_id lone surrogate", [event("\ud800")], "event_id"),
    ("campaign above int64", [event("a", campaign_id=2**63)], "campaign_id"),
    ("one bad event in a batch", [event("a"), event("b", cost=float("inf"))], "body"),
]


@pytest.mark.parametrize(("case", "events", "field"), EVENT_CASES, ids=[c[0] for c in EVENT_CASES])
def test_hostile_spend_events_change_nothing(
    client, service, world, baseline, case, events, field
) -> None:
    response = client.post("/v1/events", content=encode({"events": events}), headers=JSON)
    assert response.status_code == 422, response.text
    locations = [entry["loc"] for entry in response.json()["detail"]]
    assert any(field in loc for loc in locations), locations
    assert service.pacing.status(50_007, NOW).spend == 0.0
    assert client.post("/v1/events", json={"events": [event("ok")]}).json()["accepted"] == 1
    still_ranks(client, world, baseline)


def test_totals_stay_finite(client, service) -> None:
    client.put("/v1/campaigns/50007/budget", json={"daily_budget": 1e12})
    for batch in range(4):  # the largest events allowed, as many as the body limit lets in
        biggest = [event(f"e{batch}-{i}", cost=LIMITS.max_event_cost) for i in range(500)]
        assert client.post("/v1/events", json={"events": biggest}).status_code == 200
    status = client.get("/v1/campaigns/50007/pacing").json()
    assert status["spend"] == 2000 * LIMITS.max_event_cost
    assert all(isinstance(status[name], float) for name in ("spend", "target_spend"))


CONTROL_CASES = [
    ("PUT", "/v1/campaigns/7/budget", {"daily_budget": False}, "daily_budget"),
    ("PUT", "/v1/campaigns/7/budget", {"daily_budget": 1e300}, "daily_budget"),
    ("PUT", "/v1/campaigns/7/budget", {"daily_budget": "5"}, "daily_budget"),
    ("PUT", "/v1/campaigns/1e3/budget", {"daily_budget": 5}, "campaign_id"),
    ("PUT", f"/v1/campaigns/{2**63}/budget", {"daily_budget": 5}, "campaign_id"),
    ("PUT", "/v1/kill-switches/campaign/7", {"reason": "\ud800"}, "reason"),
    ("PUT", f"/v1/kill-switches/campaign/{2**63}", {"reason": "x"}, "entity_id"),
    ("PUT", "/v1/kill-switches/creative/7", {"reason": "x"}, "scope"),
    ("PUT", "/v1/ad-load-caps", {"max_ad_share": 0.2}, "body"),
    ("PUT", "/v1/ad-load-caps", {"region": "US", "max_ad_share": True}, "max_ad_share"),
    ("PUT", "/v1/ad-load-caps", {"region": "\udc00", "max_ad_share": 0.2}, "region"),
    ("DELETE", "/v1/ad-load-caps?region=", None, "region"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    CONTROL_CASES,
    ids=[f"{c[0]} {c[1]} {c[3]}" for c in CONTROL_CASES],
)
def test_hostile_control_requests_change_nothing(
    client, service, world, baseline, method, path, body, field
) -> None:
    content = None if body is None else encode(body)
    response = client.request(method, path, content=content, headers=JSON)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(field in entry["loc"] for entry in detail), detail
    assert service.traffic.kill_switches() == {"advertisers": {}, "campaigns": {}}
    assert service.traffic.ad_load_caps() == []
    assert service.pacing.status(7, NOW).daily_budget is None
    still_ranks(client, world, baseline)


def test_an_ad_load_cap_without_scope_says_why(client) -> None:
    response = client.put("/v1/ad-load-caps", json={"max_ad_share": 0.2})
    assert "needs a region, a placement, or both" in response.json()["detail"][0]["msg"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["AdLoadCapBody"]
    assert schema["anyOf"] == [{"required": ["region"]}, {"required": ["placement"]}]


def test_every_response_is_counted_by_route_and_status(client, world) -> None:
    client.post("/v1/rank", json=world.good_body())
    client.post("/v1/rank", content=b"{", headers=JSON)
    client.post("/v1/rank", json={**world.good_body(), "k": 0})
    client.post("/v1/rank", json=world.good_body(), headers={"host": "evil.example"})
    client.put("/v1/campaigns/x/budget", json={"daily_budget": 1})
    client.get("/nowhere")
    text = client.get("/metrics").text
    for line in (
        'adrank_http_responses_total{method="POST",route="/v1/rank",status="200"} 1.0',
        'adrank_http_responses_total{method="POST",route="/v1/rank",status="422"} 2.0',
        'adrank_http_responses_total{method="POST",route="/v1/rank",status="421"} 1.0',
        'adrank_http_responses_total{method="PUT",route="/v1/campaigns/{campaign_id}/budget",'
        'status="422"} 1.0',
        'adrank_http_responses_total{method="GET",route="unmatched",status="404"} 1.0',
        'adrank_requests_total{status="422"} 2.0',
        'adrank_errors_total{kind="invalid_json"} 1.0',
        'adrank_errors_total{kind="invalid_request"} 2.0',
        'adrank_errors_total{kind="misdirected_host"} 1.0',
        'adrank_errors_total{kind="not_found"} 1.0',
    ):
        assert line in text, line


class Crashing:
    def rank(self, request):
        raise RuntimeError("a bug")

    def readiness(self):
        return True, "crashing"


def test_a_bug_is_a_500_counted_as_internal() -> None:
    from adrank.service.app import create_app

    client = TestClient(create_app(Crashing()), base_url=LOCAL, raise_server_exceptions=False)
    response = client.post("/v1/rank", json={"request_id": "r", "candidates": [1], "k": 1})
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal",
        "detail": "internal error; see the service's log",
    }
    assert 'adrank_errors_total{kind="internal"} 1.0' in client.get("/metrics").text


class Unencodable:
    """A backend whose feature encoding fails the way the pipeline does on a value it cannot
    take: the last line of defence turns that into a 422, not a 500."""

    def rank(self, request):
        raise TypeError("values[0] must be str, bytes or None, got float")

    def readiness(self):
        return True, "unencodable"


def test_an_encoding_error_the_edge_missed_is_a_422() -> None:
    from adrank.service.app import create_app

    client = TestClient(create_app(Unencodable()), base_url=LOCAL, raise_server_exceptions=False)
    response = client.post("/v1/rank", json={"request_id": "r", "candidates": [1], "k": 1})
    assert response.status_code == 422
    (issue,) = response.json()["detail"]
    assert issue["loc"] == ["body"]
    assert issue["msg"] == (
        "the request's features cannot be encoded: values[0] must be str, bytes or None, got float"
    )


def test_event_bounds_in_the_python_api() -> None:
    good = {"event_id": "e", "campaign_id": 1, "kind": "click", "cost": 1.0, "timestamp": NOW}
    with pytest.raises(ValueError, match="cost must be <= 1e\\+12"):
        SpendEvent(**{**good, "cost": MAX_COST * 2})
    with pytest.raises(ValueError, match="timestamp must be <= 253402300799"):
        SpendEvent(**{**good, "timestamp": 1e300})
    bounds = EventBounds(max_cost=10.0, max_age_s=60.0, max_lead_s=5.0)
    events = [SpendEvent(**good), SpendEvent(**{**good, "cost": 11.0, "timestamp": NOW + 6})]
    assert [(p, f) for p, f, _ in bounds.violations(events, NOW)] == [(1, "cost"), (1, "timestamp")]
    with pytest.raises(ValueError, match="max_cost must be finite and > 0, got inf"):
        EventBounds(float("inf"), 1.0, 1.0)
    with pytest.raises(ValueError, match="max_age_s must be a number, got '1'"):
        EventBounds(1.0, "1", 1.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_k": 0}, "max_k must be an integer >= 1, got 0"),
        ({"max_json_depth": 3}, "max_json_depth must be an integer >= 4, got 3"),
        ({"read_timeout_s": 0}, "read_timeout_s must be finite and > 0, got 0"),
        ({"max_event_cost": float("nan")}, "max_event_cost must be finite and > 0, got nan"),
        ({"max_event_age_s": True}, "max_event_age_s must be a number, got True"),
    ],
)
def test_limits_are_checked(change, message) -> None:
    with pytest.raises(ValueError, match=message):
        ServiceLimits(**change)


# --- over real HTTP: bodies that never finish -------------------------------------------------


@pytest.fixture(scope="module")
def http(world):
    with HttpServer(make_service(world, LIMITS).app) as server:
        yield server


def exchange(server: HttpServer, parts: list[bytes], pause_s: float = 0.0) -> tuple[bytes, float]:
    """Sends ``parts`` (pausing between them) and reads until the server closes; the answer
    and the seconds it took."""
    start = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        try:
            for part in parts:
                sock.sendall(part)
                time.sleep(pause_s)
        except OSError:
            pass  # the server closed the connection before the client finished: expected
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer, time.monotonic() - start


HEAD = b"POST /v1/rank HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"


def test_a_body_shorter_than_declared_gets_408_and_a_close(http, world, baseline) -> None:
    answer, seconds = exchange(http, [HEAD + b"Content-Length: 100\r\n\r\n" + b'{"req'])
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower()
    assert b'"read_timeout"' in answer
    assert seconds < 10  # cut off by the read timeout, not by the client giving up
    still_ranks_over_http(http, world, baseline)


def test_a_trickled_chunked_body_gets_408(http, world, baseline) -> None:
    parts = [HEAD + b"Transfer-Encoding: chunked\r\n\r\n"] + [b"1\r\n \r\n"] * 200
    answer, seconds = exchange(http, parts, pause_s=0.02)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert seconds < 10
    still_ranks_over_http(http, world, baseline)


def test_a_chunked_body_over_the_limit_gets_413(http, world, baseline) -> None:
    chunk = b"%x\r\n%s\r\n" % (32 * 1024, b" " * 32 * 1024)
    answer, _ = exchange(http, [HEAD + b"Transfer-Encoding: chunked\r\n\r\n"] + [chunk] * 3)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b'"body_too_large"' in answer
    still_ranks_over_http(http, world, baseline)


def still_ranks_over_http(server: HttpServer, world, baseline: list[int]) -> None:
    response = httpx.post(f"{server.url}/v1/rank", json=world.good_body(), timeout=30)
    assert response.status_code == 200, response.text
    assert [c["creative_id"] for c in response.json()["creatives"]] == baseline
