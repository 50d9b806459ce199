"""Every error answer of the service, rendered so that it cannot fail, and declared in OpenAPI.

Glossary: an error's *kind* is the stable ``error`` field of its body (and its
``X-Error-Kind`` header, which the metrics count).

    400  -                    (never: an unparsable body is a 422 ``invalid_json``)
    401  unauthorized         no bearer token where one is needed
    403  forbidden            a wrong token
    404  not_found            no such path, or no such ad-load cap
    405  method_not_allowed   ``Allow`` lists every method of the path (OPTIONS answers 204 too)
    408  read_timeout         the body did not arrive in time; the connection is closed
    413  body_too_large, too_many_candidates
    421  misdirected_host     a Host header outside the allow-list
    422  invalid_json, invalid_request    ``{"detail": [{"loc", "msg", "type"}]}``
    500  internal             a bug; the body says nothing more
    503  model_unavailable, not_ready, state_unavailable (the control-state database)

A 422 names the field in ``loc`` but never echoes the input: the input may be huge, may hold a
lone surrogate or a NaN, none of which JSON can carry.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

from adrank.orchestrator.errors import ModelUnavailableError
from adrank.service.metrics import ERROR_KIND_HEADER
from adrank.service.schemas import ErrorBody, ValidationErrorBody
from adrank.stores.postgres import StateUnavailableError

KIND_BY_STATUS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "read_timeout",
    413: "body_too_large",
    421: "misdirected_host",
    500: "internal",
    503: "model_unavailable",
}


class SafeJSONResponse(JSONResponse):
    """JSON in ASCII (a lone surrogate is escaped, not an encoding error), no NaN."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode("ascii")


def error_response(
    status: int, kind: str, detail: str, headers: dict[str, str] | None = None
) -> Response:
    return SafeJSONResponse(
        {"error": kind, "detail": detail},
        status_code=status,
        headers={**(headers or {}), ERROR_KIND_HEADER: kind},
    )


async def send_error(
    scope: dict, receive: Any, send: Any, status: int, kind: str, detail: str
) -> None:
    """An error answer from ASGI middleware; the connection closes after it (the rest of the
    body, if any, is never read)."""
    response = error_response(status, kind, detail, headers={"connection": "close"})
    await response(scope, receive, send)


def validation_response(issues: list[dict[str, Any]]) -> Response:
    detail = [
        {
            "loc": [part if isinstance(part, (int, str)) else str(part) for part in issue["loc"]],
            "msg": str(issue.get("msg", "")),
            "type": str(issue.get("type", "value_error")),
        }
        for issue in issues
    ]
    invalid_json = any(entry["type"] == "json_invalid" for entry in detail)
    for entry, issue in zip(detail, issues, strict=True):
        reason = (issue.get("ctx") or {}).get("error")
        if entry["type"] == "json_invalid" and isinstance(reason, str):
            entry["msg"] = f"JSON decode error: {reason}"
    kind = "invalid_json" if invalid_json else "invalid_request"
    return SafeJSONResponse({"detail": detail}, status_code=422, headers={ERROR_KIND_HEADER: kind})


def _allowed_methods(app: FastAPI, scope: dict) -> list[str]:
    methods: set[str] = set()
    for route in getattr(app.state, "endpoints", app.router.routes):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods | {"OPTIONS"})


def install_error_handlers(app: FastAPI) -> None:
    """Renders every error as above; 405 and OPTIONS list all the methods of the path."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> Response:
        return validation_response(list(error.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code == 405:
            allow = ", ".join(_allowed_methods(app, request.scope))
            if request.method == "OPTIONS":
                return Response(status_code=204, headers={"Allow": allow})
            detail = f"{request.method} is not allowed here; allowed: {allow}"
            return error_response(405, "method_not_allowed", detail, {"Allow": allow})
        kind = KIND_BY_STATUS.get(error.status_code, f"http_{error.status_code}")
        return error_response(error.status_code, kind, str(error.detail), error.headers)

    @app.exception_handler(ModelUnavailableError)
    async def model_unavailable(_: Request, error: ModelUnavailableError) -> Response:
        return error_response(503, "model_unavailable", str(error))

    @app.exception_handler(StateUnavailableError)
    async def state_unavailable(_: Request, error: StateUnavailableError) -> Response:
        return error_response(503, "state_unavailable", str(error))  # nothing stored: retry

    @app.exception_handler(Exception)
    async def internal(_: Request, error: Exception) -> Response:
        return error_response(500, "internal", "internal error; see the service's log")


def _error(description: str, model: type = ErrorBody) -> dict[str, Any]:
    return {"model": model, "description": description}


ANY_REQUEST = {
    408: _error("the body did not arrive within the read timeout; the connection is closed"),
    413: _error("the body is larger than the limit"),
}
HOST_CHECKED = {421: _error("the Host header is not one the service answers to")}
WITH_INPUT = {
    422: _error("unparsable JSON or a malformed request: loc names the field", ValidationErrorBody)
}
GUARDED = {
    401: _error("no bearer token (Authorization: Bearer <token>)"),
    403: _error("a wrong bearer token"),
}


def declared(*, inputs: bool, guarded: bool, host_checked: bool = True) -> dict[int, Any]:
    """The error statuses a route can answer, for its ``responses=``."""
    found: dict[int, Any] = {**ANY_REQUEST}
    if host_checked:
        found |= HOST_CHECKED
    if inputs:
        found |= WITH_INPUT
    if guarded:
        found |= GUARDED
    return found
