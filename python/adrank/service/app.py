"""The HTTP API: ``POST /v1/rank``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

Statuses: 200 ranked; 413 too many candidates or too large a body; 422 a malformed request
(the body names the field); 503 the model did not answer in time (the body says why; retry).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adrank.orchestrator.errors import ModelUnavailableError
from adrank.orchestrator.request import Constraints, RankRequest, RankResponse
from adrank.service.metrics import ServiceMetrics
from adrank.service.schemas import ErrorBody, RankRequestBody, RankResponseBody


class RankingBackend(Protocol):
    """What the service needs of a ranker (``adrank.Ranker`` implements it)."""

    def rank(self, request: RankRequest) -> RankResponse: ...

    def readiness(self) -> tuple[bool, str]: ...


@dataclass(frozen=True)
class ServiceLimits:
    max_candidates: int = 10_000
    max_body_bytes: int = 2 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {self.max_candidates}")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")


def _error(status: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=status, content=ErrorBody(error=kind, detail=detail).model_dump()
    )


class _BodySizeLimit:
    """ASGI middleware: 413 once a body exceeds the limit, whether or not it declared a length."""

    def __init__(self, app: Any, max_bytes: int, metrics: ServiceMetrics) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: dict, receive: Any, send: Any) -> None:
        self.metrics.requests.labels("413").inc()
        self.metrics.errors.labels("body_too_large").inc()
        response = _error(413, "body_too_large", f"request body exceeds {self.max_bytes} bytes")
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _to_request(body: RankRequestBody) -> RankRequest:
    return RankRequest(
        request_id=body.request_id,
        user=body.user,
        context=body.context,
        candidates=np.array(body.candidates, dtype=np.int64),
        k=body.k,
        region=body.region,
        recently_seen=np.array(body.recently_seen, dtype=np.int64),
        constraints=Constraints(
            max_per_advertiser=body.constraints.max_per_advertiser,
            blocked_categories=tuple(body.constraints.blocked_categories),
            frequency_cap=body.constraints.frequency_cap,
        ),
    )


def create_app(
    backend: RankingBackend,
    limits: ServiceLimits | None = None,
    control: APIRouter | None = None,
) -> FastAPI:
    """The service over ``backend``; one metrics registry per app.

    ``control``: the pacing and traffic-control endpoints
    (:func:`adrank.service.control.make_control_router`), mounted beside ``/v1/rank``.
    """
    limits = limits or ServiceLimits()
    metrics = ServiceMetrics()
    app = FastAPI(title="adrank", summary="Ranks ad creatives for a request", version="0.1.0")
    app.state.metrics = metrics
    if control is not None:
        app.include_router(control)

    @app.exception_handler(ModelUnavailableError)
    async def model_unavailable(_: Request, error: ModelUnavailableError) -> JSONResponse:
        metrics.requests.labels("503").inc()
        metrics.errors.labels("model_unavailable").inc()
        return _error(503, "model_unavailable", str(error))

    @app.post(
        "/v1/rank",
        response_model=RankResponseBody,
        responses={413: {"model": ErrorBody}, 422: {}, 503: {"model": ErrorBody}},
    )
    def rank(body: RankRequestBody) -> Any:
        if len(body.candidates) > limits.max_candidates:
            metrics.requests.labels("413").inc()
            metrics.errors.labels("too_many_candidates").inc()
            return _error(
                413,
                "too_many_candidates",
                f"candidates has {len(body.candidates)} ids; the limit is {limits.max_candidates}",
            )
        start = time.perf_counter()
        response = backend.rank(_to_request(body))
        metrics.latency.observe(time.perf_counter() - start)
        for stage, ms in response.timings_ms.items():
            metrics.stage_latency.labels(stage).observe(ms / 1e3)
        metrics.unknown_candidates.inc(response.unknown_candidates)
        if response.degraded:
            metrics.degraded.inc()
        metrics.requests.labels("200").inc()
        return response.to_dict()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorBody}})
    def readyz() -> Any:
        ready, reason = backend.readiness()
        if not ready:
            return _error(503, "not_ready", reason)
        return {"status": "ready", "detail": reason}

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_BodySizeLimit, max_bytes=limits.max_body_bytes, metrics=metrics)
    return app
