"""Stopping a long-running command (``adrank serve``, ``adrank triton``) in order.

Inside ``with StopSignals() as stop:``, SIGINT (Ctrl-C) and SIGTERM (a service manager,
``kill``) set a flag instead of ending the process, so the command leaves its ``with`` blocks
and stops what it started (servers, Triton, shared memory) itself. The previous handlers come
back on exit. Signals reach the main thread only: enter it there.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import TracebackType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """``signals``: the ones that stop (default SIGINT and SIGTERM); others keep their handler."""

    def __init__(self, *signals: signal.Signals) -> None:
        self._signals = signals or SIGNALS
        self._stop = threading.Event()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        for signum in self._signals:
            self._previous[signum] = signal.signal(signum, lambda *_: self._stop.set())
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def wait(self, alive: Callable[[], bool], poll_s: float = 0.5) -> bool:
        """Blocks until a stop signal (True) or until ``alive()`` turns False (False)."""
        while not self._stop.wait(poll_s):
            if not alive():
                return False
        return True
