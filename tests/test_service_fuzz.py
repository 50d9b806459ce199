"""Schema-driven fuzzing of every route, the safety gate's included: requests drawn from the
app's own OpenAPI document, then bent (a value swapped for a hostile one anywhere in the body,
the path or the query), sent to the real app (a real Ranker over an in-process TorchScript
model). No answer may be a 500, and every status must be one the route declares.

Glossary: a *JSON schema* is an OpenAPI schema object; ``draw`` turns one into a strategy.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adrank.safety import SafetyGate, SafetyRules
from adrank.safety.control import make_safety_router
from adrank.service.limits import ServiceLimits
from adrank.service.security import AccessPolicy
from service_world import LOCAL, NOW, TOKEN, build_world, make_service

EXAMPLES_PER_ROUTE = 200
MAX_ITEMS = 4  # arrays drawn from a schema stay short: the work is in the values
INT64 = 2**63

HOSTILE = st.one_of(
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, 1e308, -1e308, 5e-324, 0, -1, 1]),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "\ud800", "x\udfffy", "\x00", "é" * 300, "1", "NaN", "null"]),
    st.text(max_size=8),
    st.lists(st.integers(-INT64 * 2, INT64 * 2), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.recursive(st.integers(), lambda inner: st.lists(inner, max_size=2), max_leaves=4),
)


# Values a real client sends, beside whatever the schema allows: the service's clock bounds
# event timestamps and its limits bound costs far inside the schema's ranges.
PLAUSIBLE = {
    "timestamp": st.floats(NOW - 3600, NOW),
    "cost": st.floats(0, 100),
    "daily_budget": st.floats(0, 1e6),
}
HOSTS = st.one_of(
    st.just("localhost"),
    st.just("localhost"),
    st.sampled_from(["127.0.0.1:8000", "[::1]:80", "attacker.example", "localhost:x", ""]),
    st.from_regex(r"[a-z0-9.:\[\]-]{0,20}", fullmatch=True),
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def client(world) -> TestClient:
    limits = ServiceLimits(max_candidates=50, max_body_bytes=16 * 1024, max_k=20)
    app = make_service(world, limits, AccessPolicy(token=TOKEN), safety_gate()).app
    return TestClient(app, base_url=LOCAL, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def openapi(client) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def safety_gate() -> SafetyGate:
    """A gate with a rule of each kind in one region (its routes are fuzzed too)."""
    rules = {
        "regions": {
            "DE": {
                "keywords": ["casino"],
                "blocked_categories": [3],
                "banned_advertisers": [9],
                "age_gated_categories": {"4": 2},
            }
        }
    }
    return SafetyGate(SafetyRules.from_mapping(rules), classifier=lambda texts: [0.0] * len(texts))


def operations() -> list[tuple[str, str]]:
    """Every (method, path) of the app, read from a throwaway app's OpenAPI document."""
    from adrank.service.app import create_app
    from adrank.service.control import make_control_router

    class Unused:
        def rank(self, request): ...
        def readiness(self): ...

    control = make_control_router(None, None)
    control.include_router(make_safety_router(safety_gate()))
    app = create_app(Unused(), control=control)
    paths = app.openapi()["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


class Drawer:
    """Strategies for the values of JSON schemas, resolving ``$ref`` in the document."""

    def __init__(self, document: dict[str, Any], world) -> None:
        self.components = document.get("components", {}).get("schemas", {})
        self.world = world

    def draw(self, schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy:
        """Values the schema allows (the bending happens afterwards, in :func:`bend`)."""
        return self._valid(schema, depth)

    def _valid(self, schema: dict[str, Any], depth: int) -> st.SearchStrategy:
        if "$ref" in schema:
            return self.draw(self.components[schema["$ref"].rsplit("/", 1)[-1]], depth)
        for key in ("anyOf", "oneOf"):
            if key in schema and all("type" in s or "$ref" in s for s in schema[key]):
                return st.one_of([self._valid(s, depth) for s in schema[key]])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        if "const" in schema:
            return st.just(schema["const"])
        kind = schema.get("type")
        if kind == "integer":
            low = schema.get("minimum", -(2**63))
            high = schema.get("maximum", 2**63 - 1)
            small = st.integers(max(low, -3), max(min(high, 30), max(low, -3)))
            return st.one_of(small, small, st.integers(low, high))
        if kind == "number":
            return st.floats(
                schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False
            )
        if kind == "string":
            return st.text(max_size=min(schema.get("maxLength", 20), 20)).filter(
                lambda s: len(s) >= schema.get("minLength", 0)
            )
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        if kind == "array" and depth < 4:
            items = self.draw(schema.get("items", {}), depth + 1)
            least = schema.get("minItems", 0)
            return st.lists(items, min_size=least, max_size=max(least, MAX_ITEMS))
        if kind == "object" and depth < 4:
            return self._object(schema, depth)
        return HOSTILE

    def _object(self, schema: dict[str, Any], depth: int) -> st.SearchStrategy:
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        drawn = {
            name: st.one_of(PLAUSIBLE[name], self.draw(sub, depth + 1))
            if name in PLAUSIBLE
            else self.draw(sub, depth + 1)
            for name, sub in properties.items()
        }
        fields = {name: drawn[name] for name in properties if name in required}
        optional = {name: drawn[name] for name in properties if name not in required}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):  # a map such as user features
            return st.dictionaries(st.text(max_size=12), self.draw(extra, depth + 1), max_size=4)
        return st.fixed_dictionaries(fields, optional=optional)


def rank_hints(world) -> st.SearchStrategy:
    """Real candidates and a real user now and then, so that bodies reach the ranker deep."""
    ids = world.sold_in(world.user["country"], 40)
    return st.fixed_dictionaries(
        {"candidates": st.lists(st.sampled_from(ids), min_size=1, max_size=40)},
        optional={"user": st.just(world.user), "region": st.just(world.user["country"])},
    )


def bend(data: st.DataObject, value: Any) -> Any:
    """``value`` with one node (or the whole) swapped for a hostile value, half of the time."""
    if not data.draw(st.booleans(), label="bend"):
        return value
    paths: list[tuple] = [()]

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, (dict, list)):
            for key, child in node.items() if isinstance(node, dict) else enumerate(node):
                paths.append((*path, key))
                walk(child, (*path, key))

    walk(value, ())
    where = data.draw(st.sampled_from(paths), label="bent at")
    hostile = data.draw(HOSTILE, label="hostile")
    if not where:
        return hostile
    parent = value
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = hostile
    return value


def request_for(
    data: st.DataObject, drawer: Drawer, operation: dict[str, Any], path: str, method: str
) -> dict[str, Any]:
    url, query = path, []
    for parameter in operation.get("parameters", []):
        value = bend(data, data.draw(drawer.draw(parameter.get("schema", {}))))
        text = value if isinstance(value, str) else json.dumps(value)
        escaped = quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")
        if parameter["in"] == "path":
            url = url.replace("{" + parameter["name"] + "}", escaped or "%20")
        elif value is not None:
            query.append(f"{parameter['name']}={escaped}")
    if query:
        url += "?" + "&".join(query)
    request: dict[str, Any] = {"method": method, "url": url}
    body_schema = (
        operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    ).get("schema")
    if body_schema is not None:
        body = data.draw(drawer.draw(body_schema), label="body")
        if path == "/v1/rank" and data.draw(st.booleans()):
            body.update(data.draw(rank_hints(drawer.world)))
        body = bend(data, body)
        request["content"] = json.dumps(body, ensure_ascii=True, allow_nan=True).encode()
        request["headers"] = {"content-type": "application/json"}
    headers = request.setdefault("headers", {})
    if data.draw(st.integers(0, 4), label="token unless 0"):
        headers["authorization"] = f"Bearer {TOKEN}"
    foreign = data.draw(st.integers(0, 4), label="foreign host if 0") == 0
    headers["host"] = data.draw(HOSTS, label="host") if foreign else "localhost"
    return request


@pytest.mark.parametrize(("method", "path"), operations())
def test_no_route_answers_500_or_an_undeclared_status(client, openapi, world, method, path):
    operation = openapi["paths"][path][method.lower()]
    declared = {int(code) for code in operation["responses"]}
    drawer = Drawer(openapi, world)
    seen: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES_PER_ROUTE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        request = request_for(data, drawer, operation, path, method)
        response = client.request(**request)
        assert response.status_code != 500, (request, response.text)
        # A path parameter holding "/" names another path (404), a route's status or not.
        allowed = declared | ({404} if "{" in path else set())
        assert response.status_code in allowed, (request, response.text)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1

    fuzz()
    # Some drawn requests pass every check and reach the endpoint (a 2xx, or its own 404/503).
    assert set(seen) - {401, 403, 408, 413, 421, 422}, seen
    assert any(code >= 400 for code in seen) or path in ("/healthz", "/readyz"), seen
    print(f"{method} {path}: {sum(seen.values())} requests, statuses {dict(sorted(seen.items()))}")
