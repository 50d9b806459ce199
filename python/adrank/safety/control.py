"""The safety gate's control endpoints, mounted with the control API (guarded alike: writes
need the app's token, reads too when ``guard_reads`` is set).

    GET /v1/safety/blocks?region=&creative_id=&limit=   the audit log, oldest first
    PUT /v1/safety/overrides/{creative_id}              {"region", "decision": allow|deny,
                                                         "reason"?}; the entry it logged
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from adrank.safety.gate import MAX_AUDIT_ENTRIES, SafetyGate
from adrank.service.errors import declared
from adrank.service.json_body import StrictJsonRoute
from adrank.service.schemas import STRICT, Text

INT64 = {"ge": -(2**63), "lt": 2**63}


class AuditEntryBody(BaseModel):
    creative_id: int
    region: str
    rule: str
    score: float | None
    time: float
    note: str = ""


class OverrideBody(BaseModel):
    model_config = STRICT

    region: Text = Field(min_length=1, max_length=64)
    decision: Literal["allow", "deny"]
    reason: Text = Field("", max_length=500)


def make_safety_router(gate: SafetyGate) -> APIRouter:
    """The endpoints over ``gate``; include it in the control router."""
    router = APIRouter(tags=["safety"], route_class=StrictJsonRoute)

    @router.get(
        "/v1/safety/blocks",
        response_model=list[AuditEntryBody],
        responses=declared(inputs=True, guarded=False),
    )
    def blocks(
        region: Annotated[Text | None, Query(min_length=1, max_length=64)] = None,
        creative_id: Annotated[int | None, Query(**INT64)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_ENTRIES)] = 1000,
    ) -> Any:
        return [e.__dict__ for e in gate.audit(region, creative_id, limit)]

    @router.put(
        "/v1/safety/overrides/{creative_id}",
        response_model=AuditEntryBody,
        responses=declared(inputs=True, guarded=False),
    )
    def override(creative_id: Annotated[int, Path(**INT64)], body: OverrideBody) -> Any:
        entry = gate.override(creative_id, body.region, body.decision == "allow", body.reason)
        return entry.__dict__

    return router
