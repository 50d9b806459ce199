"""The SQLite files adrank keeps its run-time state in (pacing, traffic control).

One file may hold several stores' tables. Connections run in autocommit mode and shared
between threads (each store serializes its calls with a lock); writes open their transaction
explicitly with :func:`transaction`. Files are durable: WAL journal, ``synchronous=FULL``.

Several processes may open one file: :func:`data_version` tells a connection cheaply (no table
read) whether another connection has committed since it last asked, so a process that caches
what it read reloads only when something changed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

MEMORY = ":memory:"


def open_database(path: str | Path) -> sqlite3.Connection:
    """Opens (creating its folder) the SQLite file ``path``, or ``":memory:"``."""
    path = str(path)
    if path != MEMORY:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    if path != MEMORY:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` if the block raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def data_version(db: sqlite3.Connection) -> int:
    """SQLite's ``PRAGMA data_version``: differs from the value this connection read before
    if and only if another connection (of this or another process) committed in between."""
    (version,) = db.execute("PRAGMA data_version").fetchone()
    return int(version)
