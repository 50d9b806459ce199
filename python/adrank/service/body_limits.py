"""Bounded request bodies: :class:`BoundedBody`, ASGI middleware in front of every endpoint.

Glossary: a *body* arrives as one or more ``http.request`` messages (several for a chunked or a
slow upload); the *read deadline* is ``ServiceLimits.read_timeout_s`` after the request began.

The whole body is read here, before any endpoint runs, and handed on in one message:

* more than ``max_body_bytes``, declared in Content-Length or counted as it streams in: 413;
* not complete by the read deadline (a client that declares 100 bytes and sends 5, or trickles
  a chunked body): 408, and the connection is closed;

so an endpoint never waits on a client, and the parser never sees a truncated body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from adrank.service.limits import ServiceLimits

Reject = Callable[[dict, Any, Any, int, str, str], Awaitable[None]]


class BoundedBody:
    """``reject(scope, receive, send, status, kind, detail)`` sends the error answer."""

    def __init__(self, app: Any, limits: ServiceLimits, reject: Reject) -> None:
        self.app = app
        self.limits = limits
        self.reject = reject

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.max_body_bytes
        declared = [v for k, v in scope.get("headers") or [] if k == b"content-length"]
        if declared and declared[0].strip().isdigit() and int(declared[0]) > limit:
            await self.reject(
                scope, receive, send, 413, "body_too_large", f"request body exceeds {limit} bytes"
            )
            return
        body = await self._read(scope, receive, send, limit)
        if body is None:
            return
        await self.app(scope, replay_body(body, receive), send)

    async def _read(self, scope: dict, receive: Any, send: Any, limit: int) -> bytes | None:
        """The whole body, or None once an error was sent (or the client left)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.read_timeout_s
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await _receive_by(receive, deadline)
            except (asyncio.TimeoutError, TimeoutError):
                seconds = self.limits.read_timeout_s
                await self.reject(
                    scope,
                    receive,
                    send,
                    408,
                    "read_timeout",
                    f"the request body did not arrive within {seconds:g} s",
                )
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self.reject(
                    scope,
                    receive,
                    send,
                    413,
                    "body_too_large",
                    f"request body exceeds {limit} bytes",
                )
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _receive_by(receive: Any, deadline: float) -> dict:
    """``receive()``, cancelled at ``deadline`` (the loop's clock). ``asyncio.timeout_at``
    (Python 3.11+) awaits it in the request's own task; ``wait_for`` wraps it in a new task,
    which a body that has already arrived (nearly every one) does not need."""
    timeout_at = getattr(asyncio, "timeout_at", None)
    if timeout_at is None:  # Python 3.10
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
    async with timeout_at(deadline):
        return await receive()


def replay_body(body: bytes, receive: Any) -> Any:
    """An ASGI ``receive`` that hands ``body`` over whole, then defers to ``receive`` (for the
    disconnect, when it comes)."""
    delivered = False

    async def replay() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
