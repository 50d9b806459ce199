"""``adrank.v1.Ranking/Rank`` over gRPC, beside the JSON API: :class:`GrpcServer`.

Glossary: a *status code* is gRPC's answer kind (``OK``, ``INVALID_ARGUMENT``, ...); the
*details* are its message, which names the field as a 422's ``loc`` does over HTTP.

The same :class:`~adrank.service.rank_endpoint.RankEndpoint` as ``POST /v1/rank`` (same
ranker, limits, feature rules and metrics registry), so a request is refused or ranked
alike on both transports:

    INVALID_ARGUMENT    the message does not parse, or a value the JSON API answers 422 for
    RESOURCE_EXHAUSTED  too many candidates (HTTP 413), or a message over max_body_bytes
    UNAVAILABLE         the model did not answer in time (HTTP 503)
    UNAUTHENTICATED     no ``authorization: Bearer <token>`` metadata where ranking is guarded
    PERMISSION_DENIED   a wrong token (HTTP 403)
    INTERNAL            a bug; the details say nothing more (HTTP 500)

No Host check: a browser page cannot speak gRPC (it needs HTTP/2 trailers), so DNS
rebinding, the reason for HTTP's Host allow-list, does not reach this port; the token rules
are HTTP's. Each answer is counted in ``adrank_grpc_responses_total{method,code}`` and each
error in ``adrank_errors_total{kind}``.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import grpc

from adrank.orchestrator.errors import ModelUnavailableError
from adrank.service.grpc_messages import describe, request_body, response_message
from adrank.service.metrics import ServiceMetrics
from adrank.service.proto import rank_pb2
from adrank.service.rank_endpoint import RankEndpoint, Refusal, bearer_check
from adrank.service.security import AccessPolicy

SERVICE = "adrank.v1.Ranking"
RANK_METHOD = f"/{SERVICE}/Rank"
logger = logging.getLogger(__name__)


class Answer(Exception):
    """An error answer: its status code, details and the error kind the metrics count."""

    def __init__(self, code: grpc.StatusCode, kind: str, details: str) -> None:
        super().__init__(details)
        self.code, self.kind, self.details = code, kind, details


class RankServicer:
    """The ``Rank`` method over ``endpoint``, under ``access``'s token rules."""

    def __init__(self, endpoint: RankEndpoint, access: AccessPolicy, metrics: ServiceMetrics):
        self.endpoint, self.metrics = endpoint, metrics
        guarded = access.guard_rank and access.token is not None
        self.token = access.token if guarded else None

    def rank(self, data: bytes, context: grpc.ServicerContext) -> rank_pb2.RankResponse:
        try:
            answer = self._rank(data, context)
        except Answer as error:
            self.metrics.count_grpc("Rank", error.code.name, error.kind)
            context.abort(error.code, error.details)
        except Exception:
            logger.exception("gRPC Rank failed")
            self.metrics.count_grpc("Rank", "INTERNAL", "internal")
            context.abort(grpc.StatusCode.INTERNAL, "internal error; see the service's log")
        self.metrics.count_grpc("Rank", "OK", None)
        return answer

    def _rank(self, data: bytes, context: grpc.ServicerContext) -> rank_pb2.RankResponse:
        if self.token is not None:
            metadata = dict(context.invocation_metadata())
            status = bearer_check(metadata.get("authorization"), self.token)
            if status == 401:
                details = "Rank needs the metadata authorization: Bearer <token>"
                raise Answer(grpc.StatusCode.UNAUTHENTICATED, "unauthorized", details)
            if status == 403:
                details = "the bearer token is not the service's token"
                raise Answer(grpc.StatusCode.PERMISSION_DENIED, "forbidden", details)
        try:
            message = rank_pb2.RankRequest.FromString(data)
        except Exception:  # protobuf's DecodeError, or invalid UTF-8 in a string field
            details = "the request is not an adrank.v1.RankRequest message"
            raise Answer(grpc.StatusCode.INVALID_ARGUMENT, "invalid_message", details) from None
        try:
            body, candidates, seen = request_body(message)
            response, duplicates = self.endpoint.rank(body, candidates, seen)
        except Refusal as refusal:
            if refusal.status == 413:
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
                raise Answer(code, refusal.kind, refusal.detail) from None
            details = describe(refusal.issues)
            raise Answer(grpc.StatusCode.INVALID_ARGUMENT, refusal.kind, details) from None
        except ModelUnavailableError as error:
            raise Answer(grpc.StatusCode.UNAVAILABLE, "model_unavailable", str(error)) from None
        return response_message(response, duplicates)


class GrpcServer:
    """``servicer`` on ``host:port`` (0: a free port, see :attr:`port`); a context manager.

    ``max_message_bytes``: the largest request accepted (larger: RESOURCE_EXHAUSTED), the
    JSON API's ``max_body_bytes``. ``workers``: threads answering calls.
    """

    def __init__(
        self,
        servicer: RankServicer,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_message_bytes: int = 2 * 1024 * 1024,
        workers: int = 8,
    ) -> None:
        self.host = host
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="adrank-grpc"),
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.so_reuseport", 0),  # a port in use is an error, not shared
            ],
        )
        handler = grpc.unary_unary_rpc_method_handler(
            servicer.rank,
            request_deserializer=None,  # parsed in the servicer: a bad message is ours to answer
            response_serializer=rank_pb2.RankResponse.SerializeToString,
        )
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Rank": handler}),)
        )
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self._server.add_insecure_port(address)
        except RuntimeError as error:
            raise OSError(f"cannot bind gRPC to {address}: {error}") from None
        if self.port == 0:
            raise OSError(f"cannot bind gRPC to {address}")

    @property
    def target(self) -> str:
        """The address a client dials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> GrpcServer:
        self._server.start()
        return self

    def stop(self, grace_s: float = 1.0) -> None:
        self._server.stop(grace_s).wait()

    def __enter__(self) -> GrpcServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def rank_stub(channel: grpc.Channel) -> Any:
    """A callable ``(RankRequest, metadata=..., timeout=...) -> RankResponse`` on ``channel``."""
    return channel.unary_unary(
        RANK_METHOD,
        request_serializer=rank_pb2.RankRequest.SerializeToString,
        response_deserializer=rank_pb2.RankResponse.FromString,
    )
