"""The safety gate's control endpoints, mounted with the control API (guarded alike: writes
need the app's token, reads too when ``guard_reads`` is set).

    GET /v1/safety/blocks?region=&creative_id=&after=&limit=
        a page of the audit log, oldest first: the entries after the entry ``after`` (its id;
        0, the default: from the start), at most ``limit`` (100; at most 1000);
        {"entries": [...], "next_after": the last entry's id, or null at the end,
         "last_id": the newest entry's id}
    PUT /v1/safety/overrides/{creative_id}
        {"region", "decision": allow|deny, "by": who, "reason"?}; the entry it logged
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from adrank.safety.gate import SafetyGate
from adrank.service.errors import declared
from adrank.service.json_body import StrictJsonRoute
from adrank.service.schemas import STRICT, Text
from adrank.stores.safety_audit import MAX_PAGE

INT64 = {"ge": -(2**63), "lt": 2**63}


class AuditEntryBody(BaseModel):
    id: int
    creative_id: int
    region: str
    rule: str
    score: float | None
    time: float
    note: str = ""
    by: str = ""


class AuditPageBody(BaseModel):
    entries: list[AuditEntryBody]
    next_after: int | None = Field(description="the ``after`` of the next page; null: no more")
    last_id: int = Field(description="the newest entry's id (0: the log is empty)")


class OverrideBody(BaseModel):
    model_config = STRICT

    region: Text = Field(min_length=1, max_length=64)
    decision: Literal["allow", "deny"]
    by: Text = Field(min_length=1, max_length=200, description="who decides (audited)")
    reason: Text = Field("", max_length=500)


def make_safety_router(gate: SafetyGate) -> APIRouter:
    """The endpoints over ``gate``; include it in the control router."""
    router = APIRouter(tags=["safety"], route_class=StrictJsonRoute)

    @router.get(
        "/v1/safety/blocks",
        response_model=AuditPageBody,
        responses=declared(inputs=True, guarded=False),
    )
    def blocks(
        region: Annotated[Text | None, Query(min_length=1, max_length=64)] = None,
        creative_id: Annotated[int | None, Query(**INT64)] = None,
        after: Annotated[int, Query(ge=0, lt=2**63)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> Any:
        last = gate.store.last_id()
        entries = gate.page(region, creative_id, after, limit)
        more = len(entries) == limit and entries[-1].id < last
        return {
            "entries": [e.__dict__ for e in entries],
            "next_after": entries[-1].id if more else None,
            "last_id": last,
        }

    @router.put(
        "/v1/safety/overrides/{creative_id}",
        response_model=AuditEntryBody,
        responses=declared(inputs=True, guarded=False),
    )
    def override(creative_id: Annotated[int, Path(**INT64)], body: OverrideBody) -> Any:
        allow = body.decision == "allow"
        entry = gate.override(creative_id, body.region, allow, body.reason, body.by)
        return entry.__dict__

    return router
