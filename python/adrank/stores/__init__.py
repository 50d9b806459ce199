"""Where the control state lives: one SQLite file (one host) or a PostgreSQL database (many).

Glossary: a *state location* is a SQLite path (or ``":memory:"``) or a ``postgresql://`` URL;
:func:`open_control_stores` opens the :class:`~adrank.pacing.store.PacingStore` and
:class:`~adrank.traffic.TrafficStore` it names.
"""

from __future__ import annotations

from pathlib import Path

from adrank.stores.postgres import StateUnavailableError, is_postgres_url


def state_location(text: str) -> str | Path:
    """A ``--state`` value: a ``postgresql://`` URL as it is, anything else a file path."""
    return text if is_postgres_url(text) else Path(text)


def open_control_stores(state: str | Path) -> tuple:
    """``(pacing store, traffic store)`` over ``state`` (see the glossary)."""
    if is_postgres_url(state):
        from adrank.pacing.postgres_store import PostgresPacingStore
        from adrank.traffic_postgres import PostgresTrafficStore

        return PostgresPacingStore(str(state)), PostgresTrafficStore(str(state))
    from adrank.pacing.sqlite_store import SQLitePacingStore
    from adrank.traffic import SQLiteTrafficStore

    return SQLitePacingStore(state), SQLiteTrafficStore(state)


__all__ = ["StateUnavailableError", "open_control_stores", "state_location"]
