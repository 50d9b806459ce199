"""Where the safety gate's audit log and overrides live: SQLite (a file, or in memory) or
PostgreSQL (:mod:`adrank.stores.safety_audit_postgres`), both surviving a restart.

Glossary: an *entry* is one line of the audit log (:class:`AuditEntry`: a block or an
override), numbered by its ``id`` in the order it was written (the paging cursor); the *current
blocks* are, per (region, creative), the rules that block it in the latest snapshot decided;
an *override* is a person's allow or deny of one (creative, region), with who, when and why in
its entry.

Blocks are logged when they appear, not on every decision: a snapshot decided again (a restart,
a catalog swapped in with the creative unchanged) logs only the (creative, region, rule) that
were not already current for that creative, and forgets the ones that no longer apply, so a
block that comes back is logged again. Every override is logged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from adrank.sqlite_files import data_version, open_database, transaction

MAX_PAGE = 1000  # entries per page at most


@dataclass(frozen=True)
class AuditEntry:
    creative_id: int
    region: str
    rule: str  # keyword:<word> | category:<id> | advertiser:<id> | age_gate:<bucket> |
    # classifier | override:allow | override:deny
    score: float | None  # the classifier's probability; 1.0 for a rule; None for an override
    time: float  # unix seconds
    note: str = ""  # an override's reason
    by: str = ""  # who made an override
    id: int = 0  # its place in the log (1, 2, ...); 0 before it is stored


# the columns an entry is stored and read as, in this order
COLUMNS = ("id", "creative_id", "region", "rule", "score", "time", "note", "by_whom")


def entry_of_row(row: Sequence) -> AuditEntry:
    id_, creative, region, rule, score, time, note, by = row
    return AuditEntry(
        int(creative), region, rule, None if score is None else float(score), float(time),
        note, by, int(id_),
    )  # fmt: skip


def changed_blocks(
    current: Iterable[tuple[str, int, str]],
    creative_ids: Iterable[int],
    blocks: Sequence[AuditEntry],
) -> tuple[list[AuditEntry], list[tuple[str, int, str]]]:
    """What a decided snapshot changes: ``(entries to log, current blocks to forget)``, given
    the stored current blocks of its regions as ``(region, creative_id, rule)``, the snapshot's
    creative ids, and its blocks."""
    decided = {(b.region, b.creative_id, b.rule) for b in blocks}
    snapshot = set(creative_ids)
    stored = {row for row in current if row[1] in snapshot}
    new = [b for b in blocks if (b.region, b.creative_id, b.rule) not in stored]
    return new, sorted(stored - decided)


def check_page(after: int, limit: int) -> None:
    for name, value in (("after", after), ("limit", limit)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if after < 0:
        raise ValueError(f"after must be >= 0, got {after}")
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be in [1, {MAX_PAGE}], got {limit}")


def where(region: str | None, creative_id: int | None, mark: str) -> tuple[str, list]:
    """The filter of a listing (``mark``: the driver's placeholder) and its parameters."""
    terms: list[str] = []
    params: list = []
    if region is not None:
        terms.append(f"region = {mark}")
        params.append(region)
    if creative_id is not None:
        terms.append(f"creative_id = {mark}")
        params.append(creative_id)
    return "".join(f" AND {t}" for t in terms), params


class AuditStore(Protocol):
    """The audit log, the current blocks and the overrides (see the module docstring)."""

    def record_decisions(
        self, regions: Sequence[str], creative_ids: Sequence[int], blocks: Sequence[AuditEntry]
    ) -> int:
        """Stores a snapshot's blocks in ``regions`` over its ``creative_ids``; logs those not
        already current; returns how many it logged."""
        ...

    def record_override(self, entry: AuditEntry, allow: bool) -> AuditEntry:
        """Logs ``entry`` and sets the override of its (region, creative); the entry stored."""
        ...

    def overrides(self) -> dict[str, dict[int, bool]]:
        """region -> creative id -> allow (False: deny)."""
        ...

    def entries(
        self, region: str | None, creative_id: int | None, after: int, limit: int
    ) -> list[AuditEntry]:
        """Up to ``limit`` entries with ``id > after``, oldest first, filtered if asked."""
        ...

    def latest(self, region: str | None, creative_id: int | None, limit: int) -> list[AuditEntry]:
        """The newest ``limit`` entries (filtered if asked), oldest first."""
        ...

    def last_id(self) -> int:
        """The id of the newest entry (0: none)."""
        ...

    def version(self) -> int:
        """Moves when another handle (another process) wrote."""
        ...

    def close(self) -> None: ...


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS safety_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, creative_id INTEGER NOT NULL, region TEXT NOT NULL,
    rule TEXT NOT NULL, score REAL, time REAL NOT NULL, note TEXT NOT NULL,
    by_whom TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS safety_audit_region ON safety_audit (region, id);
CREATE INDEX IF NOT EXISTS safety_audit_creative ON safety_audit (creative_id, id);
CREATE TABLE IF NOT EXISTS safety_current (
    region TEXT NOT NULL, creative_id INTEGER NOT NULL, rule TEXT NOT NULL,
    PRIMARY KEY (region, creative_id, rule)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS safety_overrides (
    region TEXT NOT NULL, creative_id INTEGER NOT NULL, allow INTEGER NOT NULL,
    PRIMARY KEY (region, creative_id)) WITHOUT ROWID;
"""
INSERT = (
    "INSERT INTO safety_audit (creative_id, region, rule, score, time, note, by_whom) "
    "VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0})"
)


def row_of(entry: AuditEntry) -> tuple:
    return (
        entry.creative_id, entry.region, entry.rule, entry.score, entry.time, entry.note,
        entry.by,
    )  # fmt: skip


class SQLiteAuditStore:
    """The audit store in the SQLite file ``path`` (may share the pacing and traffic stores'
    file: its own tables), or ``":memory:"`` (gone with the process)."""

    def __init__(self, path: str | Path) -> None:
        self._db = open_database(path)
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(SQLITE_SCHEMA)

    def record_decisions(
        self, regions: Sequence[str], creative_ids: Sequence[int], blocks: Sequence[AuditEntry]
    ) -> int:
        regions = list(regions)
        if not regions:
            return 0
        marks = ", ".join("?" * len(regions))
        with self._lock, transaction(self._db) as db:
            current = db.execute(
                f"SELECT region, creative_id, rule FROM safety_current WHERE region IN ({marks})",
                regions,
            ).fetchall()
            new, gone = changed_blocks(map(tuple, current), creative_ids, blocks)
            db.executemany(
                "DELETE FROM safety_current WHERE region = ? AND creative_id = ? AND rule = ?",
                gone,
            )
            db.executemany(
                "INSERT INTO safety_current VALUES (?, ?, ?)",
                [(b.region, b.creative_id, b.rule) for b in new],
            )
            db.executemany(INSERT.format("?"), [row_of(b) for b in new])
        return len(new)

    def record_override(self, entry: AuditEntry, allow: bool) -> AuditEntry:
        with self._lock, transaction(self._db) as db:
            cursor = db.execute(INSERT.format("?"), row_of(entry))
            db.execute(
                "INSERT OR REPLACE INTO safety_overrides VALUES (?, ?, ?)",
                (entry.region, entry.creative_id, int(allow)),
            )
            (row,) = db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM safety_audit WHERE id = ?", (cursor.lastrowid,)
            ).fetchall()
        return entry_of_row(row)

    def overrides(self) -> dict[str, dict[int, bool]]:
        with self._lock:
            rows = self._db.execute("SELECT region, creative_id, allow FROM safety_overrides")
            rows = rows.fetchall()
        out: dict[str, dict[int, bool]] = {}
        for region, creative, allow in rows:
            out.setdefault(region, {})[int(creative)] = bool(allow)
        return out

    def entries(
        self, region: str | None, creative_id: int | None, after: int, limit: int
    ) -> list[AuditEntry]:
        check_page(after, limit)
        terms, params = where(region, creative_id, "?")
        query = (
            f"SELECT {', '.join(COLUMNS)} FROM safety_audit WHERE id > ?{terms} ORDER BY id LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(query, [after, *params, limit]).fetchall()
        return [entry_of_row(r) for r in rows]

    def latest(self, region: str | None, creative_id: int | None, limit: int) -> list[AuditEntry]:
        check_page(0, limit)
        terms, params = where(region, creative_id, "?")
        query = (
            f"SELECT {', '.join(COLUMNS)} FROM safety_audit WHERE 1 = 1{terms} "
            "ORDER BY id DESC LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(query, [*params, limit]).fetchall()
        return [entry_of_row(r) for r in reversed(rows)]

    def last_id(self) -> int:
        with self._lock:
            (last,) = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM safety_audit").fetchone()
        return int(last)

    def version(self) -> int:
        with self._lock:
            return data_version(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_audit_store(state: str | Path) -> AuditStore:
    """The audit store of a ``--state`` location: a ``postgresql://`` URL or a SQLite path (or
    ``":memory:"``), beside the pacing and traffic stores of the same location."""
    from adrank.stores.postgres import is_postgres_url

    if is_postgres_url(state):
        from adrank.stores import max_stale_s
        from adrank.stores.safety_audit_postgres import PostgresAuditStore

        return PostgresAuditStore(str(state), max_stale_s())
    return SQLiteAuditStore(state)
