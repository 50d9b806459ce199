"""One control state for several processes: pacing and traffic control over one SQLite file.

Two services opened on one file are two connections, as two ``adrank serve`` processes are:
each must see the other's kill switches, caps, budgets and spend once its refresh is due, and
touch the store on the request path only for that check. ``test_shared_state_service.py`` runs
the same through two real service processes.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from adrank.pacing import PacingConfig, PacingService, SpendEvent, SQLitePacingStore
from adrank.traffic import SQLiteTrafficStore, TrafficControl

NOW = 1_735_700_000.0  # 2025-01-01 03:06 UTC
DAY = int(NOW // 86_400)


def _statements(store: SQLitePacingStore | SQLiteTrafficStore) -> list[str]:
    """Every SQL statement ``store`` runs from now on."""
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    return seen


def _click(event_id: str, campaign: int, cost: float, ts: float = NOW) -> SpendEvent:
    return SpendEvent(event_id, campaign, "click", cost, ts)


def test_a_kill_switch_and_a_cap_set_through_one_process_bind_in_the_other(tmp_path) -> None:
    path = tmp_path / "state.sqlite"
    a = TrafficControl(SQLiteTrafficStore(path), refresh_s=0)
    b = TrafficControl(SQLiteTrafficStore(path), refresh_s=0)
    advertisers, campaigns = np.array([1, 2, 3]), np.array([10, 20, 30])
    assert not b.blocked(advertisers, campaigns).any()
    a.kill_advertiser(2, "fraud")
    a.kill_campaign(30)
    a.set_ad_load_cap(0.0, region="US")
    assert b.blocked(advertisers, campaigns).tolist() == [False, True, True]
    assert b.kill_switches() == {"advertisers": {2: "fraud"}, "campaigns": {30: ""}}
    assert b.ad_load_cap("feed", "US") == 0.0
    b.revive_advertiser(2)  # and back the other way
    assert b.clear_ad_load_cap(region="US")
    assert a.blocked(advertisers, campaigns).tolist() == [False, False, True]
    assert a.ad_load_caps() == []
    assert a.ad_load_cap("feed", "US") == 1.0


def test_traffic_reads_touch_the_store_only_when_a_refresh_is_due(tmp_path) -> None:
    path = tmp_path / "state.sqlite"
    a = TrafficControl(SQLiteTrafficStore(path))
    b = TrafficControl(SQLiteTrafficStore(path), refresh_s=60)
    statements = _statements(b.store)
    a.kill_campaign(7)
    for _ in range(1000):  # the request path within one refresh interval: no SQL at all
        assert not b.blocked(np.array([1]), np.array([7])).any()
        assert b.ad_load_cap("feed", "US") == 1.0
    assert statements == []
    b._next_refresh = 0.0  # the interval is over: one cheap check, then one reload
    assert b.blocked(np.array([1]), np.array([7])).tolist() == [True]
    assert statements[0] == "PRAGMA data_version"
    statements.clear()
    b._next_refresh = 0.0  # nothing changed since: the check only
    assert b.blocked(np.array([1]), np.array([7])).tolist() == [True]
    assert statements == ["PRAGMA data_version"]


def test_budgets_set_through_one_process_pace_in_the_other(tmp_path) -> None:
    path = tmp_path / "state.sqlite"
    a = PacingService(SQLitePacingStore(path), refresh_s=0)
    b = PacingService(SQLitePacingStore(path), refresh_s=0)
    assert b.status(5, NOW).daily_budget is None
    a.set_budget(5, 100.0, NOW)
    seen = b.status(5, NOW)
    assert seen.daily_budget == 100.0
    assert seen.multiplier == PacingConfig().initial_participation
    a.set_budget(5, 0.0, NOW)  # a budget of 0 stops the campaign in every process
    assert b.status(5, NOW).multiplier == 0.0
    assert b.multipliers(np.array([5, 5, 6]), NOW).tolist() == [0.0, 0.0, 1.0]


def test_every_process_paces_by_the_spend_all_of_them_recorded(tmp_path) -> None:
    path = tmp_path / "state.sqlite"
    a = PacingService(SQLitePacingStore(path), PacingConfig(enabled=False), refresh_s=0)
    b = PacingService(SQLitePacingStore(path), PacingConfig(enabled=False), refresh_s=0)
    a.set_budget(1, 10.0, NOW)
    a.record_events([_click(f"a{i}", 1, 1.0) for i in range(5)])
    b.record_events([_click(f"b{i}", 1, 1.0) for i in range(4)] + [_click("a0", 1, 1.0)])
    assert a.status(1, NOW).spend == b.status(1, NOW).spend == 9.0  # a0 counted once
    assert a.multipliers(np.array([1]), NOW).tolist() == [1.0]
    b.record_events([_click("b9", 1, 1.0)])  # the budget is spent by b's event
    assert a.multipliers(np.array([1]), NOW).tolist() == [0.0]
    assert a.status(1, NOW).exhausted


def test_one_controller_steps_for_every_process(tmp_path) -> None:
    path = tmp_path / "state.sqlite"
    config = PacingConfig(update_interval_s=60)
    a = PacingService(SQLitePacingStore(path), config, refresh_s=0)
    b = PacingService(SQLitePacingStore(path), config, refresh_s=0)
    a.set_budget(1, 1000.0, NOW)
    b.update(NOW)
    a.record_events([_click(f"a{i}", 1, 1.0, NOW + i) for i in range(30)])
    assert a.update(NOW + 61)  # a steps first ...
    stepped = a.store.load_controller_state(DAY)
    assert not b.update(NOW + 62)  # ... so b adopts a's step instead of taking its own
    assert b.store.load_controller_state(DAY).updated_at == stepped.updated_at == NOW + 61
    assert b.status(1, NOW + 62).multiplier == a.status(1, NOW + 62).multiplier
    assert b.status(1, NOW + 62).multiplier != config.initial_participation  # it stepped
    assert not b.update(NOW + 90)  # the next step is due a minute after a's
    assert b.update(NOW + 122)  # and b takes it
    assert a.store.load_controller_state(DAY).updated_at == NOW + 122


def test_a_step_is_stored_only_over_the_state_it_started_from(tmp_path) -> None:
    store = SQLitePacingStore(tmp_path / "state.sqlite")
    service = PacingService(store)
    service.set_budget(1, 10.0, NOW)
    service.update(NOW + 61)
    state = store.load_controller_state(DAY)
    assert not store.save_controller_state(DAY, state, replaces=None)  # one is stored already
    assert not store.save_controller_state(DAY, state, replaces=NOW)  # not the stored one
    assert store.save_controller_state(DAY, state, replaces=NOW + 61)


def test_pacing_requests_touch_the_store_only_when_a_refresh_is_due(tmp_path) -> None:
    path = tmp_path / "state.sqlite"
    a = PacingService(SQLitePacingStore(path))
    b = PacingService(SQLitePacingStore(path), refresh_s=60)
    a.set_budget(1, 10.0, NOW)
    b.update(NOW)
    statements = _statements(b.store)
    a.record_events([_click("x", 1, 10.0)])
    for _ in range(1000):  # no SQL within the interval, and no step due
        assert b.multipliers(np.array([1]), NOW + 1).tolist() in ([0.0], [1.0])
    assert statements == []
    b._next_refresh = 0.0
    assert b.multipliers(np.array([1]), NOW + 1).tolist() == [0.0]  # a's spend, seen
    assert statements[0] == "PRAGMA data_version"


@pytest.mark.parametrize("refresh_s", [-1, float("nan"), 61, "1", True])
def test_refresh_interval_is_checked(tmp_path, refresh_s) -> None:
    with pytest.raises(ValueError, match="refresh_s must be"):
        PacingService(SQLitePacingStore(":memory:"), refresh_s=refresh_s)
    with pytest.raises(ValueError, match="refresh_s must be"):
        TrafficControl(SQLiteTrafficStore(":memory:"), refresh_s=refresh_s)


def test_data_version_moves_only_for_other_connections(tmp_path) -> None:
    from adrank.sqlite_files import data_version, open_database

    path = tmp_path / "state.sqlite"
    one, other = open_database(path), open_database(path)
    one.execute("CREATE TABLE t (x)")
    before = data_version(one)
    one.execute("INSERT INTO t VALUES (1)")
    assert data_version(one) == before  # its own commit
    other.execute("INSERT INTO t VALUES (2)")
    assert data_version(one) != before
    assert isinstance(one, sqlite3.Connection)
