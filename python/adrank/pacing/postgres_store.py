"""A :class:`~adrank.pacing.store.PacingStore` in PostgreSQL, shared by serving replicas.

Glossary: a *state URL* ``postgresql://...`` names the database; tables are those of
:class:`~adrank.pacing.sqlite_store.SQLitePacingStore` (``budgets``, ``events``, ``spend``,
``impression_minutes``, ``controller_state``, ``controller_steps``) with the same meaning.

A batch of events is stored in one transaction that holds the change counter's row lock
(:class:`~adrank.stores.postgres.PostgresConnection`): the ids not stored before (and the first
of each id within the batch) go into ``events`` and are summed into ``spend``; all of it commits
or none does, so a batch retried after a lost answer counts once. Outages: see
:mod:`adrank.stores.postgres` (writes fail with ``StateUnavailableError``; serving keeps the
last known state for ``max_stale_s``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from adrank.pacing.events import SpendEvent
from adrank.pacing.store import ControllerState, RecordedSpend, id_value_columns
from adrank.stores.postgres import DEFAULT_MAX_STALE_S, PostgresConnection

SCHEMA = """
CREATE TABLE IF NOT EXISTS budgets (
    campaign_id  bigint PRIMARY KEY,
    daily_budget double precision NOT NULL CHECK (daily_budget >= 0),
    max_charge   double precision CHECK (max_charge > 0)
);
CREATE TABLE IF NOT EXISTS events (
    event_id    text PRIMARY KEY,
    campaign_id bigint NOT NULL,
    day         bigint NOT NULL,
    kind        smallint NOT NULL,
    cost        double precision NOT NULL,
    ts          double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS spend (
    campaign_id   bigint NOT NULL,
    day           bigint NOT NULL,
    spend         double precision NOT NULL,
    largest       double precision NOT NULL,
    impressions   bigint NOT NULL,
    clicks        bigint NOT NULL,
    conversions   bigint NOT NULL,
    later_charges bigint NOT NULL,
    charges       bigint NOT NULL,
    PRIMARY KEY (campaign_id, day)
);
CREATE TABLE IF NOT EXISTS impression_minutes (
    day         bigint NOT NULL,
    minute      bigint NOT NULL,
    campaign_id bigint NOT NULL,
    impressions bigint NOT NULL,
    PRIMARY KEY (day, minute, campaign_id)
);
CREATE TABLE IF NOT EXISTS controller_state (
    campaign_id     bigint NOT NULL,
    day             bigint NOT NULL,
    participation   double precision NOT NULL,
    demand_spent    double precision NOT NULL,
    demand_exposed  double precision NOT NULL,
    spend_rate      double precision NOT NULL,
    spend_at_update double precision NOT NULL,
    PRIMARY KEY (day, campaign_id)
);
CREATE TABLE IF NOT EXISTS controller_steps (
    day        bigint PRIMARY KEY,
    updated_at double precision NOT NULL
);
"""

# The new events: ids not stored before (the caller passes each id once, its first occurrence).
INSERT_NEW = """
INSERT INTO events
SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::smallint[],
                     %s::double precision[], %s::double precision[])
ON CONFLICT (event_id) DO NOTHING
RETURNING campaign_id, day, kind, cost, ts
"""

ADD_SPEND = """
INSERT INTO spend
SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::double precision[], %s::double precision[],
                     %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[])
ON CONFLICT (campaign_id, day) DO UPDATE SET
    spend = spend.spend + excluded.spend,
    largest = GREATEST(spend.largest, excluded.largest),
    impressions = spend.impressions + excluded.impressions,
    clicks = spend.clicks + excluded.clicks,
    conversions = spend.conversions + excluded.conversions,
    later_charges = spend.later_charges + excluded.later_charges,
    charges = spend.charges + excluded.charges
"""

ADD_IMPRESSIONS = """
INSERT INTO impression_minutes
SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[])
ON CONFLICT (day, minute, campaign_id) DO UPDATE SET
    impressions = impression_minutes.impressions + excluded.impressions
"""


class PostgresPacingStore:
    """Pacing data in the PostgreSQL database ``url`` (tables created on first use);
    safe to share between threads. ``max_stale_s``: see :mod:`adrank.stores.postgres`."""

    def __init__(self, url: str, max_stale_s: float = DEFAULT_MAX_STALE_S) -> None:
        self.url = url
        self._db = PostgresConnection(url, SCHEMA, max_stale_s)

    def close(self) -> None:
        self._db.close()

    def version(self) -> int:
        return self._db.version()

    def set_budget(
        self, campaign_id: int, daily_budget: float, max_charge: float | None = None
    ) -> None:
        with self._db.write() as db:
            db.execute(
                "INSERT INTO budgets VALUES (%s, %s, %s) ON CONFLICT (campaign_id) DO UPDATE SET"
                " daily_budget = excluded.daily_budget, max_charge = excluded.max_charge",
                (int(campaign_id), float(daily_budget), max_charge),
            )

    def max_charges(self) -> tuple[np.ndarray, np.ndarray]:
        return id_value_columns(
            self._db.read(
                "SELECT campaign_id, COALESCE(max_charge, 0) FROM budgets ORDER BY campaign_id"
            )
        )

    def budgets(self) -> tuple[np.ndarray, np.ndarray]:
        return id_value_columns(
            self._db.read("SELECT campaign_id, daily_budget FROM budgets ORDER BY campaign_id")
        )

    def record(self, events: Sequence[SpendEvent], days: Sequence[int]) -> RecordedSpend:
        if len(events) != len(days):
            raise ValueError(f"days must have one entry per event ({len(events)}), got {len(days)}")
        if not events:
            return RecordedSpend.nothing()
        first: dict[str, tuple] = {}  # the first occurrence of an id in the batch wins
        for e, d in zip(events, days, strict=True):
            if e.event_id not in first:
                first[e.event_id] = (
                    e.event_id,
                    int(e.campaign_id),
                    int(d),
                    int(e.kind),
                    e.cost,
                    e.timestamp,
                )
        rows = list(first.values())
        with self._db.write() as db:
            new = db.execute(INSERT_NEW, [list(c) for c in zip(*rows, strict=True)]).fetchall()
            groups = _groups(new)
            if new:
                db.execute(ADD_SPEND, [g.tolist() for g in groups])
                db.execute(ADD_IMPRESSIONS, _impression_minutes(new))
        return RecordedSpend(
            accepted=len(new),
            duplicates=len(events) - len(new),
            campaign_id=groups[0],
            day=groups[1],
            cost=groups[2].astype(np.float64),
            largest=groups[3].astype(np.float64),
            impressions=groups[4].astype(np.float64),
            later=groups[7].astype(np.float64),
            charges=groups[8].astype(np.float64),
        )

    def spend(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        return id_value_columns(
            self._db.read(
                "SELECT campaign_id, spend FROM spend WHERE day = %s ORDER BY campaign_id",
                (int(day),),
            )
        )

    def largest_charges(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        return id_value_columns(
            self._db.read(
                "SELECT campaign_id, largest FROM spend WHERE day = %s ORDER BY campaign_id",
                (int(day),),
            )
        )

    def event_counts(self, day: int) -> dict[int, tuple[int, int, int]]:
        rows = self._db.read(
            "SELECT campaign_id, impressions, clicks, conversions FROM spend WHERE day = %s",
            (int(day),),
        )
        return {int(c): (int(i), int(k), int(v)) for c, i, k, v in rows}

    def charge_counts(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._db.read(
            "SELECT campaign_id, impressions, later_charges, charges FROM spend"
            " WHERE day = %s ORDER BY campaign_id",
            (int(day),),
        )
        counts = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), 3)
        return np.array([r[0] for r in rows], dtype=np.int64), counts

    def open_impressions(self, day: int, since: float) -> tuple[np.ndarray, np.ndarray]:
        return id_value_columns(
            self._db.read(
                "SELECT campaign_id, SUM(impressions) FROM impression_minutes"
                " WHERE day = %s AND minute >= %s GROUP BY campaign_id ORDER BY campaign_id",
                (int(day), math.floor(since / 60)),
            )
        )

    def save_controller_state(
        self, day: int, state: ControllerState, replaces: float | None
    ) -> bool:
        columns = [state.campaign_id.tolist(), [int(day)] * len(state.campaign_id)]
        columns += [getattr(state, name).tolist() for name in ControllerState.COLUMNS]
        with self._db.write() as db:
            stored = db.execute(
                "SELECT updated_at FROM controller_steps WHERE day = %s", (int(day),)
            ).fetchone()
            if (stored[0] if stored else None) != replaces:
                return False  # another process stepped first: keep its state
            db.execute("DELETE FROM controller_state WHERE day = %s", (int(day),))
            db.execute(
                "INSERT INTO controller_state SELECT * FROM unnest(%s::bigint[], %s::bigint[],"
                + ", ".join(["%s::double precision[]"] * len(ControllerState.COLUMNS))
                + ")",
                columns,
            )
            db.execute(
                "INSERT INTO controller_steps VALUES (%s, %s)"
                " ON CONFLICT (day) DO UPDATE SET updated_at = excluded.updated_at",
                (int(day), float(state.updated_at)),
            )
        return True

    def load_controller_state(self, day: int) -> ControllerState | None:
        names = ", ".join(ControllerState.COLUMNS)
        steps = self._db.read("SELECT updated_at FROM controller_steps WHERE day = %s", (int(day),))
        if not steps:
            return None
        rows = self._db.read(
            f"SELECT campaign_id, {names} FROM controller_state WHERE day = %s"
            " ORDER BY campaign_id",
            (int(day),),
        )
        columns = np.array(rows, dtype=np.float64).reshape(len(rows), -1).T
        return ControllerState(
            np.array([r[0] for r in rows], dtype=np.int64),
            *(columns[1:] if rows else [np.empty(0)] * len(ControllerState.COLUMNS)),
            updated_at=float(steps[0][0]),
        )


def _groups(new: list[tuple]) -> list[np.ndarray]:
    """Per (campaign, day) of the new events: campaign, day, cost, largest, impressions,
    clicks, conversions, later charges, charges (columns [G], sorted by campaign and day)."""
    if not new:
        empty = np.empty(0, dtype=np.int64)
        return [empty, empty] + [np.empty(0)] * 2 + [empty] * 5
    campaign, day, kind, cost = (np.array(c) for c in list(zip(*new, strict=True))[:4])
    keys, group = np.unique(np.stack([campaign, day], axis=1), axis=0, return_inverse=True)
    group = group.reshape(-1)
    n = len(keys)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=values, minlength=n)

    largest = np.full(n, -np.inf)
    np.maximum.at(largest, group, cost)
    charged = cost > 0
    return [
        keys[:, 0].astype(np.int64),
        keys[:, 1].astype(np.int64),
        total(cost),
        largest,
        *(
            total(m.astype(np.float64)).astype(np.int64)
            for m in (kind == 0, kind == 1, kind == 2, (kind > 0) & charged, charged)
        ),
    ]


def _impression_minutes(new: list[tuple]) -> list[list[int]]:
    counts: dict[tuple[int, int, int], int] = {}
    for campaign, day, kind, _, ts in new:
        if kind == 0:
            key = (int(day), math.floor(ts / 60), int(campaign))
            counts[key] = counts.get(key, 0) + 1
    keys = list(counts)
    return [[k[i] for k in keys] for i in range(3)] + [list(counts.values())]
