"""The control API: spend events in, budgets, kill switches and ad-load caps, as one APIRouter.

``create_app`` includes it with ``app.include_router(make_control_router(pacing, traffic))``.

    POST   /v1/events                               spend events (batch); 200 {accepted, duplicates}
                                                    (an event may name its creative_id: cold
                                                    start counts its impressions and clicks)
    PUT    /v1/campaigns/{campaign_id}/budget        {"daily_budget": x, "max_charge"?: y}
    GET    /v1/campaigns/{campaign_id}/pacing        budget, spend, target, multiplier
    GET    /v1/kill-switches                         killed advertisers and campaigns
    PUT    /v1/kill-switches/{scope}/{entity_id}     {"reason": "..."}; scope: advertiser | campaign
    DELETE /v1/kill-switches/{scope}/{entity_id}     revive
    GET    /v1/ad-load-caps                          every cap
    PUT    /v1/ad-load-caps                          {"region"?, "placement"?, "max_ad_share"}
    DELETE /v1/ad-load-caps?region=&placement=       remove a cap (404 if none)

A malformed body is a 422 naming the field (pydantic), checked whole before anything is
stored: one bad event in a batch rejects the batch and changes nothing. An event's cost must
be at most ``ServiceLimits.max_event_cost`` and its timestamp within ``max_event_age_s`` before
and ``max_event_lead_s`` after the service's clock.

Writes (POST, PUT, DELETE) need the bearer token of the app's AccessPolicy when it has one;
reads (GET) need it when ``guard_reads`` is set. An ad-load cap applies to a region, a
placement or both: a body with neither is a 422 (the schema says so: ``anyOf``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from adrank.pacing import PacingService, SpendEvent
from adrank.pacing.events import MAX_COST, MAX_EVENT_ID_LENGTH, MAX_TIMESTAMP, EventBounds
from adrank.service.errors import declared, error_response
from adrank.service.json_body import StrictJsonRoute
from adrank.service.limits import ServiceLimits
from adrank.service.schemas import STRICT, ErrorBody, Finite, Text
from adrank.traffic import TrafficControl

MAX_EVENTS_PER_BATCH = 10_000
MAX_BUDGET = 1e12
INT64 = {"ge": -(2**63), "lt": 2**63}


class SpendEventBody(BaseModel):
    """One spend event; ``cost`` and ``timestamp`` are also bounded by the service's limits."""

    model_config = STRICT

    event_id: Text = Field(min_length=1, max_length=MAX_EVENT_ID_LENGTH)
    campaign_id: int = Field(**INT64)
    kind: Literal["impression", "click", "conversion"]
    cost: Finite = Field(ge=0, le=MAX_COST)
    timestamp: Finite = Field(ge=0, le=MAX_TIMESTAMP, description="unix seconds")
    creative_id: int | None = Field(
        None, **INT64, description="the creative shown (optional; cold start counts it)"
    )


class EventsBody(BaseModel):
    model_config = STRICT

    events: list[SpendEventBody] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)


class EventsResult(BaseModel):
    accepted: int
    duplicates: int


class BudgetBody(BaseModel):
    model_config = STRICT

    daily_budget: Finite = Field(ge=0, le=MAX_BUDGET)
    max_charge: Finite | None = Field(
        None,
        gt=0,
        le=MAX_BUDGET,
        description="the most one event of the campaign can cost (a CPC bid per click): the "
        "reserve then holds before the largest charges have been seen",
    )


class PacingBody(BaseModel):
    campaign_id: int
    daily_budget: float | None
    spend: float
    target_spend: float
    multiplier: float
    exhausted: bool


class KillBody(BaseModel):
    model_config = STRICT

    reason: Text = Field("", max_length=500)


class KillSwitchesBody(BaseModel):
    advertisers: dict[int, str]
    campaigns: dict[int, str]


class AdLoadCapBody(BaseModel):
    """An ad-load cap: at most ``max_ad_share`` of a response's slots go to ads, in a region, a
    placement or both (at least one of them is required)."""

    model_config = STRICT | ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["region"]}, {"required": ["placement"]}]}
    )

    region: Text | None = Field(None, min_length=1, max_length=64)
    placement: Text | None = Field(None, min_length=1, max_length=64)
    max_ad_share: Finite = Field(ge=0, le=1)

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
    pacing: PacingService,
    traffic: TrafficControl,
    clock: Callable[[], float] = time.time,
    on_events: Callable[[list[int], list[int], list[int]], Any] | None = None,
) -> APIRouter:
    """The control endpoints over ``pacing`` and ``traffic``; ``clock`` gives unix seconds.

    ``on_events(creative ids, impressions, clicks)`` gets the accepted batches' impression and
    click events that name a creative (:class:`adrank.experiments.cold_start.ImpressionCounts`'s
    ``record``); a batch with duplicates (a retry) is not passed on, so nothing counts twice.

    The app that includes the router (:func:`adrank.service.app.create_app`) guards it with its
    :class:`~adrank.service.security.AccessPolicy` and bounds spend events by its
    :class:`~adrank.service.limits.ServiceLimits`.
    """
    router = APIRouter(tags=["control"], route_class=StrictJsonRoute)
    write = {"responses": declared(inputs=True, guarded=False)}
    read = {"responses": declared(inputs=True, guarded=False)}
    read_all = {"responses": declared(inputs=False, guarded=False)}

    @router.post("/v1/events", response_model=EventsResult, **write)
    def record_events(body: EventsBody, request: Request) -> Any:
        events = [SpendEvent(**event.model_dump(exclude={"creative_id"})) for event in body.events]
        limits = getattr(request.app.state, "limits", None) or ServiceLimits()
        bounds = EventBounds(limits.max_event_cost, limits.max_event_age_s, limits.max_event_lead_s)
        outside = bounds.violations(events, clock())
        if outside:
            raise RequestValidationError(
                [
                    {"loc": ("body", "events", position, field), "msg": msg, "type": "value_error"}
                    for position, field, msg in outside
                ]
            )
        result = pacing.record_events(events)
        if on_events is not None and result.duplicates == 0:
            named = [e for e in body.events if e.creative_id is not None and e.kind != "conversion"]
            on_events(
                [e.creative_id for e in named],
                [int(e.kind == "impression") for e in named],
                [int(e.kind == "click") for e in named],
            )
        return EventsResult(accepted=result.accepted, duplicates=result.duplicates)

    @router.put("/v1/campaigns/{campaign_id}/budget", response_model=PacingBody, **write)
    def set_budget(campaign_id: EntityId, body: BudgetBody) -> Any:
        now = clock()
        pacing.set_budget(campaign_id, body.daily_budget, now, max_charge=body.max_charge)
        return pacing.status(campaign_id, now).__dict__

    @router.get("/v1/campaigns/{campaign_id}/pacing", response_model=PacingBody, **read)
    def campaign_pacing(campaign_id: EntityId) -> Any:
        return pacing.status(campaign_id, clock()).__dict__

    @router.get("/v1/kill-switches", response_model=KillSwitchesBody, **read_all)
    def kill_switches() -> Any:
        return traffic.kill_switches()

    @router.put("/v1/kill-switches/{scope}/{entity_id}", response_model=KillSwitchesBody, **write)
    def kill(scope: Scope, entity_id: EntityId, body: KillBody | None = None) -> Any:
        reason = body.reason if body else ""
        if scope is Scope.advertiser:
            traffic.kill_advertiser(entity_id, reason)
        else:
            traffic.kill_campaign(entity_id, reason)
        return traffic.kill_switches()

    @router.delete(
        "/v1/kill-switches/{scope}/{entity_id}", response_model=KillSwitchesBody, **write
    )
    def revive(scope: Scope, entity_id: EntityId) -> Any:
        if scope is Scope.advertiser:
            traffic.revive_advertiser(entity_id)
        else:
            traffic.revive_campaign(entity_id)
        return traffic.kill_switches()

    @router.get("/v1/ad-load-caps", response_model=list[AdLoadCapBody], **read_all)
    def ad_load_caps() -> Any:
        return [cap.__dict__ for cap in traffic.ad_load_caps()]

    @router.put("/v1/ad-load-caps", response_model=list[AdLoadCapBody], **write)
    def set_ad_load_cap(body: AdLoadCapBody) -> Any:
        traffic.set_ad_load_cap(body.max_ad_share, body.region, body.placement)
        return [cap.__dict__ for cap in traffic.ad_load_caps()]

    @router.delete(
        "/v1/ad-load-caps",
        response_model=list[AdLoadCapBody],
        responses={
            **write["responses"],
            404: {"model": ErrorBody, "description": "no ad-load cap for that scope"},
        },
    )
    def clear_ad_load_cap(
        region: Annotated[Text | None, Query(min_length=1, max_length=64)] = None,
        placement: Annotated[Text | None, Query(min_length=1, max_length=64)] = None,
    ) -> Any:
        if not traffic.clear_ad_load_cap(region, placement):
            scope = f"region={region!r}, placement={placement!r}"
            return error_response(404, "not_found", f"no ad-load cap for {scope}")
        return [cap.__dict__ for cap in traffic.ad_load_caps()]

    return router
