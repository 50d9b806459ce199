"""The PostgreSQL control stores pass the SQLite stores' contract tests, and survive outages.

The contract tests of ``test_pacing_store``, ``test_traffic`` and ``test_shared_state`` run here
unchanged with their store class bound to the PostgreSQL one: a store opened on ``":memory:"``
gets a fresh database, one opened on a path gets the database of that path (so reopening a path
is a restart, and two stores on one path are two processes sharing state). Then what only a
networked store has: a database restarted under event load (nothing lost, nothing counted
twice), an outage served from the last known state for ``max_stale_s``, clear errors.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import test_pacing_store
import test_shared_state
import test_traffic
from adrank.pacing import PacingService, SpendEvent
from adrank.pacing.postgres_store import PostgresPacingStore
from adrank.stores.postgres import StateUnavailableError
from adrank.traffic import TrafficControl
from adrank.traffic_postgres import PostgresTrafficStore
from postgres_server import PostgresServer, running_postgres

CONTRACT = [
    test_pacing_store.test_record_is_idempotent_within_and_across_batches,
    test_pacing_store.test_out_of_order_events_count_toward_their_own_day,
    test_pacing_store.test_record_checks_days_length,
    test_pacing_store.test_random_batches_match_reference,
    test_pacing_store.test_restart_mid_day_loses_nothing_and_counts_nothing_twice,
    test_pacing_store.test_the_reserve_survives_a_restart,
    test_pacing_store.test_controller_state_round_trips,
    test_pacing_store.test_charge_counts_and_open_impressions,
    test_traffic.test_blocked_matches_reference,
    test_traffic.test_changes_persist_across_a_restart,
    test_traffic.test_ad_load_cap_is_the_smallest_that_applies,
    test_traffic.test_kill_switch_takes_effect_on_the_next_request_under_load,
    test_shared_state.test_a_kill_switch_and_a_cap_set_through_one_process_bind_in_the_other,
    test_shared_state.test_budgets_set_through_one_process_pace_in_the_other,
    test_shared_state.test_every_process_paces_by_the_spend_all_of_them_recorded,
    test_shared_state.test_one_controller_steps_for_every_process,
    test_shared_state.test_a_step_is_stored_only_over_the_state_it_started_from,
]
DAY0 = 1_735_689_600.0
DAY = int(DAY0 // 86_400)
OUTAGE = r"the state database (is unreachable|stopped answering)"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


class _Databases:
    """Path -> database URL: ``":memory:"`` a fresh one each time, a path the same one."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.by_path: dict[str, str] = {}
        self.opened: list[PostgresPacingStore | PostgresTrafficStore] = []

    def open(self, store: type, path: str | Path):
        self.opened.append(store(self.url(path)))
        return self.opened[-1]

    def url(self, path: str | Path) -> str:
        if str(path) == ":memory:":
            return self.server.new_database()
        if str(path) not in self.by_path:
            self.by_path[str(path)] = self.server.new_database()
        return self.by_path[str(path)]


@pytest.mark.parametrize("contract_test", CONTRACT, ids=lambda f: f"{f.__module__}.{f.__name__}")
def test_contract(contract_test, postgres, monkeypatch, tmp_path) -> None:
    databases = _Databases(postgres)
    module = inspect.getmodule(contract_test)
    if hasattr(module, "SQLitePacingStore"):
        monkeypatch.setattr(
            module, "SQLitePacingStore", lambda p: databases.open(PostgresPacingStore, p)
        )
    if hasattr(module, "SQLiteTrafficStore"):
        monkeypatch.setattr(
            module, "SQLiteTrafficStore", lambda p: databases.open(PostgresTrafficStore, p)
        )
    arguments = inspect.signature(contract_test).parameters
    try:
        contract_test(*([tmp_path] if arguments else []))
    finally:
        for store in databases.opened:
            store.close()


def _impression(i: int, campaign: int = 1, cost: float = 0.25) -> SpendEvent:
    return SpendEvent(f"e{i}", campaign, "impression", cost, DAY0 + i * 0.01)


def test_version_moves_only_for_other_handles(postgres) -> None:
    url = postgres.new_database()
    one, other = PostgresPacingStore(url), PostgresTrafficStore(url)
    before = one.version()
    one.set_budget(1, 10.0)
    assert one.version() == before  # its own write
    other.set_kill("campaign", 3, "x")
    moved = one.version()
    assert moved != before
    assert one.version() == moved  # nothing since
    one.close()
    other.close()


def test_the_database_restarted_under_event_load_loses_nothing_and_counts_nothing_twice(
    postgres,
) -> None:
    """Four senders post batches and retry every batch that failed (the 503 of the HTTP API)
    while the server restarts: every event is counted exactly once."""
    url = postgres.new_database()
    stores = [PostgresPacingStore(url) for _ in range(2)]  # two processes
    senders, batches, size = 4, 60, 20
    failures = [0] * senders
    restarted = threading.Event()

    def send(sender: int) -> None:
        store = stores[sender % 2]
        for b in range(batches):
            first = (sender * batches + b) * size
            batch = [_impression(i) for i in range(first, first + size)]
            deadline = time.monotonic() + 60
            while True:
                try:
                    store.record(batch, [DAY] * size)
                    break
                except StateUnavailableError:
                    failures[sender] += 1
                    assert time.monotonic() < deadline, "the database never came back"
                    time.sleep(0.05)
            if b == batches // 3 and sender == 0:
                restarted.set()

    threads = [threading.Thread(target=send, args=(s,)) for s in range(senders)]
    for thread in threads:
        thread.start()
    assert restarted.wait(60)
    postgres.stop("immediate")  # as a crash: no shutdown checkpoint
    postgres.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads)
    total = senders * batches * size
    assert stores[0].event_counts(DAY) == {1: (total, 0, 0)}
    assert stores[1].spend(DAY)[1].tolist() == [pytest.approx(total * 0.25)]
    again = stores[1].record(
        [_impression(i) for i in range(0, total, 7)], [DAY] * len(range(0, total, 7))
    )
    assert again.accepted == 0
    assert sum(failures) > 0  # the outage was seen, and retried through
    for store in stores:
        store.close()


def test_an_outage_serves_the_last_known_state_for_max_stale_s(postgres) -> None:
    url = postgres.new_database()
    writer = PacingService(PostgresPacingStore(url), refresh_s=0)
    writer.set_budget(1, 0.0, DAY0)  # stopped campaign
    patient = PacingService(PostgresPacingStore(url, max_stale_s=60), refresh_s=0)
    strict_store = PostgresPacingStore(url, max_stale_s=0)
    strict = PacingService(strict_store, refresh_s=0)
    traffic = TrafficControl(PostgresTrafficStore(url, max_stale_s=60), refresh_s=0)
    traffic.kill_campaign(9, "fraud")
    ids = np.array([1, 2])
    assert patient.multipliers(ids, DAY0 + 5).tolist() == [0.0, 1.0]
    assert strict.multipliers(ids, DAY0 + 5).tolist() == [0.0, 1.0]
    postgres.stop("fast")
    try:
        # the patient process keeps pacing and blocking by what it knew
        assert patient.multipliers(ids, DAY0 + 6).tolist() == [0.0, 1.0]
        assert traffic.blocked(np.array([1]), np.array([9])).tolist() == [True]
        with pytest.raises(StateUnavailableError, match=OUTAGE):
            strict.multipliers(ids, DAY0 + 6)
        with pytest.raises(StateUnavailableError, match=r"state database .* \(127\.0\.0\.1"):
            patient.record_events([_impression(1)])
        with pytest.raises(StateUnavailableError, match="state database"):
            traffic.kill_campaign(10)
    finally:
        postgres.start()
    deadline = time.monotonic() + 10
    while True:  # reconnects by itself
        try:
            assert patient.record_events([_impression(1)]).accepted == 1
            break
        except StateUnavailableError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert strict.multipliers(ids, DAY0 + 7).tolist() == [0.0, 1.0]
    for store in (writer.store, patient.store, strict_store, traffic.store):
        store.close()


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("sqlite:///x", {}, "url must be a postgresql:// URL, got 'sqlite:///x'"),
        ("postgresql://h/d", {"max_stale_s": -1}, "max_stale_s must be a finite number >= 0"),
        ("postgresql://h/d", {"max_stale_s": "5"}, "max_stale_s must be a number, got '5'"),
    ],
)
def test_bad_arguments_are_named(url, kwargs, message) -> None:
    for store in (PostgresPacingStore, PostgresTrafficStore):
        with pytest.raises(ValueError, match=message):
            store(url, **kwargs)


def test_an_unreachable_database_is_a_clear_error(postgres) -> None:
    url = f"postgresql://postgres@127.0.0.1:{postgres.port + 1}/nothing"
    with pytest.raises(StateUnavailableError, match=r"unreachable \(127\.0\.0\.1:\d+/nothing\)"):
        PostgresPacingStore(url)


def test_the_outage_setting_is_read_from_the_environment() -> None:
    from adrank.stores import MAX_STALE_ENV, max_stale_s

    assert max_stale_s({}) == 30.0
    assert max_stale_s({MAX_STALE_ENV: "0"}) == 0.0
    assert max_stale_s({MAX_STALE_ENV: "2.5"}) == 2.5
    for bad in ("-1", "soon", "inf"):
        with pytest.raises(ValueError, match=f"{MAX_STALE_ENV} must be a number of seconds >= 0"):
            max_stale_s({MAX_STALE_ENV: bad})


def test_a_state_location_is_a_url_or_a_path() -> None:
    from adrank.stores import state_location

    assert state_location("postgresql://u@h:5432/d") == "postgresql://u@h:5432/d"
    assert state_location("state/control.sqlite") == Path("state/control.sqlite")


def test_a_connection_cut_while_idle_is_replaced_without_an_error(postgres) -> None:
    url = postgres.new_database()
    store = PostgresPacingStore(url)
    store.set_budget(1, 10.0)
    postgres.stop("fast")  # every connection is cut while this store is idle
    postgres.start()
    store.set_budget(2, 20.0)  # a write that had not begun: tried again on a new connection
    assert store.budgets()[0].tolist() == [1, 2]
    postgres.stop("fast")
    postgres.start()
    assert store.budgets()[0].tolist() == [1, 2]  # a read, the same
    store.close()
