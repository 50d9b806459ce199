"""The HTTP API's request and response bodies (pydantic), mirroring adrank.orchestrator.request."""

from __future__ import annotations

from typing import Union

from pydantic import BaseModel, ConfigDict, Field

FeatureValue = Union[str, int, float, list[str], list[int], None]  # noqa: UP007 (pydantic)


class ConstraintsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_per_advertiser: int | None = Field(None, ge=1)
    blocked_categories: list[int] = Field(default_factory=list)
    frequency_cap: int | None = Field(None, ge=1)


class RankRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=128)
    user: dict[str, FeatureValue] = Field(default_factory=dict)
    context: dict[str, FeatureValue] = Field(default_factory=dict)
    candidates: list[int] = Field(min_length=1)
    k: int = Field(ge=1, le=1000)
    region: str | None = Field(None, max_length=64)
    recently_seen: list[int] = Field(default_factory=list, max_length=100_000)
    constraints: ConstraintsBody = Field(default_factory=ConstraintsBody)


class RankedCreativeBody(BaseModel):
    creative_id: int
    campaign_id: int
    advertiser_id: int
    p_ctr: float
    p_cvr: float
    p_neg: float
    ecpm: float
    price: float


class RankResponseBody(BaseModel):
    request_id: str
    model_version: str
    degraded: bool
    unknown_candidates: int
    creatives: list[RankedCreativeBody]
    timings_ms: dict[str, float]


class ErrorBody(BaseModel):
    error: str
    detail: str
