"""The default :class:`~adrank.pacing.store.PacingStore`: one SQLite file, one transaction a batch.

A batch of events goes through a staging table inside one ``BEGIN IMMEDIATE`` transaction:
ids already stored (or repeated within the batch) are dropped, the rest are added to
``events`` and summed into ``spend`` per (campaign, day). Either all of that commits or none of
it, so a crash mid-batch loses nothing that was acknowledged and counts nothing twice.
The file uses WAL journaling with ``synchronous=FULL``: a committed batch survives a crash of
the process and of the machine. ``path=":memory:"`` keeps everything in memory (simulations).
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adrank.pacing.events import SpendEvent
from adrank.pacing.store import ControllerState, RecordedSpend, id_value_columns
from adrank.sqlite_files import data_version, open_database, transaction

IMPRESSION_MINUTES = """CREATE TABLE IF NOT EXISTS impression_minutes (
    day         INTEGER NOT NULL,
    minute      INTEGER NOT NULL,
    campaign_id INTEGER NOT NULL,
    impressions INTEGER NOT NULL,
    PRIMARY KEY (day, minute, campaign_id)
) WITHOUT ROWID"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS budgets (
    campaign_id  INTEGER PRIMARY KEY,
    daily_budget REAL NOT NULL CHECK (daily_budget >= 0),
    max_charge   REAL CHECK (max_charge > 0)
);
CREATE TABLE IF NOT EXISTS events (
    event_id    TEXT PRIMARY KEY,
    campaign_id INTEGER NOT NULL,
    day         INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    cost        REAL NOT NULL,
    ts          REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spend (
    campaign_id INTEGER NOT NULL,
    day         INTEGER NOT NULL,
    spend       REAL NOT NULL,
    largest     REAL NOT NULL,
    impressions INTEGER NOT NULL,
    clicks      INTEGER NOT NULL,
    conversions INTEGER NOT NULL,
    later_charges INTEGER NOT NULL DEFAULT 0,
    charges     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, day)
) WITHOUT ROWID;
{IMPRESSION_MINUTES};
CREATE TABLE IF NOT EXISTS controller_state (
    campaign_id     INTEGER NOT NULL,
    day             INTEGER NOT NULL,
    participation   REAL NOT NULL,
    demand_spent    REAL NOT NULL,
    demand_exposed  REAL NOT NULL,
    spend_rate      REAL NOT NULL,
    spend_at_update REAL NOT NULL,
    updated_at      REAL NOT NULL,
    PRIMARY KEY (day, campaign_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS controller_steps (
    day        INTEGER PRIMARY KEY,
    updated_at REAL NOT NULL
);
"""

# When the stored step of a day was taken (files from before controller_steps: its rows' time).
STEP_TIME = """
SELECT COALESCE(
    (SELECT updated_at FROM controller_steps WHERE day = :day),
    (SELECT MAX(updated_at) FROM controller_state WHERE day = :day)
)
"""

SCHEMA_VERSION = 3


def _migrate(db: sqlite3.Connection) -> None:
    """Brings a file written by an older schema version to version 3.

    Version 2 keeps each campaign day's largest single charge in ``spend`` (recomputed here from
    the stored events, exactly) and new controller columns; the old (PI) controller's state is
    dropped and the controller starts that day again from its initial state. Version 3 adds the
    count of charged clicks and conversions per campaign day (recomputed from the events) and
    an optional largest possible charge per campaign.
    """
    (version,) = db.execute("PRAGMA user_version").fetchone()
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version >= SCHEMA_VERSION or "spend" not in tables:
        return
    columns = {r[1] for r in db.execute("PRAGMA table_info(spend)")}
    with transaction(db):
        if "largest" not in columns:
            db.execute("ALTER TABLE spend ADD COLUMN largest REAL NOT NULL DEFAULT 0")
            db.execute(
                "UPDATE spend SET largest = (SELECT COALESCE(MAX(cost), 0) FROM events"
                " WHERE events.campaign_id = spend.campaign_id AND events.day = spend.day)"
            )
            db.execute("DROP TABLE IF EXISTS controller_state")
        if "later_charges" not in columns:
            db.execute("ALTER TABLE spend ADD COLUMN later_charges INTEGER NOT NULL DEFAULT 0")
            db.execute("ALTER TABLE spend ADD COLUMN charges INTEGER NOT NULL DEFAULT 0")
            db.execute(
                "UPDATE spend SET (later_charges, charges) = (SELECT"
                " COALESCE(SUM(kind > 0 AND cost > 0), 0), COALESCE(SUM(cost > 0), 0)"
                " FROM events WHERE events.campaign_id = spend.campaign_id"
                " AND events.day = spend.day)"
            )
        if "impression_minutes" not in tables:
            db.execute(IMPRESSION_MINUTES)
            db.execute(ADD_IMPRESSIONS.replace("staged", "events"))
        if "max_charge" not in {r[1] for r in db.execute("PRAGMA table_info(budgets)")}:
            db.execute("ALTER TABLE budgets ADD COLUMN max_charge REAL CHECK (max_charge > 0)")


STAGE = """
CREATE TEMP TABLE IF NOT EXISTS staged (
    event_id    TEXT PRIMARY KEY,
    campaign_id INTEGER NOT NULL,
    day         INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    cost        REAL NOT NULL,
    ts          REAL NOT NULL
) WITHOUT ROWID;
"""

# The first occurrence of an id in a batch wins (INSERT OR IGNORE into the staging table).
ADD_SPEND = """
INSERT INTO spend (
    campaign_id, day, spend, largest, impressions, clicks, conversions, later_charges, charges
)
SELECT campaign_id, day, SUM(cost), MAX(cost), SUM(kind = 0), SUM(kind = 1), SUM(kind = 2),
    SUM(kind > 0 AND cost > 0), SUM(cost > 0)
FROM staged WHERE true GROUP BY campaign_id, day
ON CONFLICT (campaign_id, day) DO UPDATE SET
    spend = spend + excluded.spend,
    largest = MAX(largest, excluded.largest),
    impressions = impressions + excluded.impressions,
    clicks = clicks + excluded.clicks,
    conversions = conversions + excluded.conversions,
    later_charges = later_charges + excluded.later_charges,
    charges = charges + excluded.charges
"""

# Impressions per minute of their timestamp: what open_impressions sums over a window.
ADD_IMPRESSIONS = """
INSERT INTO impression_minutes (day, minute, campaign_id, impressions)
SELECT day, CAST(ts / 60 AS INTEGER), campaign_id, COUNT(*)
FROM staged WHERE kind = 0 GROUP BY 1, 2, 3
ON CONFLICT (day, minute, campaign_id) DO UPDATE SET
    impressions = impressions + excluded.impressions
"""


class SQLitePacingStore:
    """Pacing data in one SQLite file (created on first use); safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = open_database(self.path)
        self._lock = threading.Lock()
        with self._lock:
            _migrate(self._db)
            self._db.executescript(SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.executescript(STAGE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def version(self) -> int:
        with self._lock:
            return data_version(self._db)

    def set_budget(
        self, campaign_id: int, daily_budget: float, max_charge: float | None = None
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO budgets VALUES (?, ?, ?) ON CONFLICT (campaign_id) DO UPDATE SET"
                " daily_budget = excluded.daily_budget, max_charge = excluded.max_charge",
                (int(campaign_id), float(daily_budget), max_charge),
            )

    def max_charges(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            rows = self._db.execute(
                "SELECT campaign_id, COALESCE(max_charge, 0) FROM budgets ORDER BY campaign_id"
            ).fetchall()
        return id_value_columns(rows)

    def charge_counts(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            rows = self._db.execute(
                "SELECT campaign_id, impressions, later_charges, charges FROM spend"
                " WHERE day = ? ORDER BY campaign_id",
                (int(day),),
            ).fetchall()
        counts = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), 3)
        return np.array([r[0] for r in rows], dtype=np.int64), counts

    def open_impressions(self, day: int, since: float) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            rows = self._db.execute(
                "SELECT campaign_id, SUM(impressions) FROM impression_minutes"
                " WHERE day = ? AND minute >= ? GROUP BY campaign_id ORDER BY campaign_id",
                (int(day), math.floor(since / 60)),
            ).fetchall()
        return id_value_columns(rows)

    def budgets(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            rows = self._db.execute(
                "SELECT campaign_id, daily_budget FROM budgets ORDER BY campaign_id"
            ).fetchall()
        return id_value_columns(rows)

    def record(self, events: Sequence[SpendEvent], days: Sequence[int]) -> RecordedSpend:
        if len(events) != len(days):
            raise ValueError(f"days must have one entry per event ({len(events)}), got {len(days)}")
        if not events:
            return RecordedSpend.nothing()
        rows = [
            (e.event_id, e.campaign_id, int(d), int(e.kind), e.cost, e.timestamp)
            for e, d in zip(events, days, strict=True)
        ]
        with self._lock, transaction(self._db) as db:
            db.execute("DELETE FROM staged")
            db.executemany("INSERT OR IGNORE INTO staged VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.execute("DELETE FROM staged WHERE event_id IN (SELECT event_id FROM events)")
            (accepted,) = db.execute("SELECT COUNT(*) FROM staged").fetchone()
            groups = db.execute(
                "SELECT campaign_id, day, SUM(cost), MAX(cost), SUM(kind = 0),"
                " SUM(kind > 0 AND cost > 0), SUM(cost > 0) FROM staged"
                " GROUP BY campaign_id, day"
            ).fetchall()
            db.execute(ADD_SPEND)
            db.execute(ADD_IMPRESSIONS)
            db.execute("INSERT INTO events SELECT * FROM staged")
            db.execute("DELETE FROM staged")
        return RecordedSpend(
            accepted=int(accepted),
            duplicates=len(rows) - int(accepted),
            campaign_id=np.array([g[0] for g in groups], dtype=np.int64),
            day=np.array([g[1] for g in groups], dtype=np.int64),
            cost=np.array([g[2] for g in groups], dtype=np.float64),
            largest=np.array([g[3] for g in groups], dtype=np.float64),
            impressions=np.array([g[4] for g in groups], dtype=np.float64),
            later=np.array([g[5] for g in groups], dtype=np.float64),
            charges=np.array([g[6] for g in groups], dtype=np.float64),
        )

    def spend(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            rows = self._db.execute(
                "SELECT campaign_id, spend FROM spend WHERE day = ? ORDER BY campaign_id",
                (int(day),),
            ).fetchall()
        return id_value_columns(rows)

    def largest_charges(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            rows = self._db.execute(
                "SELECT campaign_id, largest FROM spend WHERE day = ? ORDER BY campaign_id",
                (int(day),),
            ).fetchall()
        return id_value_columns(rows)

    def event_counts(self, day: int) -> dict[int, tuple[int, int, int]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT campaign_id, impressions, clicks, conversions FROM spend WHERE day = ?",
                (int(day),),
            ).fetchall()
        return {int(c): (int(i), int(k), int(v)) for c, i, k, v in rows}

    def save_controller_state(
        self, day: int, state: ControllerState, replaces: float | None
    ) -> bool:
        n = len(state.campaign_id)
        columns = [getattr(state, name).tolist() for name in ControllerState.COLUMNS]
        rows = list(
            zip(
                state.campaign_id.tolist(),
                [int(day)] * n,
                *columns,
                [float(state.updated_at)] * n,
                strict=True,
            )
        )
        slots = ", ".join("?" * (len(ControllerState.COLUMNS) + 3))
        with self._lock, transaction(self._db) as db:
            (stored,) = db.execute(STEP_TIME, {"day": int(day)}).fetchone()
            if stored != replaces:
                return False  # another process stepped first: keep its state
            db.execute("DELETE FROM controller_state WHERE day = ?", (int(day),))
            db.executemany(f"INSERT INTO controller_state VALUES ({slots})", rows)
            db.execute(
                "INSERT OR REPLACE INTO controller_steps VALUES (?, ?)",
                (int(day), float(state.updated_at)),
            )
        return True

    def load_controller_state(self, day: int) -> ControllerState | None:
        names = ", ".join(ControllerState.COLUMNS)
        with self._lock:
            (updated_at,) = self._db.execute(STEP_TIME, {"day": int(day)}).fetchone()
            rows = self._db.execute(
                f"SELECT campaign_id, {names} FROM controller_state"
                " WHERE day = ? ORDER BY campaign_id",
                (int(day),),
            ).fetchall()
        if updated_at is None:
            return None
        columns = np.array(rows, dtype=np.float64).reshape(len(rows), -1).T
        return ControllerState(
            np.array([r[0] for r in rows], dtype=np.int64),
            *(columns[1:] if rows else [np.empty(0)] * len(ControllerState.COLUMNS)),
            updated_at=float(updated_at),
        )
