"""``POST /v1/rank`` without the framework: :class:`LeanRank`, ASGI middleware that answers a
well-formed rank request itself and hands every other request on to FastAPI.

Glossary: the *lean path* is this module's: orjson in, the candidate ids typed by numpy and
the rest by the body model's compiled validator, the ranker (on the event loop's thread for a
sole connection, else on a worker thread), orjson out.
The *full path* is the FastAPI route of the same endpoint, which declares it in OpenAPI and
answers everything the lean path does not take.

The lean path takes a request only when its answer is the full path's: a JSON content type,
the token where ``/v1/rank`` is guarded, a body that the fast parser of
:mod:`adrank.service.json_body` vouches for and that validates. Anything else (unparsable
JSON, a schema violation, a missing or wrong token, another content type) goes to the full
path with the same body, which answers exactly as it always did. What comes after
validation (413 for too many candidates, 422 for a feature value or ``k``, 503 when the model
does not answer) is decided by the same :class:`~adrank.service.rank_endpoint.RankEndpoint`
and rendered by the same functions on both paths. The two differ in speed only.

Where the time went before (one request of 1,000 candidates through the ASGI app in
process, a stand-in ranker, median): 0.63 ms, of which the standard library's JSON parser
and the depth scan 0.34 ms, pydantic 0.1 ms, FastAPI's dependency solving, response-model
pass and ``json.dumps`` the rest. The lean path: 0.26 ms, the worker-thread hop included.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from adrank.orchestrator.errors import ModelUnavailableError
from adrank.service.body_limits import replay_body
from adrank.service.errors import error_response, validation_response
from adrank.service.json_body import parse_fast
from adrank.service.limits import ServiceLimits
from adrank.service.rank_endpoint import RankEndpoint, Refusal, bearer_check
from adrank.service.schemas import RankRequestBody, rank_response_body
from adrank.service.security import AccessPolicy
from adrank.stores.postgres import StateUnavailableError

RANK_PATH = "/v1/rank"
# The threads the ranker runs on, shared by every app of the process; as many as FastAPI's
# thread pool allows (anyio's default), without its per-call bookkeeping (about 10 us).
RANK_THREADS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="adrank-rank")
JSON_HEADERS = [(b"content-type", b"application/json")]
# A rank runs on the event loop's own thread while no other connection has asked for a rank
# for this long: one connection's requests come one after another, so none waits behind
# another, and each is spared two thread wake-ups, which a busy machine makes dear (0.08 to
# 0.12 ms of wall time per request in adrank bench's setting, 2 shared cores). While several
# connections ask, ranks go to the worker threads, where they overlap; a request that arrives
# while a rank runs on the loop waits for that one rank at most.
SOLE_CALLER_S = 1.0


class LeanRank:
    """``route``: the FastAPI route of ``/v1/rank`` (the metrics label responses by it)."""

    def __init__(
        self,
        app: Any,
        endpoint: RankEndpoint,
        limits: ServiceLimits,
        access: AccessPolicy,
        route: Any,
    ) -> None:
        self.app = app
        self.endpoint = endpoint
        self.limits = limits
        self.route = route
        guarded = access.guard_rank and access.token is not None
        self.token = access.token if guarded else None
        # The counters of the two paths, looked up once (a labels() call takes a lock).
        self.lean = endpoint.metrics.rank_path.labels("lean")
        self.full = endpoint.metrics.rank_path.labels("full")
        self.sole_caller_s = SOLE_CALLER_S
        self._in_flight = 0  # ranks on worker threads now
        self._last_client: Any = None  # the connection of the latest rank, and when it began
        self._last_start = -float("inf")
        # When a rank last came from another connection than the one before, which had asked
        # within SOLE_CALLER_S: a client that reconnects after a pause is still alone.
        self._last_switch = -float("inf")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != RANK_PATH:
            await self.app(scope, receive, send)
            return
        if not self._json_and_allowed(scope):
            self.full.inc()
            await self.app(scope, receive, send)
            return
        message = await receive()  # BoundedBody hands on the whole body in one message
        body = message.get("body", b"")
        parsed = parse_fast(body, self.limits.max_json_depth)
        candidates = candidate_ids(parsed, body)
        if candidates is not None:
            parsed = {**parsed, "candidates": []}  # validated above: the array goes apart
        validated = _validate(parsed)
        if validated is None:
            self.full.inc()
            await self.app(scope, replay_body(body, receive), send)
            return
        self.lean.inc()
        scope["route"] = self.route
        try:
            payload = await self._answer_soon(validated, candidates, scope.get("client"))
            status, headers = 200, JSON_HEADERS
        except Refusal as refusal:
            await _refused(refusal)(scope, receive, send)
            return
        except ModelUnavailableError as error:
            await error_response(503, "model_unavailable", str(error))(scope, receive, send)
            return
        except StateUnavailableError as error:
            await error_response(503, "state_unavailable", str(error))(scope, receive, send)
            return
        length = str(len(payload)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", length)],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _answer_soon(
        self, body: RankRequestBody, candidates: np.ndarray | None, client: Any
    ) -> bytes:
        """``_answer`` on this thread while ``client`` (the scope's: a connection's address) has
        been the only connection ranking for SOLE_CALLER_S, else on a worker thread."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if client != self._last_client:
            if now - self._last_start <= self.sole_caller_s:  # both connections are asking
                self._last_switch = now
            self._last_client = client
        self._last_start = now
        if now - self._last_switch > self.sole_caller_s and self._in_flight == 0:
            return self._answer(body, candidates)
        self._in_flight += 1
        try:
            return await loop.run_in_executor(RANK_THREADS, self._answer, body, candidates)
        finally:
            self._in_flight -= 1

    def _answer(self, body: RankRequestBody, candidates: np.ndarray | None) -> bytes:
        response, duplicates = self.endpoint.rank(body, candidates)
        return orjson.dumps(rank_response_body(response, duplicates), default=_plain)

    def _json_and_allowed(self, scope: dict) -> bool:
        content_type = authorization = None
        for name, value in scope.get("headers") or ():
            if name == b"content-type":
                content_type = value
            elif name == b"authorization":
                authorization = value
        if content_type is None:
            return False
        media = content_type.partition(b";")[0].strip().lower()
        if media != b"application/json":
            return False
        if self.token is None:
            return True
        # A missing or wrong token is the full path's to refuse (401, 403).
        header = None if authorization is None else authorization.decode("latin-1")
        return bearer_check(header, self.token) == 200


def candidate_ids(parsed: Any, body: bytes) -> np.ndarray | None:
    """``parsed["candidates"]`` as int64 [C] when it is a non-empty list of JSON integers that
    each fit in int64, which is all the body's schema asks of them; None otherwise (the schema
    then validates the list, and names any bad item).

    numpy types the list for us: int64 only when every item is a Python int in range (a float,
    a string, a null, a nested list or an integer beyond int64 each give another dtype). A bool
    would pass as an int, so a body with a ``true`` or ``false`` anywhere (strings included:
    cheaper to search for than to rule out) takes the schema's way. Measured at 1,000 ids:
    45 us here against 100 us for the schema's check and the array made from its list.
    """
    if not isinstance(parsed, dict):
        return None
    items = parsed.get("candidates")
    if type(items) is not list or not items or b"true" in body or b"false" in body:
        return None
    try:
        ids = np.array(items)
    except ValueError:  # ragged: a list among the ids
        return None
    return ids if ids.dtype == np.int64 and ids.ndim == 1 else None


def _validate(parsed: Any) -> RankRequestBody | None:
    if not isinstance(parsed, dict):  # also the fast parser's "unsure"
        return None
    try:
        return RankRequestBody.model_validate(parsed)
    except ValidationError:
        return None


def _refused(refusal: Refusal) -> Any:
    if refusal.status == 422:
        return validation_response(refusal.issues)
    return error_response(refusal.status, refusal.kind, refusal.detail)


def _plain(value: Any) -> Any:
    """numpy scalars in a response (a stage time, say) as the Python numbers they hold."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
