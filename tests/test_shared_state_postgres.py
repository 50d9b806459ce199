"""Two ``adrank serve`` processes sharing one control state in PostgreSQL, over real HTTP.

The tests of ``test_shared_state_service`` (kill switch, budget, ad-load cap, spend through
either process) run here unchanged with ``--state=postgresql://...`` on a private server instead
of one SQLite file, as replicas on several machines would share it. The staleness from a write's
answer to the other process's changed answer is printed (run with ``-s``).
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterator

import httpx2 as httpx
import pytest

import test_shared_state_service as shared
from adrank.triton import EmbeddedTriton
from postgres_server import PostgresServer, running_postgres

pytestmark = pytest.mark.triton

request_body = shared.request_body
test_a_kill_switch_set_through_one_process_binds_in_the_other = (
    shared.test_a_kill_switch_set_through_one_process_binds_in_the_other
)
test_a_budget_set_through_one_process_paces_the_other = (
    shared.test_a_budget_set_through_one_process_paces_the_other
)
test_an_ad_load_cap_set_through_one_process_binds_in_the_other = (
    shared.test_an_ad_load_cap_set_through_one_process_binds_in_the_other
)
test_both_processes_pace_by_the_spend_recorded_through_either = (
    shared.test_both_processes_pace_by_the_spend_recorded_through_either
)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def workspace(serving_workspace):
    return serving_workspace


@pytest.fixture(scope="module")
def services(workspace, postgres, tmp_path_factory):
    """Two service processes (urls a, b) on one PostgreSQL database."""
    token_file = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text(shared.TOKEN + "\n")
    state = postgres.new_database()
    shared.STALENESS.clear()
    with (
        EmbeddedTriton(workspace.repository, models=[workspace.model_name]) as triton,
        shared._serve(workspace, triton.grpc_url, state, token_file) as a,
        shared._serve(workspace, triton.grpc_url, state, token_file) as b,
    ):
        yield a, b
    if shared.STALENESS:
        print(
            f"\nstaleness between two adrank serve processes on PostgreSQL over "
            f"{len(shared.STALENESS)} changes: median "
            f"{statistics.median(shared.STALENESS) * 1e3:.0f} ms, "
            f"max {max(shared.STALENESS) * 1e3:.0f} ms"
        )


def test_metrics_show_spend_budget_participation_kill_switches_and_version(services):
    a, b = services
    campaign = 555_001
    answer = httpx.put(
        f"{a}/v1/campaigns/{campaign}/budget", json={"daily_budget": 100.0}, headers=shared.AUTH
    )
    assert answer.status_code == 200, answer.text
    assert httpx.put(f"{a}/v1/kill-switches/campaign/77", headers=shared.AUTH).status_code == 200
    event = {"event_id": "m1", "campaign_id": campaign, "kind": "click", "cost": 5.0}
    body = {"events": [{**event, "timestamp": time.time()}]}
    assert httpx.post(f"{a}/v1/events", json=body, headers=shared.AUTH).status_code == 200
    deadline = time.monotonic() + shared.GENEROUS_S
    while True:  # b sees a's writes within its refresh
        text = httpx.get(f"{b}/metrics").text
        if f'adrank_campaign_spend{{campaign_id="{campaign}"}} 5.0' in text:
            break
        assert time.monotonic() < deadline, text[-2000:]
        time.sleep(0.1)
    assert f'adrank_campaign_budget{{campaign_id="{campaign}"}} 100.0' in text
    assert f'adrank_campaign_participation{{campaign_id="{campaign}"}}' in text
    assert 'adrank_kill_switches{scope="campaign"} 1.0' in text
    assert re.search(r'adrank_model_version_info\{version="\d+"\} 1\.0', text)
    assert "adrank_state_available 1.0" in text


def test_a_database_outage_refuses_events_with_503_and_keeps_ranking(
    services, request_body, postgres
):
    """Events sent while the database is down are refused (503 ``state_unavailable``), not
    lost: the retry after it is back stores them once. Ranking goes on with the last known
    state (``max_stale_s``)."""
    a, b = services
    now = time.time()
    body = {
        "events": [
            {
                "event_id": f"outage{i}",
                "campaign_id": 4242,
                "kind": "click",
                "cost": 1.0,
                "timestamp": now,
            }
            for i in range(5)
        ]
    }
    postgres.stop("fast")
    try:
        refused = httpx.post(f"{a}/v1/events", json=body, headers=shared.AUTH)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "state_unavailable"
        assert "state database" in refused.json()["detail"]
        ranked = httpx.post(f"{b}/v1/rank", json=request_body, timeout=30)
        assert ranked.status_code == 200, ranked.text
    finally:
        postgres.start()
    retried = _post_as_a_client_does(f"{a}/v1/events", body)  # a's connection was cut
    assert retried.json()["accepted"] == 5
    # b's idle connection was cut by the restart too: replaced at once, no 503 to retry
    again = httpx.post(f"{b}/v1/events", json=body, headers=shared.AUTH)
    assert again.status_code == 200, again.text
    again = again.json()
    assert (again["accepted"], again["duplicates"]) == (0, 5)


def _post_as_a_client_does(url: str, body: dict) -> httpx.Response:
    """POSTs ``body``, retrying on 503 (as a client of the events API must)."""
    deadline = time.monotonic() + shared.GENEROUS_S
    while (answer := httpx.post(url, json=body, headers=shared.AUTH)).status_code != 200:
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "state_unavailable"
        assert time.monotonic() < deadline, "the service did not reconnect"
        time.sleep(0.1)
    return answer
