"""The gRPC format (``proto/rank.proto``, package ``adrank.v1``) and its conversions, in one
place, as :mod:`adrank.service.schemas` is for JSON.

Glossary: a *message* is a protobuf object of ``rank_pb2``; a *body* the validated
:class:`~adrank.service.schemas.RankRequestBody` that both transports rank from.

:func:`request_body` turns a ``RankRequest`` message into a body and its int64 id arrays
(validated by the same model as JSON, so a value the JSON API refuses is refused here too,
naming the same field); :func:`response_message` a :class:`RankResponse` into the answer;
:func:`request_message` a Python API :class:`RankRequest` into the message a client sends.
Ids travel as packed int64 (proto's type is the int64 check), strings as proto3 ``string``
(valid UTF-8 by the wire format), a feature value as a ``oneof`` (none set: null).

The Python code ``proto/rank_pb2.py`` is generated from ``proto/rank.proto`` and committed, so
that serving needs only the protobuf runtime (tritonclient's dependency); regenerate it after
changing the ``.proto`` with grpcio-tools (any release whose protoc writes gencode no newer
than the protobuf runtime installed, 1.75 for protobuf 6.31+)::

    python -m grpc_tools.protoc -I python/adrank/service/proto \\
        --python_out=python/adrank/service/proto --pyi_out=python/adrank/service/proto rank.proto
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import ValidationError

from adrank.orchestrator.request import RankRequest, RankResponse
from adrank.service.proto import rank_pb2
from adrank.service.rank_endpoint import Refusal, issue
from adrank.service.schemas import (
    MAX_RECENTLY_SEEN,
    RankedCreativeBody,
    RankRequestBody,
)

ROW_COLUMNS = ("advertiser_id", "campaign_id", "category", "target_cpa", "status")
_CREATIVE_COLUMNS = tuple(  # the optional ones (unset where the response has none) apart
    name for name in RankedCreativeBody.model_fields if name not in ("slot", "propensity")
)


def request_body(message: rank_pb2.RankRequest) -> tuple[RankRequestBody, np.ndarray, np.ndarray]:
    """The validated body, its candidate ids and its recently seen ids; raises :class:`Refusal`
    (422) naming the field of a value the JSON API would refuse."""
    if len(message.recently_seen) > MAX_RECENTLY_SEEN:
        message_text = f"recently_seen has at most {MAX_RECENTLY_SEEN} ids"
        raise Refusal(
            422, "invalid_request", message_text, [issue(("recently_seen",), message_text)]
        )
    fields: dict[str, Any] = {
        "request_id": message.request_id,
        "user": _features(message.user),
        "context": _features(message.context),
        "k": message.k,
    }
    if message.HasField("region"):
        fields["region"] = message.region
    if message.HasField("constraints"):
        fields["constraints"] = _optional(
            message.constraints,
            ("max_per_advertiser", "frequency_cap"),
            blocked_categories=list(message.constraints.blocked_categories),
        )
    if message.HasField("feed"):
        fields["feed"] = _optional(message.feed, ("slots",), values=list(message.feed.values))
    if message.candidate_rows:
        fields["candidate_rows"] = [_row(row, i) for i, row in enumerate(message.candidate_rows)]
    try:
        body = RankRequestBody.model_validate(fields)
    except ValidationError as error:
        issues = [issue(tuple(e["loc"]), e["msg"], e["type"]) for e in error.errors()]
        raise Refusal(422, "invalid_request", describe(issues), issues) from None
    candidates = np.fromiter(message.candidates, dtype=np.int64, count=len(message.candidates))
    seen = np.fromiter(message.recently_seen, dtype=np.int64, count=len(message.recently_seen))
    return body, candidates, seen


def describe(issues: list[dict[str, Any]]) -> str:
    """``candidate_rows[0].bid: Input should be ...; k: ...``: each issue's field, then why."""
    return "; ".join(f"{field_path(entry['loc'])}: {entry['msg']}" for entry in issues)


def field_path(loc: tuple | list) -> str:
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "request"


def _features(values: Mapping[str, rank_pb2.FeatureValue]) -> dict[str, Any]:
    return {name: feature_value(value) for name, value in values.items()}


def feature_value(value: rank_pb2.FeatureValue) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "int_list":
        return list(value.int_list.values)
    if kind == "string_list":
        return list(value.string_list.values)
    return getattr(value, kind)


def _optional(message: Any, names: tuple[str, ...], **given: Any) -> dict[str, Any]:
    return given | {name: getattr(message, name) for name in names if message.HasField(name)}


def _row(row: rank_pb2.CandidateRow, index: int) -> dict[str, Any]:
    columns = _optional(
        row, ROW_COLUMNS, creative_id=row.creative_id, bid=row.bid, objective=row.objective
    )
    if row.regions:
        columns["regions"] = list(row.regions)
    clashes = sorted(set(row.features) & (set(columns) | {"regions"}))
    if clashes:
        text = f"features must not repeat a column of the row: {', '.join(clashes)}"
        where = ("candidate_rows", index, "features", clashes[0])
        raise Refusal(422, "invalid_request", text, [issue(where, text)])
    return columns | _features(row.features)


def response_message(response: RankResponse, duplicate_candidates: int) -> rank_pb2.RankResponse:
    """The answer: one ``RankedCreative`` per chosen creative, in rank order; a rate of a head
    the model was not trained for, the slot without a feed and the propensity without
    exploration are left unset; ``arms`` is empty without experiments (as JSON leaves it out)."""
    count = len(response)
    columns = {name: _column(getattr(response, name), count) for name in _CREATIVE_COLUMNS}
    columns["slot"] = _column(response.slot, count)
    columns["propensity"] = _column(response.propensity, count)
    names = list(columns)
    creatives = [
        rank_pb2.RankedCreative(**{n: v for n, v in zip(names, row, strict=True) if v is not None})
        for row in zip(*columns.values(), strict=True)
    ]
    return rank_pb2.RankResponse(
        request_id=response.request_id,
        model_version=response.model_version,
        degraded=response.degraded,
        unknown_candidates=response.unknown_candidates,
        duplicate_candidates=duplicate_candidates,
        creatives=creatives,
        timings_ms={name: float(ms) for name, ms in response.timings_ms.items()},
        arms=dict(response.arms),
    )


def _column(values: np.ndarray | None, count: int) -> list[Any]:
    return [None] * count if values is None else values.tolist()


def request_message(request: RankRequest) -> rank_pb2.RankRequest:
    """The message a client sends for ``request`` (without candidate rows)."""
    constraints = request.constraints
    message = rank_pb2.RankRequest(
        request_id=request.request_id,
        user={name: value_message(value) for name, value in request.user.items()},
        context={name: value_message(value) for name, value in request.context.items()},
        candidates=np.asarray(request.candidates, dtype=np.int64).tolist(),
        k=request.k,
        recently_seen=np.asarray(request.recently_seen, dtype=np.int64).tolist(),
        constraints=rank_pb2.Constraints(
            max_per_advertiser=constraints.max_per_advertiser,
            blocked_categories=list(constraints.blocked_categories),
            frequency_cap=constraints.frequency_cap,
        ),
    )
    if request.region is not None:
        message.region = request.region
    if request.feed is not None:
        message.feed.values.extend(request.feed.values.tolist())
        if request.feed.slots is not None:
            message.feed.slots = request.feed.slots
    return message


def value_message(value: Any) -> rank_pb2.FeatureValue:
    """A Python feature value (int, float, str, a list of ints or of strings, None) as a
    message; raises TypeError for anything else."""
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()
    if value is None:
        return rank_pb2.FeatureValue()
    if isinstance(value, bool):
        raise TypeError("a feature value must not be a bool")
    if isinstance(value, int):
        return rank_pb2.FeatureValue(int_value=value)
    if isinstance(value, float):
        return rank_pb2.FeatureValue(number_value=value)
    if isinstance(value, str):
        return rank_pb2.FeatureValue(string_value=value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value) and value:
        return rank_pb2.FeatureValue(string_list=rank_pb2.StringList(values=list(value)))
    if isinstance(value, (list, tuple)) and not any(isinstance(v, (bool, str)) for v in value):
        return rank_pb2.FeatureValue(int_list=rank_pb2.Int64List(values=list(value)))
    raise TypeError(f"a feature value must be an int, float, str, list or None, got {value!r}")
