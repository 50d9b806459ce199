"""The control router in the service's app (no ranking here): events, budgets, kill switches
and ad-load caps."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from adrank.pacing import PacingService, SQLitePacingStore
from adrank.service.app import create_app
from adrank.service.control import make_control_router
from adrank.traffic import SQLiteTrafficStore, TrafficControl

NOW = 1_735_689_600.0 + 9 * 3600  # 09:00 on a campaign day


@pytest.fixture
def pacing() -> PacingService:
    return PacingService(SQLitePacingStore(":memory:"))


@pytest.fixture
def traffic() -> TrafficControl:
    return TrafficControl(SQLiteTrafficStore(":memory:"))


class NoRanking:
    def rank(self, request):
        raise AssertionError("the control tests do not rank")

    def readiness(self):
        return True, "control only"


@pytest.fixture
def client(pacing: PacingService, traffic: TrafficControl) -> TestClient:
    app = create_app(NoRanking(), control=make_control_router(pacing, traffic, clock=lambda: NOW))
    return TestClient(app, base_url="http://localhost")


def event(name: str, **fields) -> dict:
    return {
        "event_id": name,
        "campaign_id": 7,
        "kind": "click",
        "cost": 1.5,
        "timestamp": NOW - 10,
        **fields,
    }


def test_events_are_recorded_once(client: TestClient, pacing: PacingService) -> None:
    assert client.put("/v1/campaigns/7/budget", json={"daily_budget": 100}).status_code == 200
    body = {"events": [event("a"), event("b", kind="impression", cost=0.25), event("a")]}
    response = client.post("/v1/events", json=body)
    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "duplicates": 1}
    assert client.post("/v1/events", json=body).json() == {"accepted": 0, "duplicates": 3}
    status = client.get("/v1/campaigns/7/pacing").json()
    assert status["spend"] == 1.75
    assert status["daily_budget"] == 100.0
    assert not status["exhausted"]
    assert 0 < status["target_spend"] < 100


def test_spent_budget_stops_the_campaign(client: TestClient, pacing: PacingService) -> None:
    client.put("/v1/campaigns/7/budget", json={"daily_budget": 2})
    client.post("/v1/events", json={"events": [event("a", cost=2.0)]})
    assert pacing.multipliers(np.array([7]), NOW)[0] == 0.0
    assert client.get("/v1/campaigns/7/pacing").json()["exhausted"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"kind": "view"}, "kind"),
        ({"cost": -1}, "cost"),
        ({"cost": "NaN"}, "cost"),
        ({"timestamp": "soon"}, "timestamp"),
        ({"event_id": ""}, "event_id"),
        ({"campaign_id": 2**63}, "campaign_id"),
        ({"campaign_id": "seven"}, "campaign_id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_a_malformed_event_rejects_the_batch(
    client: TestClient, pacing: PacingService, bad: dict, field: str
) -> None:
    response = client.post("/v1/events", json={"events": [event("good"), event("bad", **bad)]})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"][:3] == ["body", "events", 1]
    assert field in error["loc"]
    assert pacing.status(7, NOW).spend == 0.0
    assert client.post("/v1/events", json={"events": [event("good")]}).json()["accepted"] == 1


@pytest.mark.parametrize(
    "body",
    [{}, {"events": []}, {"events": "x"}, [event("a")], {"events": [event("a")], "more": 1}],
)
def test_malformed_batches_are_422(client: TestClient, body) -> None:
    assert client.post("/v1/events", json=body).status_code == 422


def test_non_json_body_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/events", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_budget_checks(client: TestClient) -> None:
    assert client.put("/v1/campaigns/7/budget", json={"daily_budget": -1}).status_code == 422
    assert client.put("/v1/campaigns/x/budget", json={"daily_budget": 1}).status_code == 422
    unpaced = client.get("/v1/campaigns/8/pacing").json()
    assert unpaced["daily_budget"] is None
    assert unpaced["multiplier"] == 1.0


def test_kill_switches(client: TestClient, traffic: TrafficControl) -> None:
    response = client.put("/v1/kill-switches/advertiser/5", json={"reason": "fraud"})
    assert response.status_code == 200
    assert response.json() == {"advertisers": {"5": "fraud"}, "campaigns": {}}
    assert client.put("/v1/kill-switches/campaign/70").status_code == 200
    np.testing.assert_array_equal(traffic.blocked([5, 6, 6], [1, 70, 71]), [True, True, False])
    assert client.delete("/v1/kill-switches/advertiser/5").json() == {
        "advertisers": {},
        "campaigns": {"70": ""},
    }
    assert not traffic.blocked([5], [1])[0]
    assert client.get("/v1/kill-switches").json()["campaigns"] == {"70": ""}
    assert client.put("/v1/kill-switches/creative/1").status_code == 422
    assert client.put("/v1/kill-switches/campaign/abc").status_code == 422
    long_reason = {"reason": "x" * 501}
    assert client.put("/v1/kill-switches/campaign/1", json=long_reason).status_code == 422


def test_ad_load_caps(client: TestClient, traffic: TrafficControl) -> None:
    response = client.put("/v1/ad-load-caps", json={"region": "US", "max_ad_share": 0.2})
    assert response.status_code == 200
    assert response.json() == [{"region": "US", "placement": None, "max_ad_share": 0.2}]
    client.put("/v1/ad-load-caps", json={"placement": "feed", "max_ad_share": 0.1})
    assert traffic.ad_load_cap("feed", "US") == 0.1
    assert len(client.get("/v1/ad-load-caps").json()) == 2
    assert client.delete("/v1/ad-load-caps", params={"placement": "feed"}).status_code == 200
    assert traffic.ad_load_cap("feed", "US") == 0.2
    missing = client.delete("/v1/ad-load-caps", params={"placement": "feed"})
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    for bad in ({"max_ad_share": 0.2}, {"region": "US", "max_ad_share": 2}, {"region": ""}):
        assert client.put("/v1/ad-load-caps", json=bad).status_code == 422
    assert len(traffic.ad_load_caps()) == 1


def test_a_known_max_charge_closes_a_small_budget_before_it_is_seen(
    client: TestClient, pacing: PacingService
) -> None:
    client.put("/v1/campaigns/7/budget", json={"daily_budget": 10, "max_charge": 9.0})
    client.put("/v1/campaigns/8/budget", json={"daily_budget": 10})
    events = [event("a", cost=1.5), event("b", campaign_id=8, cost=1.5)]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 2
    # 1.5 spent: one more charge of up to 9 could overspend campaign 7, not campaign 8.
    assert client.get("/v1/campaigns/7/pacing").json()["exhausted"]
    assert not client.get("/v1/campaigns/8/pacing").json()["exhausted"]
    assert pacing.multipliers(np.array([7]), NOW)[0] == 0.0
    for bad in ({"max_charge": 0}, {"max_charge": "9"}, {"max_charge": 1e13}):
        body = {"daily_budget": 10, **bad}
        answer = client.put("/v1/campaigns/7/budget", json=body)
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"][-1] == "max_charge"
