"""The safety gate's audit log and overrides survive a restart: the stores (SQLite, and
PostgreSQL on a private server) page the log, log a block once while it holds, keep overrides
with who, when and why; over real HTTP on loopback, a service stopped and started again on the
same state lists the same log and still applies the overrides.

Glossary: a *service* here is the app over the small serving world (tests/service_world.py) with
the control and safety routers, run by uvicorn on a loopback port.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from adrank.orchestrator.catalog import Catalog
from adrank.pacing import PacingService, SQLitePacingStore
from adrank.safety import AuditEntry, SafetyGate, SafetyRules, open_audit_store
from adrank.safety.control import make_safety_router
from adrank.service.app import create_app
from adrank.service.control import make_control_router
from adrank.service.security import AccessPolicy
from adrank.service.stack import HttpServer
from adrank.stores.postgres import RECONNECT_S, StateUnavailableError
from adrank.stores.safety_audit import MAX_PAGE, SQLiteAuditStore
from adrank.traffic import SQLiteTrafficStore, TrafficControl
from postgres_server import running_postgres
from service_world import LOCAL, NOW, TOKEN, build_world

HEADERS = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def postgres():
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state.sqlite")
    return request.getfixturevalue("postgres").new_database()


def two_creatives() -> Catalog:
    """Creative 1 of category 3 (blocked in DE by the rules below), creative 2 of category 1."""
    return Catalog.from_arrow(
        pa.table(
            {
                "creative_id": [1, 2],
                "advertiser_id": [1, 1],
                "campaign_id": [1, 1],
                "category": [3, 1],
                "objective": ["CPM"] * 2,
                "bid": [1.0] * 2,
                "target_cpa": [0.0] * 2,
                "regions": [[]] * 2,
                "status": ["active"] * 2,
            }
        )
    )


def block(creative: int, region: str, rule: str) -> AuditEntry:
    return AuditEntry(creative, region, rule, 1.0, NOW)


def test_a_store_pages_its_log_and_logs_a_block_once_while_it_holds(state: str) -> None:
    store = open_audit_store(state)
    try:
        first = [block(c, "DE", f"category:{c % 3}") for c in range(1, 8)]
        assert store.record_decisions(["DE", "US"], range(1, 10), first) == 7
        assert store.record_decisions(["DE", "US"], range(1, 10), first) == 0  # unchanged
        # creative 1 loses its block, 2 gains a second rule; 3..7 stand
        second = [block(2, "DE", "keyword:beer"), *first[1:]]
        assert store.record_decisions(["DE"], range(1, 10), second) == 1
        # creative 1's block comes back: logged again (it had been lifted)
        assert store.record_decisions(["DE"], [1], [first[0]]) == 1
        # an inline catalog of other creatives leaves these blocks standing
        assert store.record_decisions(["DE"], [99], []) == 0
        assert store.record_decisions([], [1], [first[0]]) == 0

        log = store.entries(None, None, 0, MAX_PAGE)
        assert [e.id for e in log] == sorted(e.id for e in log)
        assert [(e.creative_id, e.rule) for e in log[-2:]] == [
            (2, "keyword:beer"),
            (1, "category:1"),
        ]
        assert store.last_id() == log[-1].id
        page, pages = store.entries(None, None, 0, 3), []
        while page:
            pages.append(page)
            page = store.entries(None, None, page[-1].id, 3)
        assert [e for p in pages for e in p] == log
        assert [len(p) for p in pages] == [3, 3, 3]
        assert [e.rule for e in store.entries("DE", 2, 0, 10)] == ["category:2", "keyword:beer"]
        assert store.entries("US", None, 0, 10) == []
        assert store.latest(None, None, 2) == log[-2:]

        override = AuditEntry(5, "DE", "override:deny", None, NOW + 1, "misleading", "ana")
        stored = store.record_override(override, allow=False)
        assert stored.id == log[-1].id + 1
        assert (stored.by, stored.note, stored.time, stored.score) == (
            "ana",
            "misleading",
            NOW + 1,
            None,
        )
        store.record_override(AuditEntry(5, "DE", "override:allow", None, NOW + 2, "", "bo"), True)
        assert store.overrides() == {"DE": {5: True}}

        for after, limit, error, match in [
            (-1, 10, ValueError, "after must be >= 0"),
            (0, 0, ValueError, r"limit must be in \[1, 1000\]"),
            (0, MAX_PAGE + 1, ValueError, r"limit must be in \[1, 1000\]"),
            ("0", 10, TypeError, "after must be an int"),
            (0, 2.0, TypeError, "limit must be an int"),
        ]:
            with pytest.raises(error, match=match):
                store.entries(None, None, after, limit)
    finally:
        store.close()


def test_a_gate_reads_the_overrides_another_process_wrote(tmp_path: Path) -> None:
    rules = SafetyRules.from_mapping({"regions": {"DE": {"blocked_categories": [3]}}})
    path = tmp_path / "state.sqlite"
    reader = SafetyGate(rules, store=SQLiteAuditStore(path), refresh_s=0)
    writer = SafetyGate(rules, store=SQLiteAuditStore(path), refresh_s=0)
    catalog = two_creatives()
    user = {"age_bucket": 3}
    assert reader.blocked(catalog, np.arange(2), "DE", user).tolist() == [True, False]
    writer.override(1, "DE", allow=True, reason="reviewed", by="ana")
    writer.override(2, "DE", allow=False, by="ana")
    assert reader.blocked(catalog, np.arange(2), "DE", user).tolist() == [False, True]
    assert [e.rule for e in reader.audit()] == ["category:3", "override:allow", "override:deny"]
    with pytest.raises(TypeError, match="by must be a string"):
        writer.override(1, "DE", allow=True, by=None)
    with pytest.raises(ValueError, match="refresh_s must be a finite number >= 0"):
        SafetyGate(rules, refresh_s=-1)
    with pytest.raises(TypeError, match="refresh_s must be a number"):
        SafetyGate(rules, refresh_s="1")
    reader.close()
    writer.close()


def test_a_snapshot_decided_in_a_database_outage_is_served_and_logged_after(postgres) -> None:
    rules = SafetyRules.from_mapping({"regions": {"DE": {"blocked_categories": [3]}}})
    gate = SafetyGate(rules, clock=lambda: NOW, store=open_audit_store(postgres.new_database()))
    postgres.stop("fast")
    try:
        blocked = gate.blocked(two_creatives(), np.arange(2), "DE", {"age_bucket": 3})
        assert blocked.tolist() == [True, False]  # served with its decisions all the same
    finally:
        postgres.start()
    deadline = time.monotonic() + 30  # the store reconnects at most every RECONNECT_S
    while True:
        try:
            log = gate.audit()
            break
        except StateUnavailableError:
            assert time.monotonic() < deadline, "the store did not reconnect"
            time.sleep(RECONNECT_S)
    assert [(e.creative_id, e.rule) for e in log] == [(1, "category:3")]
    gate.close()


@contextlib.contextmanager
def service(world, state: str, banned: int) -> Iterator[httpx.Client]:
    """The app over ``world`` with a gate banning the advertiser ``banned`` in the user's region,
    its log in ``state``, served on loopback; stopped (and the gate's store closed) on exit."""
    rules = SafetyRules.from_mapping(
        {"regions": {world.user["country"]: {"banned_advertisers": [banned]}}}
    )
    gate = SafetyGate(rules, clock=lambda: NOW, store=open_audit_store(state))
    pacing = PacingService(SQLitePacingStore(":memory:"))
    traffic = TrafficControl(SQLiteTrafficStore(":memory:"))
    control = make_control_router(pacing, traffic, clock=lambda: NOW)
    control.include_router(make_safety_router(gate))
    app = create_app(
        world.ranker, control=control, schema=world.schema, access=AccessPolicy(token=TOKEN)
    )
    world.ranker.safety = gate
    try:
        with HttpServer(app) as http, httpx.Client(base_url=http.url, timeout=30) as client:
            yield client
    finally:
        world.ranker.safety = None
        gate.close()


def _served(client, body: dict) -> list[dict]:
    answer = client.post("/v1/rank", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["creatives"]


def _whole_log(client: httpx.Client, limit: int) -> list[dict]:
    """Every entry, page by page."""
    entries, after = [], 0
    while True:
        page = client.get(
            "/v1/safety/blocks", params={"after": after, "limit": limit}, headers=HEADERS
        )
        assert page.status_code == 200, page.text
        entries += page.json()["entries"]
        if page.json()["next_after"] is None:
            assert entries[-1]["id"] == page.json()["last_id"]
            return entries
        assert len(page.json()["entries"]) == limit
        after = page.json()["next_after"]


def test_over_http_the_log_and_overrides_survive_a_restart(state: str, tmp_path: Path) -> None:
    world = build_world(tmp_path)
    body = {**world.good_body(), "k": 10, "constraints": {"max_per_advertiser": 10}}
    top = _served(TestClient(create_app(world.ranker, schema=world.schema), base_url=LOCAL), body)[
        0
    ]
    banned = top["advertiser_id"]

    with service(world, state, banned) as client:
        served = _served(client, body)
        assert served
        assert all(c["advertiser_id"] != banned for c in served)
        path = f"/v1/safety/overrides/{top['creative_id']}"
        allow = {"region": body["region"], "decision": "allow", "by": "ana", "reason": "appeal"}
        assert client.put(path, json=allow).status_code == 401  # writes need the token
        assert client.put(path, json=allow, headers=HEADERS).status_code == 200
        denied = served[0]["creative_id"]
        deny = {"region": body["region"], "decision": "deny", "by": "bo", "reason": "misleading"}
        answer = client.put(f"/v1/safety/overrides/{denied}", json=deny, headers=HEADERS)
        assert answer.status_code == 200, answer.text
        assert {k: answer.json()[k] for k in ("rule", "by", "note", "time")} == {
            "rule": "override:deny",
            "by": "bo",
            "note": "misleading",
            "time": NOW,
        }
        after = [c["creative_id"] for c in _served(client, body)]
        assert top["creative_id"] in after
        assert denied not in after
        log = _whole_log(client, 2)
    blocks = [e for e in log if e["rule"].startswith("advertiser:")]
    assert blocks
    assert {e["rule"] for e in blocks} == {f"advertiser:{banned}"}
    assert top["creative_id"] in {e["creative_id"] for e in blocks}
    assert [(e["rule"], e["by"]) for e in log[-2:]] == [
        ("override:allow", "ana"),
        ("override:deny", "bo"),
    ]

    with service(world, state, banned) as client:  # restarted on the same state
        assert [c["creative_id"] for c in _served(client, body)] == after  # overrides hold
        assert _whole_log(client, 3) == log  # the same log, the blocks not logged again
        one = client.get(
            "/v1/safety/blocks",
            params={"creative_id": denied, "limit": 1},
            headers=HEADERS,
        ).json()
        assert [e["rule"] for e in one["entries"]] == ["override:deny"]
        assert one["next_after"] is None
