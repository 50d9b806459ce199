"""Prometheus metrics of the service, in a registry of its own per app, and the middleware that
counts every response.

Glossary: a *route* is an endpoint's path template (``/v1/campaigns/{campaign_id}/budget``),
``unmatched`` for a path no endpoint serves; an error's *kind* is the ``error`` field of its
body (``too_many_candidates``, ``invalid_request``, ``unauthorized``, ...), sent to the
middleware in the ``X-Error-Kind`` header so that whatever layer answered, it is counted once.

    adrank_http_responses_total{route,method,status}  every response, 2xx to 5xx
    adrank_requests_total{status}                     POST /v1/rank responses by status
    adrank_errors_total{kind}                         every 4xx and 5xx by kind
    adrank_duplicate_candidates_total                 repeated candidate ids merged away
    adrank_grpc_responses_total{method,code}          every gRPC answer by status code
    adrank_rank_path_total{path}                      POST /v1/rank taken by the lean path or
                                                      handed to FastAPI's (``full``)
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import Match

# Serving latencies live between 100 us and a few hundred ms.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
ERROR_KIND_HEADER = "x-error-kind"
RANK_ROUTE = "/v1/rank"


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.responses = Counter(
            "adrank_http_responses",
            "Every HTTP response by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.grpc_responses = Counter(
            "adrank_grpc_responses",
            "Every gRPC answer by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.rank_path = Counter(
            "adrank_rank_path",
            "POST /v1/rank requests by the path that answered them: lean, or full (FastAPI)",
            ["path"],
            registry=self.registry,
        )
        self.requests = Counter(
            "adrank_requests", "Rank requests by HTTP status", ["status"], registry=self.registry
        )
        self.errors = Counter(
            "adrank_errors", "Error responses by kind", ["kind"], registry=self.registry
        )
        self.latency = Histogram(
            "adrank_request_seconds",
            "Rank request latency, end to end inside the service",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_latency = Histogram(
            "adrank_stage_seconds",
            "Rank request latency per stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.unknown_candidates = Counter(
            "adrank_unknown_candidates",
            "Candidate ids not in the catalog (dropped)",
            registry=self.registry,
        )
        self.duplicate_candidates = Counter(
            "adrank_duplicate_candidates",
            "Repeated candidate ids in rank requests (merged: ranked once)",
            registry=self.registry,
        )
        self.degraded = Counter(
            "adrank_degraded_responses",
            "Responses scored with the fallback rates because the model did not answer",
            registry=self.registry,
        )

    def count_grpc(self, method: str, code: str, error_kind: str | None) -> None:
        self.grpc_responses.labels(method, code).inc()
        if error_kind is not None:
            self.errors.labels(error_kind).inc()

    def count(self, route: str, method: str, status: int, error_kind: str | None) -> None:
        self.responses.labels(route, method, str(status)).inc()
        if route == RANK_ROUTE:
            self.requests.labels(str(status)).inc()
        if status >= 400:
            self.errors.labels(error_kind or f"http_{status}").inc()


class CountResponses:
    """ASGI middleware: counts every response (and every unhandled exception, as a 500)."""

    def __init__(self, app: Any, metrics: ServiceMetrics, routes: list) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # the app's, read at request time (routes added later count)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = False

        async def counting_send(message: dict) -> None:
            nonlocal counted
            if message["type"] == "http.response.start" and not counted:
                counted = True
                kind = dict(message.get("headers") or []).get(ERROR_KIND_HEADER.encode())
                self.metrics.count(
                    self._route(scope),
                    scope["method"],
                    message["status"],
                    kind.decode("latin-1") if kind else None,
                )
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            if not counted:
                counted = True
                self.metrics.count(self._route(scope), scope["method"], 500, "internal")
            raise

    def _route(self, scope: dict) -> str:
        route = scope.get("route")  # set by the router on a match
        if route is not None and hasattr(route, "path"):
            return route.path
        for candidate in self.routes:  # also for answers before routing (Host, body, 405)
            match, _ = candidate.matches(scope)  # PARTIAL: the path, not the method
            if match is not Match.NONE:
                return candidate.path
        return "unmatched"
