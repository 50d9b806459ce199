"""One PostgreSQL connection per store, its change counter, and what a database outage does.

Glossary: the *state URL* is a libpq URL (``postgresql://user@host:port/db``); the *change
counter* is the one row of ``adrank_changes``, bumped by every write transaction of every
store and process; an *outage* is the time since the database last answered.

Every write runs in one transaction that first bumps the change counter (``UPDATE ... RETURNING``):
that row lock orders the writers of all processes, so a batch of spend events is checked against
the stored ids and stored whole with no other writer in between (exactly once by event id),
and a reader learns with one indexed read whether anything changed.

When the database goes away, writes fail at once with :class:`StateUnavailableError` (the HTTP
API answers 503 ``state_unavailable``, so clients retry, and a retried batch counts once by its
event ids: nothing acknowledged is lost, nothing is counted twice). Reads of the change counter
go on answering with the last value seen for ``max_stale_s`` seconds of outage, so serving keeps
the last known budgets, pacing and kill switches that long, then fail too (``max_stale_s=0``:
stop serving at once). Each call after a failure tries to reconnect (at most every
``RECONNECT_S``), and the first one that succeeds ends the outage. A connection that a database
restart cut while it was idle is replaced at once: a read, or a write that had not begun, is
tried once more on a new connection.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

DEFAULT_MAX_STALE_S = 30.0  # serve with the last known state at most this long in an outage
CONNECT_TIMEOUT_S = 2
RECONNECT_S = 0.2  # at most one connection attempt per this interval in an outage

COUNTER = """
CREATE TABLE IF NOT EXISTS adrank_changes (
    id integer PRIMARY KEY CHECK (id = 1),
    n  bigint  NOT NULL
);
INSERT INTO adrank_changes VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
"""


BUMP = "UPDATE adrank_changes SET n = n + 1 RETURNING n"


class StateUnavailableError(RuntimeError):
    """The control-state database cannot be reached (the HTTP API answers 503)."""


def is_postgres_url(state: object) -> bool:
    return isinstance(state, str) and state.startswith(("postgresql://", "postgres://"))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as error:  # pragma: no cover - the serve extra installs it
        raise ImportError(
            "a postgresql:// state needs psycopg: pip install 'adrank[serve]'"
        ) from error
    return psycopg


class PostgresConnection:
    """A store's connection: serialized calls, transactions, the change counter, reconnects.

    ``schema``: SQL run once per connection (idempotent ``CREATE ... IF NOT EXISTS``).
    """

    def __init__(self, url: str, schema: str, max_stale_s: float = DEFAULT_MAX_STALE_S) -> None:
        if not is_postgres_url(url):
            raise ValueError(f"url must be a postgresql:// URL, got {url!r}")
        if isinstance(max_stale_s, bool) or not isinstance(max_stale_s, (int, float)):
            raise ValueError(f"max_stale_s must be a number, got {max_stale_s!r}")
        if not (math.isfinite(max_stale_s) and max_stale_s >= 0):
            raise ValueError(f"max_stale_s must be a finite number >= 0, got {max_stale_s}")
        self.url = url
        self.max_stale_s = float(max_stale_s)
        self._schema = schema
        self._psycopg = _psycopg()
        self._lock = threading.RLock()
        self._db: Any = None
        self._last_contact = time.monotonic()
        self._next_attempt = -math.inf
        self._seen = 0  # the counter's value when this handle last read or wrote it
        self._version = 0  # what version() reports: moves when others wrote
        with self._lock:
            self._connect()
            self._seen = self._read_counter()

    # -- connection --------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._db is not None and not self._db.closed:
            return self._db
        now = time.monotonic()
        if now < self._next_attempt:
            raise StateUnavailableError(f"the state database is unreachable ({self._where})")
        self._next_attempt = now + RECONNECT_S
        db = None
        try:
            db = self._psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
            with db.transaction():
                # one creator at a time: CREATE ... IF NOT EXISTS races between processes
                db.execute("SELECT pg_advisory_xact_lock(726716)")
                db.execute(COUNTER)
                db.execute(self._schema)
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError) as error:
            if db is not None:
                db.close()
            raise StateUnavailableError(
                f"the state database is unreachable ({self._where}): {_first_line(error)}"
            ) from error
        self._db = db
        self._last_contact = time.monotonic()
        return db

    @property
    def _where(self) -> str:
        # the URL without its password
        head, _, tail = self.url.rpartition("@")
        return tail if head else self.url

    @contextlib.contextmanager
    def _calling(self) -> Iterator[Any]:
        """The connection, with a lost connection turned into StateUnavailableError."""
        db = self._connect()
        try:
            yield db
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError) as error:
            with contextlib.suppress(Exception):
                db.close()
            self._db = None
            raise StateUnavailableError(
                f"the state database stopped answering ({self._where}): {_first_line(error)}"
            ) from error
        self._last_contact = time.monotonic()

    def read(self, query: str, params: Any = None) -> list[tuple]:
        with self._lock:
            return self._retried(lambda db: db.execute(query, params).fetchall())

    def _retried(self, call: Any) -> Any:
        """``call(connection)``, once more on a new connection if the one it found had been
        cut while idle (a database restart): a read is safe to repeat."""
        for attempt in range(2):
            reused = self._db is not None and not self._db.closed
            try:
                with self._calling() as db:
                    return call(db)
            except StateUnavailableError:
                if attempt or not reused:
                    raise
                self._next_attempt = -math.inf  # reconnect now
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def write(self) -> Iterator[Any]:
        """A write transaction that holds the change counter's row lock from its start."""
        with self._lock:
            for attempt in range(2):
                reused, begun = self._db is not None and not self._db.closed, False
                try:
                    with self._calling() as db, db.transaction():
                        (n,) = db.execute(BUMP).fetchone()
                        begun = True
                        yield db
                    break
                except StateUnavailableError:
                    # cut before anything was written (a connection idle through a database
                    # restart): once more on a new one; once begun, the caller retries
                    if begun or attempt or not reused:
                        raise
                    self._next_attempt = -math.inf
        if self._seen == n - 1:
            self._seen = n  # only this handle wrote since it last looked: not a change to it

    # -- the change counter -------------------------------------------------------------------

    def _read_counter(self) -> int:
        read = "SELECT n FROM adrank_changes WHERE id = 1"
        return int(self._retried(lambda db: db.execute(read).fetchone()[0]))

    def version(self) -> int:
        """Moves if and only if another handle wrote since this one last looked. In an outage
        of at most ``max_stale_s`` the last value (serve what is known), then the error."""
        with self._lock:
            try:
                n = self._read_counter()
            except StateUnavailableError:
                if time.monotonic() - self._last_contact <= self.max_stale_s:
                    return self._version
                raise
            if n != self._seen:
                self._seen = n
                self._version += 1
            return self._version

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
