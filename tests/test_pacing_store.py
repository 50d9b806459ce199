"""The SQLite pacing store and the service over it: atomic, idempotent, durable across restarts."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from adrank.pacing import PacingConfig, PacingService, SpendEvent, SQLitePacingStore

DAY0 = 1_735_689_600.0  # 2025-01-01 00:00 UTC, a day boundary
HOUR = 3600.0


def event(i: int, campaign: int, cost: float, ts: float, kind: str = "impression") -> SpendEvent:
    return SpendEvent(f"e{i}", campaign, kind, cost, ts)


def spend_ref(events: list[SpendEvent], day: int) -> dict[int, float]:
    """Spend per campaign on ``day``: the first event of each id counts, once."""
    seen: set[str] = set()
    totals: dict[int, float] = {}
    for e in events:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        if math.floor(e.timestamp / 86400) != day:
            continue
        totals[e.campaign_id] = totals.get(e.campaign_id, 0.0) + e.cost
    return totals


def as_dict(columns: tuple[np.ndarray, np.ndarray]) -> dict[int, float]:
    return dict(zip(columns[0].tolist(), columns[1].tolist(), strict=True))


def test_record_is_idempotent_within_and_across_batches() -> None:
    store = SQLitePacingStore(":memory:")
    day = int(DAY0 // 86400)
    batch = [event(1, 7, 1.0, DAY0), event(2, 7, 2.0, DAY0), event(1, 7, 100.0, DAY0)]
    first = store.record(batch, [day] * 3)
    assert (first.accepted, first.duplicates) == (2, 1)
    assert first.cost.tolist() == [3.0]
    again = store.record(batch, [day] * 3)
    assert (again.accepted, again.duplicates) == (0, 3)
    assert again.cost.size == 0
    assert as_dict(store.spend(day)) == {7: 3.0}
    assert as_dict(store.largest_charges(day)) == {7: 2.0}  # not the duplicate's 100
    assert first.largest.tolist() == [2.0]
    assert store.event_counts(day) == {7: (2, 0, 0)}


def test_out_of_order_events_count_toward_their_own_day() -> None:
    store = SQLitePacingStore(":memory:")
    config = PacingConfig()
    events = [
        event(1, 7, 1.0, DAY0 + 86400 + 5),  # tomorrow's event arrives first
        event(2, 7, 2.0, DAY0 + 10),
        event(3, 8, 4.0, DAY0 - 1),  # yesterday's, late
    ]
    days = config.day_of(np.array([e.timestamp for e in events])).tolist()
    store.record(events, days)
    day = int(config.day_of(DAY0))
    assert as_dict(store.spend(day)) == {7: 2.0}
    assert as_dict(store.spend(day + 1)) == {7: 1.0}
    assert as_dict(store.spend(day - 1)) == {8: 4.0}


def test_record_checks_days_length() -> None:
    store = SQLitePacingStore(":memory:")
    with pytest.raises(ValueError, match=r"days must have one entry per event \(1\), got 0"):
        store.record([event(1, 7, 1.0, DAY0)], [])


def test_random_batches_match_reference() -> None:
    rng = random.Random(3)
    store = SQLitePacingStore(":memory:")
    config = PacingConfig()
    events = [
        event(
            rng.randrange(300),
            rng.randrange(5),
            rng.choice([0.0, 0.5, 1.25]),
            DAY0 + rng.random() * 2 * 86400,
        )
        for _ in range(1000)
    ]
    for start in range(0, len(events), 97):
        batch = events[start : start + 97]
        store.record(batch, config.day_of(np.array([e.timestamp for e in batch])).tolist())
    for day in (int(DAY0 // 86400), int(DAY0 // 86400) + 1):
        got = as_dict(store.spend(day))
        want = spend_ref(events, day)
        assert got.keys() == want.keys()
        for campaign, total in want.items():
            assert got[campaign] == pytest.approx(total)


def test_restart_mid_day_loses_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "pacing.sqlite"
    config = PacingConfig(update_interval_s=60)
    events = [event(i, 1 + i % 3, 0.5 + (i % 4), DAY0 + 6 * HOUR + i * 20.0) for i in range(600)]
    ids = np.array([1, 2, 3])
    first = PacingService(SQLitePacingStore(path), config)
    for campaign in (1, 2, 3):
        first.set_budget(campaign, 1000.0, DAY0)
    for start in range(0, 300, 25):  # the first half of the day's events, then the process stops
        first.record_events(events[start : start + 25])
        first.multipliers(ids, events[start + 24].timestamp)
    stopped_at = events[299].timestamp
    before = [first.status(c, stopped_at) for c in (1, 2, 3)]
    participation_before = first.participation(ids, stopped_at)
    assert (participation_before != 0.1).all()  # the controller has moved since the start
    state_before = first.store.load_controller_state(int(DAY0 // 86400))
    first.store.close()

    second = PacingService(SQLitePacingStore(path), config)
    after = [second.status(c, stopped_at) for c in (1, 2, 3)]
    assert [a.spend for a in after] == pytest.approx([b.spend for b in before])
    np.testing.assert_array_equal(second.participation(ids, stopped_at), participation_before)
    state_after = second.store.load_controller_state(int(DAY0 // 86400))
    for name in ("campaign_id", *type(state_after).COLUMNS, "updated_at"):
        np.testing.assert_array_equal(getattr(state_after, name), getattr(state_before, name))
    assert as_dict(second.store.largest_charges(int(DAY0 // 86400))) == {1: 3.5, 2: 3.5, 3: 3.5}
    # The sender retries everything it is unsure of: the whole first half again, then the rest.
    result = second.record_events(events[:300])
    assert (result.accepted, result.duplicates) == (0, 300)
    second.record_events(events[300:])
    want = spend_ref(events, int(DAY0 // 86400))
    totals = [second.status(c, events[-1].timestamp).spend for c in (1, 2, 3)]
    assert totals == pytest.approx([want[c] for c in (1, 2, 3)])
    second.store.close()


def test_the_reserve_survives_a_restart(tmp_path: Path) -> None:
    """The largest charge is stored with the spend, so a restart cannot shrink the reserve."""
    path = tmp_path / "pacing.sqlite"
    config = PacingConfig(update_interval_s=3600, report_delay_s=0)
    first = PacingService(SQLitePacingStore(path), config)
    first.set_budget(1, 10.0, DAY0)
    first.record_events([event(1, 1, 4.0, DAY0 + 10), event(2, 1, 2.5, DAY0 + 20)])
    assert first.participation(np.array([1]), DAY0 + 30)[0] == 0.0  # 6.5 + 4 >= 10
    first.store.close()
    second = PacingService(SQLitePacingStore(path), config)
    assert second.participation(np.array([1]), DAY0 + 40)[0] == 0.0
    second.store.close()


def test_controller_state_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    service = PacingService(SQLitePacingStore(path), PacingConfig(update_interval_s=60))
    service.set_budget(5, 10.0, DAY0)
    service.multipliers(np.array([5]), DAY0)
    service.multipliers(np.array([5]), DAY0 + 120)  # one step, exposed and nothing spent: p grows
    stored = service.store.load_controller_state(int(DAY0 // 86400))
    assert stored is not None
    assert stored.campaign_id.tolist() == [5]
    assert stored.updated_at == DAY0 + 120
    assert stored.participation[0] == pytest.approx(0.2)
    assert stored.demand_exposed[0] > 0
    assert service.store.load_controller_state(0) is None


def test_a_version_1_file_is_migrated_without_losing_spend(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    day = int(DAY0 // 86400)
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE budgets (campaign_id INTEGER PRIMARY KEY, daily_budget REAL NOT NULL);
        CREATE TABLE events (event_id TEXT PRIMARY KEY, campaign_id INTEGER NOT NULL,
            day INTEGER NOT NULL, kind INTEGER NOT NULL, cost REAL NOT NULL, ts REAL NOT NULL);
        CREATE TABLE spend (campaign_id INTEGER NOT NULL, day INTEGER NOT NULL,
            spend REAL NOT NULL, impressions INTEGER NOT NULL, clicks INTEGER NOT NULL,
            conversions INTEGER NOT NULL, PRIMARY KEY (campaign_id, day));
        CREATE TABLE controller_state (campaign_id INTEGER NOT NULL, day INTEGER NOT NULL,
            log_multiplier REAL NOT NULL, last_error REAL NOT NULL,
            spend_at_update REAL NOT NULL, updated_at REAL NOT NULL);
        """
    )
    db.executemany(
        "INSERT INTO events VALUES (?, ?, ?, 1, ?, ?)",
        [("a", 7, day, 2.0, DAY0), ("b", 7, day, 5.0, DAY0 + 1)],
    )
    db.execute("INSERT INTO spend VALUES (7, ?, 7.0, 0, 2, 0)", (day,))
    db.execute("INSERT INTO controller_state VALUES (7, ?, -0.5, 0.1, 7.0, ?)", (day, DAY0))
    db.commit()
    db.close()
    store = SQLitePacingStore(path)
    assert as_dict(store.spend(day)) == {7: 7.0}
    assert as_dict(store.largest_charges(day)) == {7: 5.0}
    ids, counts = store.charge_counts(day)  # recounted from the stored events
    assert ids.tolist() == [7]
    assert counts.tolist() == [[0.0, 2.0, 2.0]]  # no impression, 2 charged clicks, 2 charges
    assert as_dict(store.max_charges()) == {}
    assert store.load_controller_state(day) is None  # the old controller's state is dropped
    assert store.record([event(3, 7, 1.0, DAY0 + 2)], [day]).accepted == 1
    assert as_dict(store.spend(day)) == {7: 8.0}
    store.close()
    assert as_dict(SQLitePacingStore(path).spend(day)) == {7: 8.0}  # and it opens again


def test_charge_counts_and_open_impressions() -> None:
    store = SQLitePacingStore(":memory:")
    day = int(DAY0 // 86400)
    events = [
        event(1, 7, 0.0, DAY0 + 10),
        event(2, 7, 0.0, DAY0 + 100),
        event(3, 7, 0.5, DAY0 + 100, "click"),
        event(4, 7, 0.0, DAY0 + 100, "conversion"),  # counted, not charged
        event(5, 8, 0.01, DAY0 + 200),  # a CPM impression: charged
        event(6, 8, 0.01, DAY0 - 10),  # yesterday's
    ]
    recorded = store.record(events, [int(e.timestamp // 86400) for e in events])
    assert recorded.impressions.tolist() == [2.0, 1.0, 1.0]  # (7, day), (8, day - 1), (8, day)
    ids, counts = store.charge_counts(day)
    assert ids.tolist() == [7, 8]
    assert counts.tolist() == [[2.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
    # Counted by whole minutes: since DAY0 + 50 counts from DAY0 (the impression at DAY0 + 10).
    assert as_dict(store.open_impressions(day, since=DAY0 + 50)) == {7: 2.0, 8: 1.0}
    assert as_dict(store.open_impressions(day, since=DAY0 + 150)) == {8: 1.0}
    assert as_dict(store.open_impressions(day, since=DAY0 + 300)) == {}
    store.set_budget(7, 10.0, max_charge=0.6)
    store.set_budget(8, 10.0)
    assert as_dict(store.max_charges()) == {7: 0.6, 8: 0.0}


def test_a_schema_2_file_gets_its_impressions_per_minute_from_its_events(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "v2.sqlite"
    day = int(DAY0 // 86400)
    store = SQLitePacingStore(path)
    store.record([event(1, 7, 0.0, DAY0 + 10), event(2, 7, 1.0, DAY0 + 20, "click")], [day] * 2)
    store.close()
    db = sqlite3.connect(path)  # back to what schema 2 wrote
    db.executescript(
        "DROP TABLE impression_minutes; ALTER TABLE spend DROP COLUMN later_charges;"
        "ALTER TABLE spend DROP COLUMN charges; ALTER TABLE budgets DROP COLUMN max_charge;"
        "PRAGMA user_version = 2;"
    )
    db.close()
    store = SQLitePacingStore(path)
    assert as_dict(store.open_impressions(day, since=DAY0)) == {7: 1.0}
    assert store.charge_counts(day)[1].tolist() == [[1.0, 1.0, 1.0]]
    store.set_budget(7, 5.0, max_charge=2.0)
    assert as_dict(store.max_charges()) == {7: 2.0}
