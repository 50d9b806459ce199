"""The control plane's guard: bearer token (401 without, 403 wrong), guarded reads and ranking
as settings, the Host allow-list (421), and ``adrank serve`` refusing an unguarded public bind.
"""

from __future__ import annotations

import argparse

import pytest
from fastapi.testclient import TestClient

from adrank.commands import serve
from adrank.service.security import (
    TOKEN_ENV,
    AccessPolicy,
    default_allowed_hosts,
    exposure_warnings,
    is_loopback,
    load_token,
)
from service_world import LOCAL, NOW, TOKEN, build_world, event, make_service

RIGHT = {"authorization": f"Bearer {TOKEN}"}
WRONG = {"authorization": f"Bearer {TOKEN[:-1]}x"}
# Every state-changing endpoint, with a body it accepts.
WRITES = [
    ("POST", "/v1/events", {"events": [event("a")]}),
    ("PUT", "/v1/campaigns/50007/budget", {"daily_budget": 10}),
    ("PUT", "/v1/kill-switches/advertiser/1007", {"reason": "review"}),
    ("DELETE", "/v1/kill-switches/advertiser/1007", None),
    ("PUT", "/v1/ad-load-caps", {"region": "US", "max_ad_share": 0.5}),
    ("DELETE", "/v1/ad-load-caps?region=US", None),
]
READS = ["/v1/kill-switches", "/v1/ad-load-caps", "/v1/campaigns/50007/pacing"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("auth"))


def client_for(world, **policy) -> TestClient:
    service = make_service(world, access=AccessPolicy(**policy))
    return TestClient(service.app, base_url=LOCAL)


@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_writes_need_the_token(world, method, path, body) -> None:
    client = client_for(world, token=TOKEN)
    missing = client.request(method, path, json=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"] == "unauthorized"
    for headers in (WRONG, {"authorization": "Basic " + TOKEN}, {"authorization": "Bearer"}):
        refused = client.request(method, path, json=body, headers=headers)
        assert refused.status_code in (401, 403), headers
    assert client.request(method, path, json=body, headers=WRONG).json()["error"] == "forbidden"
    assert client.get("/v1/kill-switches").json() == {"advertisers": {}, "campaigns": {}}
    if method == "DELETE":  # something to delete first
        assert client.put("/v1/ad-load-caps", json=WRITES[4][2], headers=RIGHT).status_code == 200
        assert client.put("/v1/kill-switches/advertiser/1007", headers=RIGHT).status_code == 200
    assert client.request(method, path, json=body, headers=RIGHT).status_code == 200
    lower = {"authorization": f"bearer {TOKEN}"}
    assert client.put("/v1/campaigns/1/budget", json={"daily_budget": 1}, headers=lower).is_success


def test_a_refused_write_changes_nothing(world) -> None:
    service = make_service(world, access=AccessPolicy(token=TOKEN))
    client = TestClient(service.app, base_url=LOCAL)
    client.post("/v1/events", json={"events": [event("a", cost=5.0)]}, headers=WRONG)
    client.put("/v1/campaigns/50007/budget", json={"daily_budget": 0}, headers=WRONG)
    client.put("/v1/kill-switches/advertiser/1007", headers=WRONG)
    assert service.pacing.status(50007, NOW).spend == 0.0
    assert service.pacing.status(50007, NOW).daily_budget is None
    assert not service.traffic.blocked([1007], [50007])[0]


def test_reads_are_open_unless_guarded(world) -> None:
    open_reads = client_for(world, token=TOKEN)
    for path in READS:
        assert open_reads.get(path).status_code == 200, path
    guarded = client_for(world, token=TOKEN, guard_reads=True)
    for path in READS:
        assert guarded.get(path).status_code == 401, path
        assert guarded.get(path, headers=WRONG).status_code == 403, path
        assert guarded.get(path, headers=RIGHT).status_code == 200, path


def test_ranking_is_open_unless_guarded(world) -> None:
    body = world.good_body()
    assert client_for(world, token=TOKEN).post("/v1/rank", json=body).status_code == 200
    guarded = client_for(world, token=TOKEN, guard_rank=True)
    assert guarded.post("/v1/rank", json=body).status_code == 401
    assert guarded.post("/v1/rank", json=body, headers=WRONG).status_code == 403
    assert guarded.post("/v1/rank", json=body, headers=RIGHT).status_code == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        assert guarded.get(path).status_code == 200, path


def test_openapi_declares_the_guard(world) -> None:
    paths = client_for(world, token=TOKEN).get("/openapi.json").json()["paths"]
    assert {"401", "403", "421", "422"} <= set(paths["/v1/events"]["post"]["responses"])
    assert "401" not in paths["/v1/rank"]["post"]["responses"]
    assert "401" not in paths["/v1/kill-switches"]["get"]["responses"]  # reads are open
    assert "403" in paths["/v1/kill-switches/{scope}/{entity_id}"]["put"]["responses"]
    guarded = client_for(world, token=TOKEN, guard_rank=True, guard_reads=True)
    paths = guarded.get("/openapi.json").json()["paths"]
    assert "401" in paths["/v1/rank"]["post"]["responses"]
    assert "403" in paths["/v1/kill-switches"]["get"]["responses"]
    paths = client_for(world).get("/openapi.json").json()["paths"]
    assert "401" not in paths["/v1/events"]["post"]["responses"]  # no token, nothing to refuse


def test_host_allow_list(world) -> None:
    client = client_for(world, token=TOKEN)
    body = world.good_body()
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"):
        assert client.post("/v1/rank", json=body, headers={"host": host}).status_code == 200, host
    for host in ("attacker.example", "attacker.example:8000", "127.0.0.1.nip.io", "[::2]"):
        response = client.put(
            "/v1/kill-switches/advertiser/1", headers={**RIGHT, "host": host}
        )  # even with the right token: a rebinding page must not reach the API
        assert response.status_code == 421, host
    assert client.get("/healthz", headers={"host": "10.0.0.5:8000"}).status_code == 200
    named = client_for(world, allowed_hosts=("ads.internal",))
    assert named.post("/v1/rank", json=body, headers={"host": "ads.internal:80"}).status_code == 200
    assert named.post("/v1/rank", json=body).status_code == 421  # localhost no longer listed
    anyone = client_for(world, allowed_hosts=("*",))
    assert anyone.post("/v1/rank", json=body, headers={"host": "x.example"}).status_code == 200


def test_without_a_token_everything_is_open_on_loopback(world) -> None:
    client = client_for(world)
    assert client.put("/v1/campaigns/50007/budget", json={"daily_budget": 3}).status_code == 200


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"token": "short"}, "token must hold a token of at least 16 characters"),
        ({"token": "has space in the token"}, "printable ASCII characters without spaces"),
        ({"guard_reads": True}, "guard_reads and guard_rank need a token"),
        ({"guard_rank": True}, "guard_reads and guard_rank need a token"),
        ({"allowed_hosts": ()}, "allowed_hosts must name at least one host"),
        ({"allowed_hosts": ("",)}, "allowed_hosts must not hold empty names"),
    ],
)
def test_policy_checks(policy, message) -> None:
    with pytest.raises(ValueError, match=message):
        AccessPolicy(**policy)


def test_token_from_file_or_environment(tmp_path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert load_token(path, environ={}) == TOKEN
    assert load_token(path, environ={TOKEN_ENV: "x" * 20}) == TOKEN  # the file wins
    assert load_token(None, environ={TOKEN_ENV: "y" * 20}) == "y" * 20
    assert load_token(None, environ={}) is None
    assert load_token(None, environ={TOKEN_ENV: ""}) is None
    with pytest.raises(ValueError, match="cannot be read"):
        load_token(tmp_path / "missing", environ={})
    path.write_text("short\n")
    with pytest.raises(ValueError, match=r"token file .* at least 16 characters"):
        load_token(path, environ={})
    with pytest.raises(ValueError, match=r"\$ADRANK_TOKEN must hold a token of at least 16"):
        load_token(None, environ={TOKEN_ENV: "short"})


def test_loopback_and_exposure() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.5", "example.com"]))
    assert default_allowed_hosts("0.0.0.0") == ("localhost", "127.0.0.1", "::1")
    assert default_allowed_hosts("10.0.0.5", ["ads"]) == (
        "localhost",
        "127.0.0.1",
        "::1",
        "10.0.0.5",
        "ads",
    )
    with pytest.raises(ValueError, match=r"binding 0\.0\.0\.0 without a token"):
        exposure_warnings("0.0.0.0", AccessPolicy(), insecure=False)
    (warning, note) = exposure_warnings("0.0.0.0", AccessPolicy(), insecure=True)
    assert warning.startswith("WARNING: --insecure: 0.0.0.0 is served without a token")
    assert "--allowed-host" in note
    assert exposure_warnings("10.0.0.5", AccessPolicy(TOKEN, allowed_hosts=("ads",)), False) == []
    (note,) = exposure_warnings("127.0.0.1", AccessPolicy(), insecure=False)
    assert "open to every process on this machine" in note


def parse_serve(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_serve_refuses_a_public_bind_without_a_token(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    missing = tmp_path / "not-built"  # refused before any workspace is opened or built
    with pytest.raises(SystemExit, match=r"without a token .* or --insecure"):
        serve.run(parse_serve("--host", "0.0.0.0", "--workspace", str(missing)))
    assert not missing.exists()
    _, warnings = serve.access_policy(parse_serve("--host", "0.0.0.0", "--insecure"))
    assert warnings[0].startswith("WARNING: --insecure")
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    policy, warnings = serve.access_policy(
        parse_serve("--host", "0.0.0.0", "--allowed-host", "ads.internal", "--guard-reads")
    )
    assert policy.token == TOKEN
    assert (policy.guard_reads, policy.guard_rank) == (True, False)
    assert "ads.internal" in policy.allowed_hosts
    assert warnings == []
    (tmp_path / "t").write_text("short\n")
    with pytest.raises(SystemExit, match=r"adrank serve: token file .* at least 16 characters"):
        serve.access_policy(parse_serve("--token-file", str(tmp_path / "t")))
    with pytest.raises(SystemExit, match="max_k must be an integer >= 1, got 0"):
        serve.run(parse_serve("--max-k", "0", "--workspace", str(missing)))
