"""The lean path of ``POST /v1/rank`` (orjson, no framework) against the full FastAPI path:
same answers, same refusals, and the fast JSON parser against the strict one, value for value.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adrank.service.app import create_app
from adrank.service.json_body import UNSURE, parse_fast, parse_json
from adrank.service.lean_rank import LeanRank, candidate_ids
from adrank.service.limits import ServiceLimits
from adrank.service.security import AccessPolicy
from service_world import LOCAL, TOKEN, build_world, make_service

LEAN = {"content-type": "application/json"}
FULL = {"content-type": "application/vnd.adrank+json"}  # JSON to FastAPI, not to the lean path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("lean"))


@pytest.fixture
def service(world):
    return make_service(world, ServiceLimits(max_candidates=40))


@pytest.fixture
def client(service) -> TestClient:
    return TestClient(service.app, base_url=LOCAL, raise_server_exceptions=False)


def paths_taken(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics").text
    found = {"lean": 0.0, "full": 0.0}
    for line in text.splitlines():
        if line.startswith("adrank_rank_path_total{"):
            found[line.split('path="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return found


def without_timings(body: dict) -> dict:
    return {key: value for key, value in body.items() if key != "timings_ms"}


def test_lean_and_full_paths_answer_alike(client, world) -> None:
    data = json.dumps(world.good_body()).encode()
    lean = client.post("/v1/rank", content=data, headers=LEAN)
    full = client.post("/v1/rank", content=data, headers=FULL)
    assert lean.status_code == full.status_code == 200, (lean.text, full.text)
    assert without_timings(lean.json()) == without_timings(full.json())
    assert len(lean.json()["creatives"]) == 5
    assert set(lean.json()["timings_ms"]) == set(full.json()["timings_ms"])
    assert paths_taken(client) == {"lean": 1.0, "full": 1.0}


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"candidates": list(range(1, 42))}, 413, None),  # too many: refused after validation
        ({"k": 5000}, 422, "k"),  # over max_k: likewise
        ({"user": {"user_id": 1.5}}, 422, "user_id"),  # the schema's field kind
        ({"candidates": [], "k": 3}, 422, "candidates"),  # neither ids nor rows
        ({"k": True}, 422, "k"),  # the body model refuses: handed to the full path
        ({"candidates": [2**64]}, 422, "candidates"),  # beyond 64 bits: the strict parser
        ({"candidates": [1, True]}, 422, "candidates"),  # ids numpy would take: the schema's
        ({"candidates": [1, 2.0]}, 422, "candidates"),
        ({"candidates": [1, "2"]}, 422, "candidates"),
        ({"candidates": [1, None]}, 422, "candidates"),
        ({"candidates": [1, [2]]}, 422, "candidates"),
        ({"candidates": [[1], [2]]}, 422, "candidates"),
        ({"candidates": [2**63, -1]}, 422, "candidates"),
        ({"candidates": [1], "candidate_rows": [{"a": 1}]}, 422, None),  # ids and rows
        ({"request_id": "\ud800"}, 422, "request_id"),  # a lone surrogate: likewise
    ],
)
def test_refusals_are_the_full_paths(client, world, change, status, field) -> None:
    data = json.dumps(world.good_body() | change).encode()
    lean = client.post("/v1/rank", content=data, headers=LEAN)
    full = client.post("/v1/rank", content=data, headers=FULL)
    assert lean.status_code == full.status_code == status, lean.text
    assert lean.json() == full.json()
    assert lean.headers["x-error-kind"] == full.headers["x-error-kind"]
    if field is not None:
        assert any(field in entry["loc"] for entry in lean.json()["detail"])


@pytest.mark.parametrize(
    ("ids", "typed"),
    [
        ([5, 3, 5, -(2**63), 2**63 - 1], True),  # repeats and int64's ends: the endpoint's
        ([], False),  # empty: the schema's default and its checks
        ([1, True], False),
        ([True], False),
        ([1, 2.0], False),
        ([1, "2"], False),
        ([1, None], False),
        ([1, [2]], False),
        ([[1], [2]], False),
        ([1, {}], False),
        ([2**63], False),
        ([2**63, -1], False),
    ],
)
def test_candidate_ids_are_typed_only_when_the_schema_would_take_them(ids, typed) -> None:
    body = json.dumps({"candidates": ids, "k": 1}).encode()
    got = candidate_ids(json.loads(body), body)
    if typed:
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, ids)
    else:
        assert got is None


def test_candidate_ids_leave_a_body_with_a_boolean_anywhere_to_the_schema() -> None:
    body = json.dumps({"candidates": [1, 2], "user": {"note": "false"}, "k": 1}).encode()
    assert candidate_ids(json.loads(body), body) is None
    assert candidate_ids([1, 2], b"[1, 2]") is None  # not an object


def test_typed_candidates_rank_as_the_full_path_does(client, world) -> None:
    ids = world.good_body()["candidates"]
    data = json.dumps(world.good_body() | {"candidates": [ids[1], ids[0], ids[1]]}).encode()
    lean = client.post("/v1/rank", content=data, headers=LEAN)
    full = client.post("/v1/rank", content=data, headers=FULL)
    assert lean.status_code == full.status_code == 200, lean.text
    assert without_timings(lean.json()) == without_timings(full.json())
    assert lean.json()["duplicate_candidates"] == 1
    assert paths_taken(client) == {"lean": 1.0, "full": 1.0}


def test_a_guarded_rank_takes_the_lean_path_with_the_token_only(world) -> None:
    access = AccessPolicy(token=TOKEN, guard_rank=True)
    client = TestClient(make_service(world, access=access).app, base_url=LOCAL)
    body = world.good_body()
    assert client.post("/v1/rank", json=body).status_code == 401
    wrong = {"authorization": "Bearer " + "x" * 26}
    assert client.post("/v1/rank", json=body, headers=wrong).status_code == 403
    right = {"authorization": f"Bearer {TOKEN}"}
    assert client.post("/v1/rank", json=body, headers=right).status_code == 200
    metrics = client.get("/metrics", headers=right).text
    assert 'adrank_rank_path_total{path="lean"} 1.0' in metrics
    assert 'adrank_rank_path_total{path="full"} 2.0' in metrics


# JSON documents as a client writes them, with what the strict rules turn on: integers past
# 64 bits, lone surrogates, huge and tiny floats, nesting.
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "é"]),
)
DOCUMENTS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


def strict(data: bytes, depth: int):
    try:
        return ("ok", parse_json(data, depth))
    except json.JSONDecodeError:
        return ("error", None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=DOCUMENTS, depth=st.integers(1, 5), ascii_only=st.booleans())
def test_the_fast_parser_agrees_with_the_strict_one(document, depth, ascii_only) -> None:
    text = json.dumps(document, ensure_ascii=ascii_only, allow_nan=False)
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate as raw bytes: not UTF-8
    fast = parse_fast(data, depth)
    outcome, value = strict(data, depth)
    if fast is not UNSURE:
        assert outcome == "ok"
        assert same(fast, value)
    assert outcome == "error" or same(value, document)


def same(a, b) -> bool:
    """Equal, and of the same types throughout (1 is not 1.0, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'{"k": 18446744073709551616}', "beyond 64 bits"),
        (b'{"k": -9223372036854775809}', "below int64"),
        (b'{"k": "\\ud800"}', "lone surrogate"),
        (b'{"k": NaN}', "NaN"),
        (b'{"k": 1e400}', "overflows a float"),
        (b"[[[[[[]]]]]]", "deeper than allowed"),
        (b'{"k": "\xff"}', "not UTF-8"),
    ],
)
def test_the_fast_parser_leaves_the_strict_rules_to_the_strict_parser(data, why) -> None:
    assert parse_fast(data, 4) is UNSURE, why


def test_many_openers_within_the_depth_still_parse_fast() -> None:
    data = json.dumps({"rows": [{"a": [1]} for _ in range(50)]}).encode()
    assert parse_fast(data, 4) == json.loads(data)


class ThreadNoting:
    """The world's ranker, noting the thread each rank runs on."""

    def __init__(self, ranker) -> None:
        self.ranker, self.threads = ranker, []

    def rank(self, request):
        self.threads.append(threading.current_thread())
        return self.ranker.rank(request)

    def readiness(self):
        return self.ranker.readiness()


async def post_as(app, data: bytes, client: tuple[str, int]) -> tuple[int, dict]:
    """POST /v1/rank straight into the ASGI app from the connection ``client``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/rank",
        "raw_path": b"/v1/rank",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), *[(k.encode(), v.encode()) for k, v in LEAN.items()]],
        "client": client,
        "server": ("127.0.0.1", 80),
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": data, "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_a_sole_connection_ranks_on_the_loop_and_two_on_the_workers(world) -> None:
    backend = ThreadNoting(world.ranker)
    app = create_app(backend, schema=world.schema)
    data = json.dumps(world.good_body()).encode()
    one, two = ("127.0.0.1", 40001), ("127.0.0.1", 40002)

    async def scenario():
        answers = [await post_as(app, data, one) for _ in range(3)]  # builds the stack
        lean = app.middleware_stack
        while not isinstance(lean, LeanRank):
            lean = lean.app
        lean.sole_caller_s = 3600.0  # however slow this machine, "two" comes within it
        answers += [await post_as(app, data, c) for c in (two, one, one)]
        lean.sole_caller_s = 0.0  # "two" asked too long ago: "one" is alone again
        answers += [await post_as(app, data, one)]
        return answers, threading.current_thread()

    answers, loop_thread = asyncio.run(scenario())
    assert [status for status, _ in answers] == [200] * 7
    assert len({json.dumps(without_timings(body)) for _, body in answers}) == 1
    on_loop = [thread is loop_thread for thread in backend.threads]
    assert on_loop == [True, True, True, False, False, False, True]
