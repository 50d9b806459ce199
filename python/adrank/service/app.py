"""The HTTP API: ``POST /v1/rank``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``, and the
control endpoints (:mod:`adrank.service.control`) when given.

Glossary: the *edge* is everything between the socket and the ranker: Host check, body limits,
JSON parsing, validation, de-duplication; see :mod:`adrank.service.errors` for every status.

A request passes, in order: the response counter (:class:`~adrank.service.metrics.
CountResponses`), the Host allow-list (421), the body reader (413, 408), strict JSON (422),
the bearer token where the policy guards the route (401, 403), the body's schema (422), then
the endpoint: too many candidates (413), ``k`` over the limit or a feature value the schema's
field cannot take (422), repeated candidate ids merged (counted), and the ranker (200, or 503
when the model does not answer).

``POST /v1/rank`` has two paths with one behaviour: a well-formed request is answered by
:class:`~adrank.service.lean_rank.LeanRank` (no framework: less than half the time), every
other one by the FastAPI route below, which also declares the endpoint in OpenAPI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adrank.features.schema import FeatureSchema
from adrank.service.body_limits import BoundedBody
from adrank.service.errors import (
    GUARDED,
    declared,
    error_response,
    install_error_handlers,
    send_error,
)
from adrank.service.json_body import StrictJsonRoute
from adrank.service.lean_rank import LeanRank
from adrank.service.limits import ServiceLimits
from adrank.service.metrics import CountResponses, ServiceMetrics
from adrank.service.rank_endpoint import RankEndpoint, RankingBackend, Refusal
from adrank.service.request_features import FeatureRules
from adrank.service.schemas import (
    ErrorBody,
    RankRequestBody,
    RankResponseBody,
    rank_response_body,
)
from adrank.service.security import READ_METHODS, AccessPolicy, HostAllowList

__all__ = ["AccessPolicy", "RankingBackend", "ServiceLimits", "create_app"]


def create_app(
    backend: RankingBackend,
    limits: ServiceLimits | None = None,
    control: APIRouter | None = None,
    *,
    access: AccessPolicy | None = None,
    schema: FeatureSchema | None = None,
    liveness: Callable[[], tuple[bool, str]] | None = None,
) -> FastAPI:
    """The service over ``backend``; one metrics registry per app.

    ``control``: the pacing and traffic-control endpoints
    (:func:`adrank.service.control.make_control_router`, given the same ``access``), mounted
    beside ``/v1/rank``. ``access``: the token and Host rules (default: no token, loopback
    names only). ``schema``: the model's feature schema, so that each feature value is checked
    against its field's kind (default: sizes only). ``liveness``: ``() -> (live, why)``;
    ``/healthz`` answers 503 with ``why`` when not live (e.g. the embedded Triton's supervisor
    gave up), so a liveness probe restarts the process.
    """
    limits = limits or ServiceLimits()
    access = access or AccessPolicy()
    metrics = ServiceMetrics()
    endpoint = RankEndpoint(backend, limits, FeatureRules(schema, limits), metrics)
    app = FastAPI(title="adrank", summary="Ranks ad creatives for a request", version="0.1.0")
    app.router.route_class = StrictJsonRoute
    app.state.metrics = metrics
    app.state.rank_endpoint = endpoint  # for the gRPC server beside it (adrank serve)
    app.state.limits = limits
    install_error_handlers(app)

    @app.post(
        "/v1/rank",
        response_model=RankResponseBody,
        response_model_exclude_unset=True,  # experiment fields only where set
        responses={
            **declared(inputs=True, guarded=access.guard_rank and access.token is not None),
            413: {"model": ErrorBody, "description": "too many candidates, or too large a body"},
            503: {"model": ErrorBody, "description": "the model did not answer in time; retry"},
        },
        dependencies=access.dependency(access.guard_rank),
    )
    def rank(body: RankRequestBody) -> Any:
        try:
            response, duplicates = endpoint.rank(body)
        except Refusal as refusal:
            if refusal.status == 422:
                raise RequestValidationError(refusal.issues) from None
            return error_response(refusal.status, refusal.kind, refusal.detail)
        return rank_response_body(response, duplicates)

    @app.get(
        "/healthz",
        responses={
            **declared(inputs=False, guarded=False, host_checked=False),
            503: {"model": ErrorBody, "description": "not live: restart the process"},
        },
    )
    def healthz() -> Any:
        live, reason = (True, "") if liveness is None else liveness()
        if not live:
            return error_response(503, "not_live", reason)
        return {"status": "ok"}

    @app.get(
        "/readyz",
        responses={
            **declared(inputs=False, guarded=False, host_checked=False),
            503: {"model": ErrorBody, "description": "not ready: the detail says why"},
        },
    )
    def readyz() -> Any:
        ready, reason = backend.readiness()
        if not ready:
            return error_response(503, "not_ready", reason)
        return {"status": "ready", "detail": reason}

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses=declared(inputs=False, guarded=False),
    )
    def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if control is not None:
        # Every route under ``control`` (routers it includes too): writes need the token, reads
        # when the policy guards them.
        guarded = access.token is not None
        app.include_router(
            control,
            dependencies=[Depends(access.authorize_control)] if guarded else [],
            responses=GUARDED if guarded else {},
        )
    # What 405 answers list and the metrics label responses by.
    app.state.endpoints = list(endpoints(app.router.routes))
    if control is not None and access.token is not None and not access.guard_reads:
        _open_reads_in_openapi(app, list(endpoints(control.routes)))

    # Added last = runs first: count, then check the Host, then read the body, then the lean
    # path of /v1/rank.
    rank_route = next(route for route in app.state.endpoints if route.path == "/v1/rank")
    app.add_middleware(LeanRank, endpoint=endpoint, limits=limits, access=access, route=rank_route)
    app.add_middleware(BoundedBody, limits=limits, reject=send_error)
    app.add_middleware(HostAllowList, policy=access, on_reject=_misdirected)
    app.add_middleware(CountResponses, metrics=metrics, routes=app.state.endpoints)
    return app


def endpoints(routes: list, prefix: str = "") -> Iterator[Any]:
    """The leaf routes of ``routes``, looking inside included routers (FastAPI keeps those
    behind an included-router object whose original router holds them)."""
    for route in routes:
        if hasattr(route, "methods") and hasattr(route, "path_regex"):
            yield route
        elif hasattr(route, "original_router"):
            context = getattr(route, "include_context", None)
            if not getattr(context, "prefix", ""):  # adrank includes without prefixes
                yield from endpoints(route.original_router.routes)


def _open_reads_in_openapi(app: FastAPI, routes: list) -> None:
    """The OpenAPI document without 401/403 on control reads, which are open: FastAPI declares
    an included router's responses on all of its routes alike."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for route in routes:
                for method in set(route.methods) & set(READ_METHODS):
                    operation = document["paths"].get(route.path, {}).get(method.lower(), {})
                    for status in ("401", "403"):
                        operation.get("responses", {}).pop(status, None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _misdirected(scope: dict, receive: Any, send: Any) -> None:
    await send_error(
        scope, receive, send, 421, "misdirected_host", "this service does not answer to that Host"
    )
