"""The safety gate's audit store in PostgreSQL (the tables of
:class:`~adrank.stores.safety_audit.SQLiteAuditStore`), shared by every serving replica.

Glossary: as :mod:`adrank.stores.safety_audit`. Outages: see :mod:`adrank.stores.postgres` (a
write fails at once with ``StateUnavailableError``, the HTTP API answers 503).
"""

from __future__ import annotations

from collections.abc import Sequence

from adrank.stores.postgres import DEFAULT_MAX_STALE_S, PostgresConnection
from adrank.stores.safety_audit import (
    COLUMNS,
    INSERT,
    AuditEntry,
    changed_blocks,
    check_page,
    entry_of_row,
    row_of,
    where,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS safety_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    creative_id bigint NOT NULL,
    region      text NOT NULL,
    rule        text NOT NULL,
    score       double precision,
    time        double precision NOT NULL,
    note        text NOT NULL,
    by_whom     text NOT NULL
);
CREATE INDEX IF NOT EXISTS safety_audit_region ON safety_audit (region, id);
CREATE INDEX IF NOT EXISTS safety_audit_creative ON safety_audit (creative_id, id);
CREATE TABLE IF NOT EXISTS safety_current (
    region      text NOT NULL,
    creative_id bigint NOT NULL,
    rule        text NOT NULL,
    PRIMARY KEY (region, creative_id, rule)
);
CREATE TABLE IF NOT EXISTS safety_overrides (
    region      text NOT NULL,
    creative_id bigint NOT NULL,
    allow       boolean NOT NULL,
    PRIMARY KEY (region, creative_id)
);
"""


class PostgresAuditStore:
    """The audit store in the PostgreSQL database ``url``; may share the other stores'."""

    def __init__(self, url: str, max_stale_s: float = DEFAULT_MAX_STALE_S) -> None:
        self.url = url
        self._db = PostgresConnection(url, SCHEMA, max_stale_s)

    def record_decisions(
        self, regions: Sequence[str], creative_ids: Sequence[int], blocks: Sequence[AuditEntry]
    ) -> int:
        regions = list(regions)
        if not regions:
            return 0
        with self._db.write() as db:
            current = db.execute(
                "SELECT region, creative_id, rule FROM safety_current WHERE region = ANY(%s)",
                (regions,),
            ).fetchall()
            new, gone = changed_blocks(map(tuple, current), creative_ids, blocks)
            with db.cursor() as cursor:
                if gone:
                    cursor.executemany(
                        "DELETE FROM safety_current "
                        "WHERE region = %s AND creative_id = %s AND rule = %s",
                        gone,
                    )
                if new:
                    cursor.executemany(
                        "INSERT INTO safety_current VALUES (%s, %s, %s)",
                        [(b.region, b.creative_id, b.rule) for b in new],
                    )
                    cursor.executemany(INSERT.format("%s"), [row_of(b) for b in new])
        return len(new)

    def record_override(self, entry: AuditEntry, allow: bool) -> AuditEntry:
        with self._db.write() as db:
            row = db.execute(
                INSERT.format("%s") + f" RETURNING {', '.join(COLUMNS)}", row_of(entry)
            ).fetchone()
            db.execute(
                "INSERT INTO safety_overrides VALUES (%s, %s, %s) "
                "ON CONFLICT (region, creative_id) DO UPDATE SET allow = excluded.allow",
                (entry.region, entry.creative_id, bool(allow)),
            )
        return entry_of_row(row)

    def overrides(self) -> dict[str, dict[int, bool]]:
        out: dict[str, dict[int, bool]] = {}
        for region, creative, allow in self._db.read(
            "SELECT region, creative_id, allow FROM safety_overrides"
        ):
            out.setdefault(region, {})[int(creative)] = bool(allow)
        return out

    def entries(
        self, region: str | None, creative_id: int | None, after: int, limit: int
    ) -> list[AuditEntry]:
        check_page(after, limit)
        terms, params = where(region, creative_id, "%s")
        rows = self._db.read(
            f"SELECT {', '.join(COLUMNS)} FROM safety_audit WHERE id > %s{terms} "
            "ORDER BY id LIMIT %s",
            [after, *params, limit],
        )
        return [entry_of_row(r) for r in rows]

    def latest(self, region: str | None, creative_id: int | None, limit: int) -> list[AuditEntry]:
        check_page(0, limit)
        terms, params = where(region, creative_id, "%s")
        rows = self._db.read(
            f"SELECT {', '.join(COLUMNS)} FROM safety_audit WHERE TRUE{terms} "
            "ORDER BY id DESC LIMIT %s",
            [*params, limit],
        )
        return [entry_of_row(r) for r in reversed(rows)]

    def last_id(self) -> int:
        ((last,),) = self._db.read("SELECT COALESCE(MAX(id), 0) FROM safety_audit")
        return int(last)

    def version(self) -> int:
        return self._db.version()

    def close(self) -> None:
        self._db.close()


__all__ = ["PostgresAuditStore"]
