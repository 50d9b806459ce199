"""The control API: spend events in, budgets, kill switches and ad-load caps, as one APIRouter.

``create_app`` includes it with ``app.include_router(make_control_router(pacing, traffic))``.

    POST   /v1/events                               spend events (batch); 200 {accepted, duplicates}
    PUT    /v1/campaigns/{campaign_id}/budget        {"daily_budget": x}
    GET    /v1/campaigns/{campaign_id}/pacing        budget, spend, target, multiplier
    GET    /v1/kill-switches                         killed advertisers and campaigns
    PUT    /v1/kill-switches/{scope}/{entity_id}     {"reason": "..."}; scope: advertiser | campaign
    DELETE /v1/kill-switches/{scope}/{entity_id}     revive
    GET    /v1/ad-load-caps                          every cap
    PUT    /v1/ad-load-caps                          {"region"?, "placement"?, "max_ad_share"}
    DELETE /v1/ad-load-caps?region=&placement=       remove a cap (404 if none)

A malformed body is a 422 naming the field (pydantic), checked whole before anything is
stored: one bad event in a batch rejects the batch and changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from adrank.pacing import PacingService, SpendEvent
from adrank.pacing.events import MAX_EVENT_ID_LENGTH
from adrank.service.schemas import ErrorBody
from adrank.traffic import TrafficControl

MAX_EVENTS_PER_BATCH = 10_000
INT64 = {"ge": -(2**63), "lt": 2**63}


class SpendEventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=MAX_EVENT_ID_LENGTH)
    campaign_id: int = Field(**INT64)
    kind: Literal["impression", "click", "conversion"]
    cost: float = Field(ge=0, allow_inf_nan=False)
    timestamp: float = Field(ge=0, allow_inf_nan=False)


class EventsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[SpendEventBody] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)


class EventsResult(BaseModel):
    accepted: int
    duplicates: int


class BudgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_budget: float = Field(ge=0, allow_inf_nan=False)


class PacingBody(BaseModel):
    campaign_id: int
    daily_budget: float | None
    spend: float
    target_spend: float
    multiplier: float
    exhausted: bool


class KillBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=500)


class KillSwitchesBody(BaseModel):
    advertisers: dict[int, str]
    campaigns: dict[int, str]


class AdLoadCapBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str | None = Field(None, min_length=1, max_length=64)
    placement: str | None = Field(None, min_length=1, max_length=64)
    max_ad_share: float = Field(ge=0, le=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def needs_a_scope(self) -> AdLoadCapBody:
        if self.region is None and self.placement is None:
            raise ValueError("an ad-load cap needs a region, a placement, or both")
        return self


class Scope(str, Enum):
    advertiser = "advertiser"
    campaign = "campaign"


EntityId = Annotated[int, Path(**INT64)]


def make_control_router(
    pacing: PacingService, traffic: TrafficControl, clock: Callable[[], float] = time.time
) -> APIRouter:
    """The control endpoints over ``pacing`` and ``traffic``; ``clock`` gives unix seconds."""
    router = APIRouter(tags=["control"])

    @router.post("/v1/events", response_model=EventsResult, responses={422: {}})
    def record_events(body: EventsBody) -> Any:
        events = [SpendEvent(**event.model_dump()) for event in body.events]
        result = pacing.record_events(events)
        return EventsResult(accepted=result.accepted, duplicates=result.duplicates)

    @router.put("/v1/campaigns/{campaign_id}/budget", response_model=PacingBody)
    def set_budget(campaign_id: EntityId, body: BudgetBody) -> Any:
        now = clock()
        pacing.set_budget(campaign_id, body.daily_budget, now)
        return pacing.status(campaign_id, now).__dict__

    @router.get("/v1/campaigns/{campaign_id}/pacing", response_model=PacingBody)
    def campaign_pacing(campaign_id: EntityId) -> Any:
        return pacing.status(campaign_id, clock()).__dict__

    @router.get("/v1/kill-switches", response_model=KillSwitchesBody)
    def kill_switches() -> Any:
        return traffic.kill_switches()

    @router.put("/v1/kill-switches/{scope}/{entity_id}", response_model=KillSwitchesBody)
    def kill(scope: Scope, entity_id: EntityId, body: KillBody | None = None) -> Any:
        reason = body.reason if body else ""
        if scope is Scope.advertiser:
            traffic.kill_advertiser(entity_id, reason)
        else:
            traffic.kill_campaign(entity_id, reason)
        return traffic.kill_switches()

    @router.delete("/v1/kill-switches/{scope}/{entity_id}", response_model=KillSwitchesBody)
    def revive(scope: Scope, entity_id: EntityId) -> Any:
        if scope is Scope.advertiser:
            traffic.revive_advertiser(entity_id)
        else:
            traffic.revive_campaign(entity_id)
        return traffic.kill_switches()

    @router.get("/v1/ad-load-caps", response_model=list[AdLoadCapBody])
    def ad_load_caps() -> Any:
        return [cap.__dict__ for cap in traffic.ad_load_caps()]

    @router.put("/v1/ad-load-caps", response_model=list[AdLoadCapBody])
    def set_ad_load_cap(body: AdLoadCapBody) -> Any:
        traffic.set_ad_load_cap(body.max_ad_share, body.region, body.placement)
        return [cap.__dict__ for cap in traffic.ad_load_caps()]

    @router.delete(
        "/v1/ad-load-caps",
        response_model=list[AdLoadCapBody],
        responses={404: {"model": ErrorBody}},
    )
    def clear_ad_load_cap(
        region: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        placement: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    ) -> Any:
        if not traffic.clear_ad_load_cap(region, placement):
            scope = f"region={region!r}, placement={placement!r}"
            return JSONResponse(
                status_code=404,
                content=ErrorBody(
                    error="not_found", detail=f"no ad-load cap for {scope}"
                ).model_dump(),
            )
        return [cap.__dict__ for cap in traffic.ad_load_caps()]

    return router
