"""The model-version endpoints: which exported version serves, and the switch to another.

    GET  /v1/model            {"version", "model_version", "previous", "available", "pinned"}
    PUT  /v1/model            {"version": V}: activate version V (:mod:`.model_versions`)
    POST /v1/model/rollback   back to the version served before the last switch

A switch that fails leaves the old version serving and answers 409 with the reason; a version
that is not exported is a 404. The router is part of the control plane: the app that includes
it (inside the control router) guards switching as a write, the status as a read.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from adrank.service.errors import declared, error_response
from adrank.service.json_body import StrictJsonRoute
from adrank.service.model_versions import ModelVersions, SwapError
from adrank.service.schemas import STRICT, ErrorBody


class ModelVersionBody(BaseModel):
    model_config = STRICT

    version: int = Field(ge=1, lt=2**63)


class ModelStatusBody(BaseModel):
    version: int
    model_version: str
    previous: int | None
    available: list[int]
    pinned: list[int] = Field(
        default_factory=list, description="versions served beside it to experiment arms"
    )


SWITCH_ERRORS = {
    404: {"model": ErrorBody, "description": "the version is not exported"},
    409: {"model": ErrorBody, "description": "the switch failed; the old version still serves"},
}


def make_model_router(versions: ModelVersions) -> APIRouter:
    router = APIRouter(tags=["model"], route_class=StrictJsonRoute)

    @router.get(
        "/v1/model",
        response_model=ModelStatusBody,
        responses=declared(inputs=False, guarded=False),
    )
    def model_status() -> Any:
        return versions.status()

    async def switch(action: Any) -> Any:
        try:
            return await run_in_threadpool(action)  # loading and warming up take seconds
        except LookupError as error:
            return error_response(404, "not_found", str(error))
        except SwapError as error:
            return error_response(409, "swap_failed", str(error))

    @router.put(
        "/v1/model",
        response_model=ModelStatusBody,
        responses={**declared(inputs=True, guarded=False), **SWITCH_ERRORS},
    )
    async def activate(body: ModelVersionBody) -> Any:
        return await switch(lambda: versions.activate(body.version))

    @router.post(
        "/v1/model/rollback",
        response_model=ModelStatusBody,
        responses={**declared(inputs=False, guarded=False), **SWITCH_ERRORS},
    )
    async def rollback() -> Any:
        return await switch(versions.rollback)

    return router
