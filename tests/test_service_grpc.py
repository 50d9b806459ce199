"""``adrank.v1.Ranking/Rank`` through a real gRPC channel on loopback, over the real app's
ranker (a real Ranker over an in-process TorchScript model): it ranks as ``POST /v1/rank``
does, refuses what the JSON API refuses with the matching status code and the field named,
follows the token rules, and counts every answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient

from adrank.orchestrator.errors import ModelUnavailableError
from adrank.service.grpc_messages import request_body, value_message
from adrank.service.grpc_server import GrpcServer, RankServicer, rank_stub
from adrank.service.limits import ServiceLimits
from adrank.service.proto import rank_pb2
from adrank.service.schemas import RankRequestBody
from adrank.service.security import AccessPolicy
from service_world import LOCAL, TOKEN, build_world, make_service

LIMITS = ServiceLimits(max_candidates=200, max_body_bytes=16 * 1024)
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("grpc"))


class Served:
    def __init__(self, app: Any, server: GrpcServer, channel: grpc.Channel) -> None:
        self.app, self.server, self.rank = app, server, rank_stub(channel)
        self.http = TestClient(app, base_url=LOCAL)

    def metrics(self, headers: dict[str, str] | None = None) -> str:
        return self.http.get("/metrics", headers=headers or {}).text


@pytest.fixture
def served(world, request) -> Iterator[Served]:
    access = getattr(request, "param", None) or AccessPolicy()
    app = make_service(world, LIMITS, access).app
    servicer = RankServicer(app.state.rank_endpoint, access, app.state.metrics)
    with (
        GrpcServer(servicer, "127.0.0.1", 0, max_message_bytes=LIMITS.max_body_bytes) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        yield Served(app, server, channel)


def message_of(body: dict[str, Any]) -> rank_pb2.RankRequest:
    """The gRPC twin of a JSON rank body."""
    message = rank_pb2.RankRequest(
        request_id=body["request_id"],
        user={k: value_message(v) for k, v in body.get("user", {}).items()},
        context={k: value_message(v) for k, v in body.get("context", {}).items()},
        candidates=body.get("candidates", []),
        k=body["k"],
    )
    if body.get("region") is not None:
        message.region = body["region"]
    return message


def good(world, **changes: Any) -> rank_pb2.RankRequest:
    return message_of(world.good_body("grpc") | changes)


def test_ranks_as_the_json_api_does(served, world) -> None:
    answer = served.rank(good(world), timeout=30)
    over_http = served.http.post("/v1/rank", json=world.good_body("grpc")).json()
    assert answer.request_id == "grpc"
    assert [c.creative_id for c in answer.creatives] == [
        c["creative_id"] for c in over_http["creatives"]
    ]
    assert len(answer.creatives) == 5
    for ours, theirs in zip(answer.creatives, over_http["creatives"], strict=True):
        assert ours.price == pytest.approx(theirs["price"])
        assert ours.p_ctr == pytest.approx(theirs["p_ctr"])
        assert ours.HasField("p_cvr") == (theirs["p_cvr"] is not None)
        assert not ours.HasField("slot")  # no feed in the request
        assert not ours.HasField("propensity")  # no exploration
    assert not answer.arms  # no experiments
    assert answer.model_version == over_http["model_version"]
    assert set(answer.timings_ms) == set(over_http["timings_ms"])
    assert 'adrank_grpc_responses_total{code="OK",method="Rank"} 1.0' in served.metrics()


EXPERIMENTS = {
    "experiment": [
        {
            "name": "explore",
            "layer": "selection",
            "salt": "grpc-1",
            "arm": [{"name": "softmax", "share": 1.0, "temperature": 0.2, "pool": 6}],
        },
        {
            "name": "penalty",
            "layer": "scoring",
            "salt": "grpc-2",
            "arm": [{"name": "a", "share": 1.0}],
        },
    ]
}


def test_arms_and_propensities_are_answered_as_over_http(world) -> None:
    from adrank.experiments.assignment import ExperimentSet
    from adrank.experiments.serving import ExperimentRanker
    from adrank.service.app import create_app

    backend = ExperimentRanker(world.ranker, ExperimentSet.from_mapping(EXPERIMENTS))
    app = create_app(backend, LIMITS, schema=world.schema)
    servicer = RankServicer(app.state.rank_endpoint, AccessPolicy(), app.state.metrics)
    with (
        GrpcServer(servicer, "127.0.0.1", 0) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        answer = rank_stub(channel)(good(world), timeout=30)
    over_http = TestClient(app, base_url=LOCAL).post("/v1/rank", json=world.good_body("grpc"))
    theirs = over_http.json()
    assert dict(answer.arms) == theirs["arms"] == {"explore": "softmax", "penalty": "a"}
    assert answer.creatives
    # The same request id draws the same slate: the same creatives, the same propensities.
    assert [c.creative_id for c in answer.creatives] == [
        c["creative_id"] for c in theirs["creatives"]
    ]
    propensities = [c.propensity for c in answer.creatives]
    assert all(c.HasField("propensity") for c in answer.creatives)
    assert propensities == pytest.approx([c["propensity"] for c in theirs["creatives"]])
    assert all(0 < p <= 1 for p in propensities)


def test_a_feed_places_the_ads_in_slots(served, world) -> None:
    message = good(world)
    message.feed.values.extend([1.0, 0.5, 0.2, 0.1, 0.05, 0.01])
    answer = served.rank(message, timeout=30)
    assert answer.creatives
    assert all(c.HasField("slot") for c in answer.creatives)


def test_repeated_candidates_are_merged_and_counted(served, world) -> None:
    ids = world.good_body()["candidates"]
    answer = served.rank(good(world, candidates=ids + ids[:4]), timeout=30)
    assert answer.duplicate_candidates == 4
    assert len({c.creative_id for c in answer.creatives}) == len(answer.creatives)


def feature(**value: Any) -> rank_pb2.FeatureValue:
    return rank_pb2.FeatureValue(**value)


def with_user(world, name: str, value: rank_pb2.FeatureValue) -> rank_pb2.RankRequest:
    message = good(world)
    message.user[name].CopyFrom(value)
    return message


# (case, message builder, status code, text the details must hold)
REFUSALS = [
    ("k zero", lambda w: good(w, k=0), Code.INVALID_ARGUMENT, "k"),
    ("k over max_k", lambda w: good(w, k=1001), Code.INVALID_ARGUMENT, "k"),
    ("no request_id", lambda w: good(w, request_id=""), Code.INVALID_ARGUMENT, "request_id"),
    ("request_id too long", lambda w: good(w, request_id="r" * 129), Code.INVALID_ARGUMENT, "r"),
    ("region too long", lambda w: good(w, region="U" * 65), Code.INVALID_ARGUMENT, "region"),
    (
        "categorical float",
        lambda w: with_user(w, "user_id", feature(number_value=1.5)),
        Code.INVALID_ARGUMENT,
        "user.user_id",
    ),
    (
        "categorical list",
        lambda w: with_user(w, "user_id", value_message([1, 2])),
        Code.INVALID_ARGUMENT,
        "user.user_id",
    ),
    (
        "numeric string",
        lambda w: with_user(w, "watch_minutes", feature(string_value="x")),
        Code.INVALID_ARGUMENT,
        "user.watch_minutes",
    ),
    (
        "numeric NaN",
        lambda w: with_user(w, "watch_minutes", feature(number_value=float("nan"))),
        Code.INVALID_ARGUMENT,
        "user.watch_minutes",
    ),
    (
        "numeric infinity",
        lambda w: with_user(w, "watch_minutes", feature(number_value=float("inf"))),
        Code.INVALID_ARGUMENT,
        "user.watch_minutes",
    ),
    (
        "multi-valued scalar",
        lambda w: with_user(w, "interests", feature(string_value="music")),
        Code.INVALID_ARGUMENT,
        "user.interests",
    ),
    (
        "feature string too long",
        lambda w: with_user(w, "country", feature(string_value="U" * 257)),
        Code.INVALID_ARGUMENT,
        "user.country",
    ),
    ("no candidates", lambda w: good(w, candidates=[]), Code.INVALID_ARGUMENT, "candidates"),
    (
        "max_per_advertiser 0",
        lambda w: constrained(w, max_per_advertiser=0),
        Code.INVALID_ARGUMENT,
        "constraints.max_per_advertiser",
    ),
    ("empty feed", lambda w: fed(w), Code.INVALID_ARGUMENT, "feed"),
    ("NaN in the feed", lambda w: fed(w, float("nan")), Code.INVALID_ARGUMENT, "feed.values[0]"),
    (
        "too many candidates",
        lambda w: good(w, candidates=list(range(1, 202))),
        Code.RESOURCE_EXHAUSTED,
        "limit is 200",
    ),
    (
        "message over max_body_bytes",
        lambda w: good(w, candidates=list(range(10**12, 10**12 + 3000))),
        Code.RESOURCE_EXHAUSTED,
        "",
    ),
]


def constrained(world, **fields: Any) -> rank_pb2.RankRequest:
    message = good(world)
    message.constraints.CopyFrom(rank_pb2.Constraints(**fields))
    return message


def fed(world, *values: float) -> rank_pb2.RankRequest:
    message = good(world)
    message.feed.SetInParent()
    message.feed.values.extend(values)
    return message


@pytest.mark.parametrize(
    ("case", "build", "code", "named"), REFUSALS, ids=[case[0] for case in REFUSALS]
)
def test_refused_like_the_json_api(served, world, case, build, code, named) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        served.rank(build(world), timeout=30)
    assert raised.value.code() == code, raised.value.details()
    assert named in raised.value.details()
    assert served.rank(good(world), timeout=30).creatives  # still ranks


def test_bytes_that_are_not_a_message_are_invalid(served, world) -> None:
    with grpc.insecure_channel(served.server.target) as raw:
        call = raw.unary_unary("/adrank.v1.Ranking/Rank")  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as raised:
            call(b"\xff\xff\xff\xff", timeout=30)
        assert raised.value.code() == Code.INVALID_ARGUMENT
        assert "not an adrank.v1.RankRequest" in raised.value.details()
        # A string field that is not UTF-8 is not a message either.
        bad_text = b"\x0a\x02\xed\xa0"  # request_id (field 1): 2 bytes of a lone surrogate
        with pytest.raises(grpc.RpcError) as raised:
            call(bad_text, timeout=30)
        assert raised.value.code() == Code.INVALID_ARGUMENT
    metrics = served.metrics()
    assert 'adrank_grpc_responses_total{code="INVALID_ARGUMENT",method="Rank"} 2.0' in metrics
    assert 'adrank_errors_total{kind="invalid_message"} 2.0' in metrics


class DownModel:
    def rank(self, request):
        raise ModelUnavailableError("Triton did not answer within 50 ms (deadline)")

    def readiness(self):
        return False, "down"


def test_a_model_that_does_not_answer_is_unavailable() -> None:
    from adrank.service.app import create_app

    app = create_app(DownModel())
    servicer = RankServicer(app.state.rank_endpoint, AccessPolicy(), app.state.metrics)
    with GrpcServer(servicer) as server, grpc.insecure_channel(server.target) as channel:
        message = message_of({"request_id": "r", "candidates": [1, 2], "k": 1})
        with pytest.raises(grpc.RpcError) as raised:
            rank_stub(channel)(message, timeout=30)
    assert raised.value.code() == Code.UNAVAILABLE
    assert "deadline" in raised.value.details()


GUARDED = AccessPolicy(token=TOKEN, guard_rank=True)


@pytest.mark.parametrize("served", [GUARDED], indirect=True)
def test_a_guarded_rank_needs_the_token(served, world) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        served.rank(good(world), timeout=30)
    assert raised.value.code() == Code.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as raised:
        served.rank(good(world), metadata=[("authorization", "Bearer " + "x" * 26)], timeout=30)
    assert raised.value.code() == Code.PERMISSION_DENIED
    answer = served.rank(good(world), metadata=[("authorization", f"Bearer {TOKEN}")], timeout=30)
    assert len(answer.creatives) == 5
    metrics = served.metrics({"authorization": f"Bearer {TOKEN}"})
    assert 'adrank_errors_total{kind="unauthorized"} 1.0' in metrics
    assert 'adrank_errors_total{kind="forbidden"} 1.0' in metrics


def test_an_open_rank_ignores_tokens(world) -> None:
    access = AccessPolicy(token=TOKEN)  # control plane guarded, ranking open
    app = make_service(world, LIMITS, access).app
    servicer = RankServicer(app.state.rank_endpoint, access, app.state.metrics)
    with GrpcServer(servicer) as server, grpc.insecure_channel(server.target) as channel:
        assert rank_stub(channel)(good(world), timeout=30).creatives


def test_candidate_rows_become_the_json_apis_body() -> None:
    row = rank_pb2.CandidateRow(
        creative_id=7, bid=1.5, objective="CPC", campaign_id=70, regions=["US", "FR"]
    )
    row.features["category_text"].string_value = "games"
    row.features["size"].CopyFrom(rank_pb2.FeatureValue())  # null
    message = rank_pb2.RankRequest(request_id="r", k=1, candidate_rows=[row])
    body, candidates, _ = request_body(message)
    assert len(candidates) == 0
    expected = RankRequestBody.model_validate(
        {
            "request_id": "r",
            "k": 1,
            "candidate_rows": [
                {
                    "creative_id": 7,
                    "bid": 1.5,
                    "objective": "CPC",
                    "campaign_id": 70,
                    "regions": ["US", "FR"],
                    "category_text": "games",
                    "size": None,
                }
            ],
        }
    )
    assert body == expected


def test_a_row_feature_named_like_a_column_is_refused() -> None:
    from adrank.service.rank_endpoint import Refusal

    row = rank_pb2.CandidateRow(creative_id=7, bid=1.5, objective="CPC")
    row.features["bid"].number_value = 2.0
    with pytest.raises(Refusal, match="features must not repeat a column of the row: bid"):
        request_body(rank_pb2.RankRequest(request_id="r", k=1, candidate_rows=[row]))


def test_a_bad_row_names_its_index(served) -> None:
    row = rank_pb2.CandidateRow(creative_id=7, bid=-1.0, objective="CPC")
    with pytest.raises(grpc.RpcError) as raised:
        served.rank(rank_pb2.RankRequest(request_id="r", k=1, candidate_rows=[row]), timeout=30)
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert "candidate_rows[0].bid" in raised.value.details()


@pytest.mark.parametrize(
    ("value", "message"),
    [(True, "must not be a bool"), ({"a": 1}, "must be an int, float, str, list or None")],
)
def test_value_message_refuses_what_the_format_cannot_carry(value, message) -> None:
    with pytest.raises(TypeError, match=message):
        value_message(value)


def test_a_port_in_use_is_an_error(served) -> None:
    servicer = RankServicer(
        served.app.state.rank_endpoint, AccessPolicy(), served.app.state.metrics
    )
    with pytest.raises(OSError, match="cannot bind gRPC"):
        GrpcServer(servicer, "127.0.0.1", served.server.port)


def test_the_generated_code_is_the_published_protos() -> None:
    """Every message field of ``rank.proto`` (name and number) is in the committed gencode, and
    nothing else: a changed .proto without regenerated code fails here."""
    import re
    from pathlib import Path

    text = Path(rank_pb2.__file__).with_name("rank.proto").read_text()
    field = re.compile(r"^\s+(?:optional |repeated )?[\w.<>, ]+ (\w+) = (\d+);", re.MULTILINE)
    declared = {
        name: dict((f, int(n)) for f, n in field.findall(body))
        for name, body in re.findall(r"^message (\w+) \{(.*?)^\}", text, re.MULTILINE | re.DOTALL)
    }
    generated = {
        name: {f.name: f.number for f in message.fields}
        for name, message in rank_pb2.DESCRIPTOR.message_types_by_name.items()
    }
    assert declared == generated
    service = rank_pb2.DESCRIPTOR.services_by_name["Ranking"]
    assert [m.name for m in service.methods] == ["Rank"]
    assert "rpc Rank(RankRequest) returns (RankResponse);" in text


def test_adrank_serve_builds_the_grpc_server_beside_the_app(served, world) -> None:
    import argparse

    from adrank.commands import serve

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(["--grpc-port", "0"])
    assert args.grpc_port == 0
    with (
        serve.grpc_server(served.app, AccessPolicy(), args) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        assert server.target.startswith("127.0.0.1:")
        assert len(rank_stub(channel)(good(world), timeout=30).creatives) == 5
    args.grpc_port = served.server.port  # in use
    with pytest.raises(SystemExit, match=r"adrank serve: cannot bind gRPC to 127\.0\.0\.1:"):
        serve.grpc_server(served.app, AccessPolicy(), args)
    assert parser.parse_args([]).grpc_port is None  # no gRPC unless asked
