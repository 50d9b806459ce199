"""Where the control state lives: one SQLite file (one host) or a PostgreSQL database (many).

Glossary: a *state location* is a SQLite path (or ``":memory:"``) or a ``postgresql://`` URL;
:func:`open_control_stores` opens the :class:`~adrank.pacing.store.PacingStore` and
:class:`~adrank.traffic.TrafficStore` it names.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from adrank.stores.postgres import DEFAULT_MAX_STALE_S, StateUnavailableError, is_postgres_url

MAX_STALE_ENV = "ADRANK_STATE_MAX_STALE_S"  # seconds to serve the last known state in an outage


def state_location(text: str) -> str | Path:
    """A ``--state`` value: a ``postgresql://`` URL as it is, anything else a file path."""
    return text if is_postgres_url(text) else Path(text)


def max_stale_s(environ: dict | None = None) -> float:
    """``$ADRANK_STATE_MAX_STALE_S``: how long a replica serves the last known state while
    PostgreSQL is unreachable (0: stop serving at once); 30 s when unset."""
    text = (os.environ if environ is None else environ).get(MAX_STALE_ENV)
    if text is None:
        return DEFAULT_MAX_STALE_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{MAX_STALE_ENV} must be a number of seconds >= 0, got {text!r}")
    return value


def open_control_stores(state: str | Path) -> tuple:
    """``(pacing store, traffic store)`` over ``state`` (see the glossary)."""
    if is_postgres_url(state):
        from adrank.pacing.postgres_store import PostgresPacingStore
        from adrank.traffic_postgres import PostgresTrafficStore

        stale = max_stale_s()
        return PostgresPacingStore(str(state), stale), PostgresTrafficStore(str(state), stale)
    from adrank.pacing.sqlite_store import SQLitePacingStore
    from adrank.traffic import SQLiteTrafficStore

    return SQLitePacingStore(state), SQLiteTrafficStore(state)


__all__ = ["StateUnavailableError", "max_stale_s", "open_control_stores", "state_location"]
