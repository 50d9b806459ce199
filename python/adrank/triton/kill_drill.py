"""A kill drill: the model server dies under HTTP load; count the answers, time the recovery.

Glossary:

- *client*: a thread sending ``POST /v1/rank`` in a closed loop over one keep-alive connection;
- *failure*: an answer other than a 200 that was scored by the model (a 503, a degraded 200,
  any other status, or no answer at all, recorded as status 0);
- *recovery time*: from the kill until the first good answer completed after the last failure,
  i.e. how long the service took to answer 200 again and keep doing so.

Used by the supervision tests and by ``bench/triton_kill_recovery.py`` (several kills, p50).
"""

from __future__ import annotations

import collections
import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    sent: float  # time.monotonic()
    done: float
    status: int  # 0: no HTTP answer (connection refused or reset, timeout)
    degraded: bool = False
    error: str = ""  # the error body's "error" and "detail", for a non-200

    @property
    def good(self) -> bool:
        return self.status == 200 and not self.degraded


@dataclass
class DrillResult:
    killed_at: float
    answers: list[Answer] = field(default_factory=list)
    recovered_at: float | None = None

    @property
    def recovery_s(self) -> float | None:
        """Seconds from the kill to the first good answer after the last failure (None: the
        service did not recover before the drill's timeout)."""
        return None if self.recovered_at is None else self.recovered_at - self.killed_at

    @property
    def statuses(self) -> collections.Counter[int]:
        return collections.Counter(a.status for a in self.answers)

    @property
    def degraded(self) -> int:
        return sum(a.degraded for a in self.answers)

    def failures(self) -> list[Answer]:
        return [a for a in self.answers if not a.good]


def _post(connection: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, Any]:
    connection.request("POST", path, body, {"content-type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"null")


def _client(
    base_url: str, body: bytes, stop: threading.Event, answers: list[Answer], timeout_s: float
) -> None:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status, payload = _post(connection, "/v1/rank", body)
            except (OSError, http.client.HTTPException, ValueError) as error:
                connection.close()  # reconnects on the next request
                answers.append(Answer(sent, time.monotonic(), 0, error=repr(error)))
                time.sleep(0.05)
                continue
            done = time.monotonic()
            if status == 200:
                answers.append(Answer(sent, done, 200, bool(payload.get("degraded"))))
            else:
                kind = payload.get("error", "") if isinstance(payload, dict) else ""
                detail = payload.get("detail", "") if isinstance(payload, dict) else ""
                answers.append(Answer(sent, done, status, error=f"{kind}: {detail}"))
    finally:
        connection.close()


def _recovered_at(answers: list[Answer], killed_at: float, settle: int) -> float | None:
    """When the service answered well again: the first good answer after the last failure,
    once at least ``settle`` good answers, all sent after that failure, followed it."""
    after = sorted((a for a in answers if a.done > killed_at), key=lambda a: a.done)
    last_failure = max((i for i, a in enumerate(after) if not a.good), default=None)
    if last_failure is None:
        return None  # the death has not shown yet
    tail = after[last_failure + 1 :]
    steady = [a for a in tail if a.sent > after[last_failure].done]
    if len(steady) < settle:
        return None
    return tail[0].done


def kill_under_load(
    base_url: str,
    payload: dict[str, Any],
    kill: Callable[[], None],
    *,
    clients: int = 3,
    warm_s: float = 1.0,
    timeout_s: float = 30.0,
    settle: int = 10,
    request_timeout_s: float = 10.0,
) -> DrillResult:
    """Load ``base_url`` with ``clients`` threads posting ``payload``, call ``kill()`` after
    ``warm_s``, and keep the load until the service has recovered (``settle`` good answers in
    a row after the last failure) or ``timeout_s`` has passed since the kill."""
    if clients < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    body = json.dumps(payload).encode()
    stop = threading.Event()
    answers: list[Answer] = []  # list.append is atomic: the threads share it
    threads = [
        threading.Thread(
            target=_client,
            args=(base_url, body, stop, answers, request_timeout_s),
            name=f"kill-drill-{i}",
            daemon=True,
        )
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(warm_s)
        result = DrillResult(killed_at=time.monotonic())
        kill()
        while time.monotonic() < result.killed_at + timeout_s:
            result.recovered_at = _recovered_at(list(answers), result.killed_at, settle)
            if result.recovered_at is not None:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=request_timeout_s + 5)
    result.answers = list(answers)
    return result
