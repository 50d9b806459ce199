"""Keeping an embedded Triton up: notice its exit, clean up after it, start it again.

Glossary:

- *death*: the ``tritonserver`` process ended while it should be serving (a crash, the OOM
  killer, ``kill -9``), noticed within :data:`POLL_S` seconds;
- *try*: one attempt to start it again after a death; tries are counted in a sliding
  ``window_s`` and spaced by a backoff that doubles after each failed try;
- *given up*: ``max_restarts`` tries within the window were used and the server is still down;
  :meth:`TritonSupervisor.liveness` then says so, so that ``/healthz`` fails and an
  orchestrator's liveness probe restarts the whole process.

:class:`TritonSupervisor` wraps an :class:`~adrank.triton.server.EmbeddedTriton`. Its thread
reaps the dead server (no zombie), kills its Python-backend stubs and unlinks their ``/dev/shm``
regions (:meth:`EmbeddedTriton.clean_up`), then restarts it on the same ports, so that clients
of ``grpc_url`` reconnect without being told. Every event is logged on ``adrank.triton``.
"""

from __future__ import annotations

import collections
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from adrank.triton.server import EmbeddedTriton, TritonError, log_excerpt

log = logging.getLogger("adrank.triton")

POLL_S = 0.1  # how often the supervisor looks at the server process
State = Literal["stopped", "serving", "restarting", "given_up"]


@dataclass(frozen=True)
class RestartPolicy:
    """How a dead server is brought back.

    max_restarts   tries allowed within ``window_s`` seconds; 0 never restarts
    window_s       the sliding window the tries are counted in
    backoff_s      wait before the first try after a death; doubles after each failed try
    max_backoff_s  the longest wait between tries
    """

    max_restarts: int = 5
    window_s: float = 300.0
    backoff_s: float = 0.25
    max_backoff_s: float = 10.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_restarts, bool)
            or not isinstance(self.max_restarts, int)
            or self.max_restarts < 0
        ):
            raise ValueError(f"max_restarts must be an int >= 0, got {self.max_restarts!r}")
        if not self.window_s > 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s!r}")
        if not self.backoff_s >= 0:
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s!r}")
        if not self.max_backoff_s >= self.backoff_s:
            raise ValueError(
                f"max_backoff_s must be >= backoff_s ({self.backoff_s!r}), "
                f"got {self.max_backoff_s!r}"
            )


@dataclass(frozen=True)
class Recovery:
    """One death and what followed: ``back_at`` is None if the server did not come back."""

    died_at: float  # time.monotonic() when the death was noticed
    exit_status: int | None
    tries: int
    back_at: float | None

    @property
    def downtime_s(self) -> float | None:
        return None if self.back_at is None else self.back_at - self.died_at


def describe_exit(status: int | None) -> str:
    if status is None:
        return "ended"
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


class TritonSupervisor:
    """Runs ``server`` and restarts it whenever it dies, by ``policy``; a context manager.

    ``on_restart(server)`` runs after each successful restart, before the supervisor reports
    the server as serving again (``serving_stack`` warms the model up there); an exception it
    raises is logged and the server keeps serving.

    Examples
    --------
    >>> with TritonSupervisor(EmbeddedTriton("triton_models")) as supervisor:  # doctest: +SKIP
    ...     client = RankerClient(supervisor.server.grpc_url)
    """

    def __init__(
        self,
        server: EmbeddedTriton,
        policy: RestartPolicy | None = None,
        *,
        on_restart: Callable[[EmbeddedTriton], None] | None = None,
    ) -> None:
        if not isinstance(server, EmbeddedTriton):
            raise TypeError(f"server must be an EmbeddedTriton, got {type(server).__name__}")
        if policy is not None and not isinstance(policy, RestartPolicy):
            raise TypeError(f"policy must be a RestartPolicy, got {type(policy).__name__}")
        self.server = server
        self.policy = policy or RestartPolicy()
        self.on_restart = on_restart
        self._lock = threading.Lock()
        self._state: State = "stopped"
        self._reason = "not started"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._tries: collections.deque[float] = collections.deque()
        self.recoveries: list[Recovery] = []

    # -- state -----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    def alive(self) -> bool:
        """False once the supervisor has given up on the server (or before it started)."""
        return self._state in ("serving", "restarting")

    def liveness(self) -> tuple[bool, str]:
        """``(alive, why)``: what ``/healthz`` answers. Restarting is still alive."""
        with self._lock:
            return self.alive(), self._reason

    def _set(self, state: State, reason: str) -> None:
        with self._lock:
            self._state, self._reason = state, reason

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> TritonSupervisor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> TritonSupervisor:
        """Start the server (if it is not running) and watch it; returns ``self``."""
        if self._thread is not None:
            raise TritonError("the supervisor is already running")
        if not self.server.is_running():
            self.server.start()
        self._stopping.clear()
        self._set("serving", self._serving_reason())
        self._thread = threading.Thread(
            target=self._watch, name="adrank-triton-supervisor", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, then stop the server. Safe to call twice."""
        self._stopping.set()
        self.server.cancel_start()  # a restart under way gives up within 0.1 s
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self.server.startup_timeout_s)
        self.server.stop()
        self._set("stopped", "stopped")

    def _serving_reason(self) -> str:
        return f"tritonserver (pid {self.server.pid}) serving on {self.server.grpc_url}"

    # -- the watch -------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stopping.wait(POLL_S):
            if self.server.is_running():  # also reaps a server that has just exited
                continue
            if self._stopping.is_set() or self.server.stop_requested:
                return  # stopped on purpose (stop(), or at interpreter exit), not a death
            try:
                if not self._recover():
                    return
            except Exception as error:  # a bug here must not leave /healthz saying "alive"
                log.exception("the Triton supervisor failed")
                self._set("given_up", f"the Triton supervisor failed: {error!r}")
                return

    def _recover(self) -> bool:
        """Bring the server back after a death; False when the supervisor gives up or stops."""
        died_at = time.monotonic()
        status, pid = self.server.exit_status(), self.server.pid
        death = f"tritonserver (pid {pid}) {describe_exit(status)}"
        excerpt = log_excerpt(self.server.run_log_text(), max_lines=5, errors_only=True)
        log.warning("%s; log: %s%s", death, self.server.log_path, excerpt and "\n" + excerpt)
        self._set("restarting", f"{death}; restarting")
        cleanup = self.server.clean_up()
        log.info(
            "reaped tritonserver pid %s; killed %d Python-backend stub(s) %s; "
            "unlinked %d shared-memory region(s) %s",
            cleanup.pid,
            len(cleanup.stubs),
            list(cleanup.stubs),
            len(cleanup.shm_regions),
            list(cleanup.shm_regions),
        )
        policy, tries, backoff = self.policy, 0, self.policy.backoff_s
        last_error = ""
        while not self._stopping.is_set():
            now = time.monotonic()
            while self._tries and self._tries[0] < now - policy.window_s:
                self._tries.popleft()
            if len(self._tries) >= policy.max_restarts:
                reason = (
                    f"{death} and could not be brought back: {len(self._tries)} of "
                    f"{policy.max_restarts} restarts allowed in {policy.window_s:g} s used"
                    + (f"; last error: {last_error}" if last_error else "")
                )
                log.error("giving up on tritonserver: %s", reason)
                self._set("given_up", reason)
                self.recoveries.append(Recovery(died_at, status, tries, None))
                return False
            if self._stopping.wait(backoff):
                return False
            self._tries.append(time.monotonic())
            tries += 1
            attempt = f"try {len(self._tries)} of {policy.max_restarts} in {policy.window_s:g} s"
            log.info(
                "restarting tritonserver on grpc %s, http %s (%s)",
                self.server.grpc_url,
                self.server.http_url,
                attempt,
            )
            self._set("restarting", f"{death}; restarting ({attempt})")
            try:
                self.server.restart()
            except Exception as error:  # TritonStartError mostly; any failure is a failed try
                if self._stopping.is_set():
                    return False
                last_error = str(error).splitlines()[0]
                log.error("restarting tritonserver failed (%s): %s", attempt, error)
                backoff = min(max(backoff * 2, POLL_S), policy.max_backoff_s)
                continue
            self._after_restart()
            back_at = time.monotonic()
            self.recoveries.append(Recovery(died_at, status, tries, back_at))
            log.warning(
                "tritonserver back (pid %s), %.2f s after pid %s ended",
                self.server.pid,
                back_at - died_at,
                pid,
            )
            self._set("serving", self._serving_reason())
            return True
        return False

    def _after_restart(self) -> None:
        if self.on_restart is None:
            return
        try:
            self.on_restart(self.server)
        except Exception as error:  # the server is up; a failed warm-up is not a failed restart
            log.warning("after restarting tritonserver: %s", error)
