"""Ad-load caps and the mixed feed bind in serving: set through the control API, applied by
``POST /v1/rank`` on the next request (a real Ranker behind the app, as ``adrank serve`` wires
it: ``ad_load=TrafficControl.ad_load_cap``)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker
from adrank.pacing import PacingService, SQLitePacingStore
from adrank.service.app import create_app
from adrank.service.control import make_control_router
from adrank.traffic import SQLiteTrafficStore, TrafficControl
from service_world import LOCAL, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("ad_load"))


@pytest.fixture
def client(world, tmp_path_factory):
    traffic = TrafficControl(SQLiteTrafficStore(":memory:"))
    model = world.ranker.model
    assert isinstance(model, TorchScriptModel)
    ranker = Ranker(
        world.schema, world.tables, model, world.ranker.catalog, ad_load=traffic.ad_load_cap
    )
    control = make_control_router(PacingService(SQLitePacingStore(":memory:")), traffic)
    return TestClient(create_app(ranker, control=control, schema=world.schema), base_url=LOCAL)


def ranked(client: TestClient, body: dict) -> list[dict]:
    answer = client.post("/v1/rank", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["creatives"]


def test_a_cap_binds_on_the_next_request(world, client) -> None:
    body = world.good_body()
    free = ranked(client, body)
    assert len(free) == 5
    assert all(c["slot"] is None for c in free)
    region = body["region"]
    assert client.put("/v1/ad-load-caps", json={"region": region, "max_ad_share": 0.0}).is_success
    assert ranked(client, body) == []  # a cap of 0: no ads
    cap = {"placement": "feed", "region": region, "max_ad_share": 0.4}
    assert client.put("/v1/ad-load-caps", json=cap).is_success
    assert ranked(client, body) == []  # the tightest cap that applies binds
    assert client.delete("/v1/ad-load-caps", params={"region": region}).is_success
    capped = ranked(client, body)  # floor(0.4 * 5) = 2 ads, the best two
    assert [c["creative_id"] for c in capped] == [c["creative_id"] for c in free[:2]]
    assert client.delete(
        "/v1/ad-load-caps", params={"region": region, "placement": "feed"}
    ).is_success
    assert len(ranked(client, body)) == 5


def test_a_feed_gets_each_ad_its_slot(world, client) -> None:
    body = world.good_body()
    free = ranked(client, body)
    # The default rules: first ad at slot 2, 3 organic items between ads, at most 25% ads.
    placed = ranked(client, {**body, "feed": {"slots": 12}})
    assert [c["slot"] for c in placed] == [2, 6, 10]
    assert [c["creative_id"] for c in placed] == [c["creative_id"] for c in free[:3]]
    # Organic items worth more than any ad keep every slot.
    assert ranked(client, {**body, "feed": {"values": [1e9] * 12}}) == []
    region = body["region"]
    assert client.put("/v1/ad-load-caps", json={"region": region, "max_ad_share": 0.1}).is_success
    assert [c["slot"] for c in ranked(client, {**body, "feed": {"slots": 12}})] == [2]


@pytest.mark.parametrize(
    ("feed", "field"),
    [
        ({}, ["body", "feed"]),
        ({"slots": -1}, ["body", "feed", "slots"]),
        ({"slots": True}, ["body", "feed", "slots"]),
        ({"values": ["1"]}, ["body", "feed", "values", 0]),
        ({"slots": 3, "extra": 1}, ["body", "feed", "extra"]),
    ],
)
def test_a_bad_feed_is_a_422_naming_the_field(world, client, feed, field) -> None:
    answer = client.post("/v1/rank", json={**world.good_body(), "feed": feed})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == field
