"""The work of a rank request once its body validated, shared by every transport: the HTTP
route (:mod:`adrank.service.app`), its lean twin (:mod:`adrank.service.lean_rank`) and gRPC
(:mod:`adrank.service.grpc_server`).

Glossary: a *refusal* is an answer other than a ranking that the request's content decides
after its body validated: too many candidates (HTTP 413, gRPC RESOURCE_EXHAUSTED), or a value
the schema's field or a limit cannot take (HTTP 422, gRPC INVALID_ARGUMENT), each issue's
``loc`` naming the field (``("body", "user", "age")``).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from adrank.orchestrator.request import RankRequest, RankResponse
from adrank.service.limits import ServiceLimits
from adrank.service.metrics import ServiceMetrics
from adrank.service.request_features import FeatureRules
from adrank.service.schemas import RankRequestBody, rank_request, unique_candidates

# Errors the feature encoding raises for a value it cannot take: the edge's checks should have
# caught it first; if not, it is still the request's fault, so a refusal, never a 500.
ENCODING_ERRORS = (TypeError, ValueError, OverflowError)


class RankingBackend(Protocol):
    """What the service needs of a ranker (``adrank.Ranker`` implements it)."""

    def rank(self, request: RankRequest) -> RankResponse: ...

    def readiness(self) -> tuple[bool, str]: ...


class Refusal(Exception):
    """``status`` 413 (``detail`` says why) or 422 (``issues``: ``loc``, ``msg``, ``type``)."""

    def __init__(
        self, status: int, kind: str, detail: str, issues: Sequence[dict[str, Any]] = ()
    ) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail, self.issues = status, kind, detail, list(issues)


class RankEndpoint:
    """Checks a validated body against the schema and the limits, ranks it, counts it."""

    def __init__(
        self,
        backend: RankingBackend,
        limits: ServiceLimits,
        rules: FeatureRules,
        metrics: ServiceMetrics,
    ) -> None:
        self.backend, self.limits, self.rules, self.metrics = backend, limits, rules, metrics

    def rank(
        self,
        body: RankRequestBody,
        candidates: Sequence[int] | np.ndarray | None = None,
        recently_seen: Sequence[int] | np.ndarray | None = None,
    ) -> tuple[RankResponse, int]:
        """The ranker's response and how many repeated candidate ids were merged.

        ``candidates`` and ``recently_seen``: int64 ids given apart from ``body`` (gRPC's
        typed arrays, which need no per-item validation); default: the body's. Raises
        :class:`Refusal`, or the backend's ``ModelUnavailableError``.
        """
        candidates = body.candidates if candidates is None else candidates
        self.check(body, len(candidates))
        ids, duplicates = unique_candidates(candidates)
        self.metrics.duplicate_candidates.inc(duplicates)
        start = time.perf_counter()
        try:
            response = self.backend.rank(rank_request(body, ids, recently_seen))
        except ENCODING_ERRORS as error:
            message = f"the request's features cannot be encoded: {error}"
            raise Refusal(422, "invalid_request", message, [issue((), message)]) from error
        self.metrics.latency.observe(time.perf_counter() - start)
        for stage, ms in response.timings_ms.items():
            self.metrics.stage_latency.labels(stage).observe(ms / 1e3)
        self.metrics.unknown_candidates.inc(response.unknown_candidates)
        if response.degraded:
            self.metrics.degraded.inc()
        return response, duplicates

    def check(self, body: RankRequestBody, candidate_count: int) -> None:
        """Raises :class:`Refusal` for what the body's schema alone does not bound."""
        limits = self.limits
        rows = body.candidate_rows or []
        count = max(candidate_count, len(rows))
        if count > limits.max_candidates:
            detail = f"candidates has {count} ids; the limit is {limits.max_candidates}"
            raise Refusal(413, "too_many_candidates", detail)
        problems = self.rules.problems({"user": body.user, "context": body.context})
        if rows:
            problems += self.rules.row_problems([row.model_extra or {} for row in rows])
        if (candidate_count > 0) == (body.candidate_rows is not None):
            message = "give candidates (ids) or candidate_rows, one of the two"
            problems.append(issue(("candidates",), message))
        if body.k > limits.max_k:
            problems.append(issue(("k",), f"k must be <= {limits.max_k}", "less_than_equal"))
        if problems:
            raise Refusal(422, "invalid_request", "; ".join(p["msg"] for p in problems), problems)


def issue(where: tuple, message: str, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": ("body", *where), "msg": message, "type": kind}


def bearer_check(header: str | None, token: str) -> int:
    """200 when ``header`` (an ``Authorization`` value) carries ``token``, 401 when it carries
    no bearer token, 403 for a wrong one: :meth:`AccessPolicy.authorize`'s rule, for the
    transports that do not go through FastAPI (compared in constant time)."""
    scheme, _, presented = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return 401
    matches = hmac.compare_digest(
        presented.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8")
    )
    return 200 if matches else 403
