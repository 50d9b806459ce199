"""A :class:`~adrank.traffic.TrafficStore` in PostgreSQL: kill switches and ad-load caps shared
by every serving replica (the tables of :class:`~adrank.traffic.SQLiteTrafficStore`).

Glossary: *scope* is ``advertiser`` or ``campaign`` (kill switches); a cap's region or placement
is stored as ``''`` where it applies to every one. Outages: see :mod:`adrank.stores.postgres`.
"""

from __future__ import annotations

from adrank.stores.postgres import DEFAULT_MAX_STALE_S, PostgresConnection
from adrank.traffic import ANY, AdLoadCap, state_of_rows

SCHEMA = """
CREATE TABLE IF NOT EXISTS kill_switches (
    scope     text   NOT NULL,
    entity_id bigint NOT NULL,
    reason    text   NOT NULL,
    PRIMARY KEY (scope, entity_id)
);
CREATE TABLE IF NOT EXISTS ad_load_caps (
    region       text NOT NULL,
    placement    text NOT NULL,
    max_ad_share double precision NOT NULL,
    PRIMARY KEY (region, placement)
);
"""


class PostgresTrafficStore:
    """Traffic control in the PostgreSQL database ``url``; may share the pacing store's."""

    def __init__(self, url: str, max_stale_s: float = DEFAULT_MAX_STALE_S) -> None:
        self.url = url
        self._db = PostgresConnection(url, SCHEMA, max_stale_s)

    def version(self) -> int:
        return self._db.version()

    def load(self) -> tuple[dict[int, str], dict[int, str], list[AdLoadCap]]:
        kills = self._db.read("SELECT scope, entity_id, reason FROM kill_switches")
        caps = self._db.read("SELECT region, placement, max_ad_share FROM ad_load_caps")
        return state_of_rows(kills, caps)

    def set_kill(self, scope: str, entity_id: int, reason: str | None) -> None:
        with self._db.write() as db:
            if reason is None:
                db.execute(
                    "DELETE FROM kill_switches WHERE scope = %s AND entity_id = %s",
                    (scope, entity_id),
                )
            else:
                db.execute(
                    "INSERT INTO kill_switches VALUES (%s, %s, %s) ON CONFLICT (scope, entity_id)"
                    " DO UPDATE SET reason = excluded.reason",
                    (scope, entity_id, reason),
                )

    def set_cap(self, region: str | None, placement: str | None, share: float | None) -> None:
        key = (region or ANY, placement or ANY)
        with self._db.write() as db:
            if share is None:
                db.execute("DELETE FROM ad_load_caps WHERE region = %s AND placement = %s", key)
            else:
                db.execute(
                    "INSERT INTO ad_load_caps VALUES (%s, %s, %s) ON CONFLICT (region, placement)"
                    " DO UPDATE SET max_ad_share = excluded.max_ad_share",
                    (*key, share),
                )

    def close(self) -> None:
        self._db.close()


__all__ = ["PostgresTrafficStore"]
