"""The HTTP API's JSON format, in one place: bodies (pydantic) and their conversions.

Glossary: ``C`` candidate creatives; a *feature value* is one entry of ``user`` or ``context``.

Types are strict (a bool is not an integer, a string is not a number), every id fits in int64,
every number is finite and every string is valid Unicode (no lone surrogates) with a bounded
length, so a body that validates can be encoded, ranked and echoed back without error.
:func:`rank_request` turns a body into the Python API's :class:`RankRequest`,
:func:`rank_response_body` a :class:`RankResponse` into the JSON answer, and
:func:`rank_request_json` a :class:`RankRequest` into the body a client sends.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from adrank.orchestrator.request import Constraints, OrganicFeed, RankRequest, RankResponse

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_REQUEST_ID_LENGTH = 128
MAX_NAME_LENGTH = 64  # regions, placements
MAX_RECENTLY_SEEN = 100_000
MAX_FEED_SLOTS = 1000
MAX_BLOCKED_CATEGORIES = 1000
MAX_FEATURE_STRING = 4096  # the schema's ceiling; ServiceLimits.max_string_length tightens it
MAX_FEATURE_VALUES = 100_000  # likewise ServiceLimits.max_feature_values


def _valid_unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (it holds a lone surrogate)") from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Id = Int64
Finite = Annotated[float, Field(allow_inf_nan=False)]
FeatureString = Annotated[Text, Field(max_length=MAX_FEATURE_STRING)]
FeatureName = Annotated[Text, Field(min_length=1, max_length=MAX_FEATURE_STRING)]
FEATURE_VALUE_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
        {"type": "number"},
        {"type": "string", "maxLength": MAX_FEATURE_STRING},
        {
            "type": "array",
            "items": {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
            "maxItems": MAX_FEATURE_VALUES,
        },
        {
            "type": "array",
            "items": {"type": "string", "maxLength": MAX_FEATURE_STRING},
            "maxItems": MAX_FEATURE_VALUES,
        },
        {"type": "null"},
    ]
}


def _feature_value(value: Any) -> Any:
    """One message for a bad feature value, instead of one per member of a union."""
    if value is None or _is_int64(value) or _is_finite(value) or _is_text(value):
        return value
    bounded_list = isinstance(value, list) and len(value) <= MAX_FEATURE_VALUES
    if bounded_list and (all(map(_is_int64, value)) or all(map(_is_text, value))):
        return value
    raise ValueError(
        "must be an int64 integer, a finite number, a valid Unicode string, a list of integers "
        "or of strings, or null"
    )


def _is_int64(value: Any) -> bool:
    return type(value) is int and INT64_MIN <= value <= INT64_MAX


def _is_finite(value: Any) -> bool:
    return type(value) is float and math.isfinite(value)


def _is_text(value: Any) -> bool:
    if type(value) is not str or len(value) > MAX_FEATURE_STRING:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


FeatureValue = Annotated[
    Any, PlainValidator(_feature_value), WithJsonSchema(FEATURE_VALUE_SCHEMA, mode="validation")
]
Features = Annotated[dict[FeatureName, FeatureValue], Field(max_length=MAX_FEATURE_VALUES)]

STRICT = ConfigDict(extra="forbid", strict=True)


class ConstraintsBody(BaseModel):
    model_config = STRICT

    max_per_advertiser: Annotated[int, Field(ge=1, le=INT64_MAX)] | None = None
    blocked_categories: list[Int64] = Field(default_factory=list, max_length=MAX_BLOCKED_CATEGORIES)
    frequency_cap: Annotated[int, Field(ge=1, le=INT64_MAX)] | None = None


class FeedBody(BaseModel):
    """The organic feed the ads go into: its items' values in feed order, or only its number of
    slots (every organic item then counts 0). Each ad's slot comes back in the answer."""

    model_config = STRICT

    values: list[Finite] = Field(default_factory=list, max_length=MAX_FEED_SLOTS)
    slots: Annotated[int, Field(ge=0, le=MAX_FEED_SLOTS)] | None = None

    @model_validator(mode="after")
    def _values_or_slots(self) -> FeedBody:
        if not self.values and self.slots is None:
            raise ValueError("feed needs values or slots")
        return self


class CandidateRowBody(BaseModel):
    """A candidate given with its features (:mod:`adrank.orchestrator.inline_candidates`): the
    columns below, and raw feature values by column name (checked against the schema)."""

    model_config = ConfigDict(extra="allow", strict=True)

    creative_id: Id
    bid: Finite = Field(ge=0)
    objective: Literal["CPM", "CPC", "OCPM"]
    advertiser_id: Id | None = None
    campaign_id: Id | None = None
    category: Id | None = None
    target_cpa: Finite | None = Field(None, ge=0)
    regions: list[Annotated[Text, Field(max_length=MAX_NAME_LENGTH)]] | None = Field(
        None, max_length=64
    )
    status: Literal["active", "paused"] | None = None

    @model_validator(mode="after")
    def _feature_values(self) -> CandidateRowBody:
        for name, value in (self.model_extra or {}).items():
            _feature_value(value)
            if not _is_text(name):
                raise ValueError("feature names must be valid Unicode")
        return self

    def columns(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class RankRequestBody(BaseModel):
    """``POST /v1/rank``. Feature values: an integer or a string for a categorical feature,
    a list of them for a multi-valued one, a finite number for a numeric one, or null."""

    model_config = STRICT

    request_id: Text = Field(min_length=1, max_length=MAX_REQUEST_ID_LENGTH)
    user: Features = Field(default_factory=dict)
    context: Features = Field(default_factory=dict)
    candidates: list[Id] = Field(
        default_factory=list,
        description="creative ids to join to the catalog; or give candidate_rows",
    )
    k: int = Field(ge=1, le=INT64_MAX, description="at most ServiceLimits.max_k (1000)")
    region: Text | None = Field(None, max_length=MAX_NAME_LENGTH)
    recently_seen: list[Id] = Field(default_factory=list, max_length=MAX_RECENTLY_SEEN)
    constraints: ConstraintsBody = Field(default_factory=ConstraintsBody)
    feed: FeedBody | None = None
    candidate_rows: list[CandidateRowBody] | None = Field(
        None,
        min_length=1,
        description="candidates with their features, for a model that "
        "has no catalog (instead of candidates)",
    )


class RankedCreativeBody(BaseModel):
    creative_id: int
    campaign_id: int
    advertiser_id: int
    p_ctr: float
    p_cvr: float | None = Field(description="null when the model has no conversion head")
    p_neg: float | None = Field(description="null when the model has no negative-feedback head")
    ecpm: float
    price: float
    slot: int | None = Field(None, description="the ad's slot in the request's feed, if given")
    propensity: float | None = Field(
        None, description="with exploration: the probability it was drawn in its slot"
    )


class RankResponseBody(BaseModel):
    request_id: str
    model_version: str
    degraded: bool
    unknown_candidates: int
    duplicate_candidates: int = 0
    creatives: list[RankedCreativeBody]
    timings_ms: dict[str, float]
    arms: dict[str, str] | None = Field(None, description="experiment -> arm, when configured")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer but a 422: a stable ``error`` kind and a sentence."""

    error: str
    detail: str


class ValidationIssue(BaseModel):
    loc: list[Union[str, int]]  # noqa: UP007
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """A 422: one entry per problem, ``loc`` naming the field (``["body", "user", "age"]``)."""

    detail: list[ValidationIssue]


def unique_candidates(candidates: Any) -> tuple[np.ndarray, int]:
    """The candidate ids with repeats removed (first occurrence kept, order kept) and how many
    repeats there were: a creative is ranked, shown and charged at most once per request."""
    ids = np.asarray(candidates, dtype=np.int64)
    ordered = np.sort(ids)  # repeats are rare: a sort finds there are none (cheaper than unique)
    if not (ordered[1:] == ordered[:-1]).any():
        return ids, 0
    _, first = np.unique(ids, return_index=True)
    return ids[np.sort(first)], len(ids) - len(first)


def rank_request(
    body: RankRequestBody, candidates: np.ndarray, recently_seen: Any = None
) -> RankRequest:
    """The Python API's request for a validated body (``candidates`` already de-duplicated;
    ``recently_seen``: int64 ids given apart from the body, default the body's)."""
    feed = body.feed
    seen = body.recently_seen if recently_seen is None else recently_seen
    return RankRequest(
        request_id=body.request_id,
        user=body.user,
        context=body.context,
        candidates=candidates,
        k=body.k,
        region=body.region,
        recently_seen=np.array(seen, dtype=np.int64),
        constraints=Constraints(
            max_per_advertiser=body.constraints.max_per_advertiser,
            blocked_categories=tuple(body.constraints.blocked_categories),
            frequency_cap=body.constraints.frequency_cap,
        ),
        feed=None if feed is None else OrganicFeed(np.array(feed.values), feed.slots),
        candidate_rows=None if body.candidate_rows is None else _rows_table(body.candidate_rows),
    )


def _rows_table(rows: list[CandidateRowBody]) -> Any:
    """Candidate rows as one Arrow table (a column a row leaves out is null there)."""
    import pyarrow as pa

    return pa.Table.from_pylist([row.columns() for row in rows])


_CREATIVE_COLUMNS = tuple(
    name for name in RankedCreativeBody.model_fields if name not in ("slot", "propensity")
)


def rank_response_body(response: RankResponse, duplicate_candidates: int = 0) -> dict[str, Any]:
    """The JSON answer of ``POST /v1/rank``: one object per chosen creative, in rank order."""
    lists = [_column(getattr(response, name), len(response)) for name in _CREATIVE_COLUMNS]
    slots = _column(response.slot, len(response))
    body = {
        "request_id": response.request_id,
        "model_version": response.model_version,
        "degraded": response.degraded,
        "unknown_candidates": response.unknown_candidates,
        "duplicate_candidates": duplicate_candidates,
        "creatives": [
            {**dict(zip(_CREATIVE_COLUMNS, row, strict=True)), "slot": slot}
            for *row, slot in zip(*lists, slots, strict=True)
        ],
        "timings_ms": response.timings_ms,
    }
    # Experiments (adrank.experiments) add their fields only when configured: other answers
    # keep their form (the route leaves unset fields out).
    if response.arms:
        body["arms"] = dict(response.arms)
    if response.propensity is not None:
        for creative, p in zip(body["creatives"], response.propensity.tolist(), strict=True):
            creative["propensity"] = p
    return body


def _column(values: np.ndarray | None, length: int) -> list[Any]:
    return [None] * length if values is None else values.tolist()


def rank_request_json(request: RankRequest) -> dict[str, Any]:
    """The body a client sends for ``request`` (numpy values become JSON numbers and lists)."""
    constraints = request.constraints
    return {
        "request_id": request.request_id,
        "user": {name: _plain(value) for name, value in request.user.items()},
        "context": {name: _plain(value) for name, value in request.context.items()},
        "candidates": request.candidates.tolist(),
        "k": request.k,
        "region": request.region,
        "recently_seen": request.recently_seen.tolist(),
        "constraints": {
            "max_per_advertiser": constraints.max_per_advertiser,
            "blocked_categories": list(constraints.blocked_categories),
            "frequency_cap": constraints.frequency_cap,
        },
        **(
            {}
            if request.feed is None
            else {"feed": {"values": request.feed.values.tolist(), "slots": request.feed.slots}}
        ),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value
