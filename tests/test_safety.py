"""The content-safety gate: each rule with creatives that trip it and that do not, the real
packaged classifier, decisions cached per catalog snapshot, and over HTTP: blocked creatives
never served, the audit log, and a person's overrides (guarded and audited).

Glossary: *tiny* is a five-creative catalog with captions and hashtags written for the rules.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from adrank.orchestrator.catalog import Catalog
from adrank.pacing import PacingService, SQLitePacingStore
from adrank.safety import SafetyGate, SafetyRules
from adrank.safety.control import make_safety_router
from adrank.service.app import create_app
from adrank.service.control import make_control_router
from adrank.service.security import AccessPolicy
from adrank.traffic import SQLiteTrafficStore, TrafficControl
from service_world import LOCAL, NOW, TOKEN, build_world

RULES = """
[regions.DE]
keywords = ["casino"]
blocked_categories = [3]
banned_advertisers = [9]
age_gated_categories = { 4 = 2 }
classifier_threshold = 0.9

[regions.US]
keywords = ["beer"]
"""
CLOCK = 1_700_000_000.0


def tiny() -> Catalog:
    return Catalog.from_arrow(
        pa.table(
            {
                "creative_id": [1, 2, 3, 4, 5, 6],
                "advertiser_id": [1, 1, 9, 2, 2, 2],
                "campaign_id": [10, 10, 11, 12, 12, 12],
                "category": [1, 3, 1, 4, 1, 1],
                "objective": ["CPM"] * 6,
                "bid": [1.0] * 6,
                "target_cpa": [0.0] * 6,
                "regions": [[]] * 6,
                "status": ["active"] * 6,
                "caption": [
                    "Casino night!",  # keyword, any case
                    "a quiet walk",
                    "shoes",
                    "wine",
                    "casinos and beers",  # not whole words: no keyword
                    "you are a damn stupid idiot",  # the classifier's
                ],
                "hashtags": [["fun"], [], ["beer"], None, [], []],
            }
        )
    )


def gate(**settings) -> SafetyGate:
    return SafetyGate(SafetyRules.from_mapping(_toml(RULES)), clock=lambda: CLOCK, **settings)


def _toml(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


def test_each_rule_blocks_what_it_names_and_nothing_else() -> None:
    g, catalog = gate(), tiny()
    rows = np.arange(6)
    adult, child = {"age_bucket": 3}, {"age_bucket": 1}
    # DE: 1 keyword, 2 category, 3 advertiser, 4 age gate (children only), 6 classifier.
    np.testing.assert_array_equal(
        g.blocked(catalog, rows, "DE", adult), [True, True, True, False, False, True]
    )
    np.testing.assert_array_equal(
        g.blocked(catalog, rows, "DE", child), [True, True, True, True, False, True]
    )
    np.testing.assert_array_equal(  # no age bucket: under every gate
        g.blocked(catalog, rows, "DE", {}), [True, True, True, True, False, True]
    )
    # US: "beer" in creative 3's hashtags; "beers" in 5's caption is another word.
    np.testing.assert_array_equal(
        g.blocked(catalog, rows, "US", adult), [False, False, True, False, False, False]
    )
    assert g.blocked(catalog, rows, "FR", adult) is None  # no rules there
    assert g.blocked(catalog, rows, None, adult) is None
    rules = {(e.creative_id, e.region): e.rule for e in g.audit()}
    assert rules == {
        (1, "DE"): "keyword:casino",
        (2, "DE"): "category:3",
        (3, "DE"): "advertiser:9",
        (4, "DE"): "age_gate:2",
        (6, "DE"): "classifier",
        (3, "US"): "keyword:beer",
    }
    classified = g.audit(creative_id=6)[0]
    assert 0.9 <= classified.score <= 1.0
    assert classified.time == CLOCK
    assert g.audit(creative_id=5) == []


def test_decisions_are_computed_once_per_snapshot() -> None:
    calls = []

    def classifier(texts):
        calls.append(len(texts))
        return np.zeros(len(texts))

    g, catalog = gate(classifier=classifier), tiny()
    first = g.decide(catalog)
    for _ in range(3):
        g.blocked(catalog, np.arange(6), "DE", {"age_bucket": 3})
    assert g.decide(catalog) is first
    assert calls == [6]
    entries = g.audit()
    g.decide(tiny())  # a new snapshot is decided anew, its standing blocks not logged again
    assert calls == [6, 6]
    assert g.audit() == entries
    changed = tiny().table.to_pydict()
    changed["caption"][1] = "casino"  # creative 2 now trips the keyword rule too
    g.decide(Catalog.from_arrow(pa.table(changed)))
    assert [(e.creative_id, e.rule) for e in g.audit()[len(entries) :]] == [(2, "keyword:casino")]


def test_overrides_allow_and_deny_and_are_audited() -> None:
    g, catalog = gate(), tiny()
    rows, adult = np.arange(6), {"age_bucket": 3}
    g.decide(catalog)  # the snapshot's blocks are logged first
    g.override(3, "DE", allow=True, reason="reviewed: not this advertiser's brand")
    g.override(5, "DE", allow=False, reason="misleading")
    g.override(4, "DE", allow=True)  # an allow never lifts an age gate
    g.override(2, "FR", allow=False)  # a region without rules
    np.testing.assert_array_equal(
        g.blocked(catalog, rows, "DE", adult), [True, True, False, False, True, True]
    )
    np.testing.assert_array_equal(
        g.blocked(catalog, rows, "DE", {"age_bucket": 0}), [True, True, False, True, True, True]
    )
    np.testing.assert_array_equal(
        g.blocked(catalog, rows, "FR", adult), [False, True, False, False, False, False]
    )
    log = g.audit(region="DE")
    assert [(e.creative_id, e.rule, e.note) for e in log[-3:]] == [
        (3, "override:allow", "reviewed: not this advertiser's brand"),
        (5, "override:deny", "misleading"),
        (4, "override:allow", ""),
    ]
    assert g.audit(limit=2) == g.audit()[-2:]
    with pytest.raises(TypeError, match="creative_id must be an int"):
        g.override("3", "DE", allow=True)
    with pytest.raises(ValueError, match="region must be a non-empty string"):
        g.override(3, "", allow=True)


def test_text_fields_named_in_the_rules() -> None:
    rules = SafetyRules.from_mapping(
        {"text_fields": ["caption"], "regions": {"US": {"keywords": ["beer"]}}}
    )
    blocked = SafetyGate(rules).blocked(tiny(), np.arange(6), "US", {"age_bucket": 3})
    assert not blocked.any()  # "beer" is only in the hashtags, which are not read


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        ({"rules": {}}, ValueError, "unknown safety rules keys: rules"),
        ({"text_fields": "caption"}, TypeError, "text_fields must be a list"),
        ({"regions": {"DE": {"colour": 1}}}, ValueError, "regions.DE: unknown keys colour"),
        ({"regions": {"DE": 3}}, TypeError, "regions.DE must be a table"),
        ({"regions": {"DE": {"keywords": "casino"}}}, TypeError, "keywords must be a list"),
        ({"regions": {"DE": {"keywords": [" "]}}}, ValueError, "keywords must be non-empty"),
        ({"regions": {"DE": {"blocked_categories": ["x"]}}}, TypeError, "blocked_categories"),
        ({"regions": {"DE": {"banned_advertisers": [1.5]}}}, TypeError, "banned_advertisers"),
        (
            {"regions": {"DE": {"age_gated_categories": {"x": 2}}}},
            ValueError,
            "keys must be category ids",
        ),
        (
            {"regions": {"DE": {"age_gated_categories": {"4": "old"}}}},
            TypeError,
            r"age_gated_categories\[4\]",
        ),
        (
            {"regions": {"DE": {"classifier_threshold": 2.0}}},
            ValueError,
            r"classifier_threshold must be in \[0, 1\]",
        ),
        (
            {"regions": {"DE": {"classifier_threshold": "high"}}},
            TypeError,
            "classifier_threshold must be a number",
        ),
    ],
)
def test_bad_rules_are_named(data, error, match) -> None:
    with pytest.raises(error, match=match):
        SafetyRules.from_mapping(data)


def test_rules_files(tmp_path: Path) -> None:
    path = tmp_path / "safety.toml"
    path.write_text(RULES)
    rules = SafetyRules.from_toml(path)
    assert rules.regions["DE"].age_gated_categories == {4: 2}
    assert rules.uses_classifier
    with pytest.raises(FileNotFoundError, match="safety rules file not found"):
        SafetyRules.from_toml(tmp_path / "missing.toml")
    path.write_text("[regions.DE\n")
    with pytest.raises(ValueError, match=r"safety rules .*safety\.toml"):
        SafetyRules.from_toml(path)
    with pytest.raises(TypeError, match="rules must be SafetyRules"):
        SafetyGate({"regions": {}})


# --- over HTTP --------------------------------------------------------------------------------

HEADERS = {"authorization": f"Bearer {TOKEN}"}


def test_over_http_blocked_creatives_are_never_served(tmp_path: Path) -> None:
    world = build_world(tmp_path)
    body = {**world.good_body(), "k": 10, "constraints": {"max_per_advertiser": 10}}
    region = body["region"]
    pacing = PacingService(SQLitePacingStore(":memory:"))
    traffic = TrafficControl(SQLiteTrafficStore(":memory:"))
    control = make_control_router(pacing, traffic, clock=lambda: NOW)
    client = TestClient(
        create_app(
            world.ranker, control=control, schema=world.schema, access=AccessPolicy(token=TOKEN)
        ),
        base_url=LOCAL,
    )

    def served() -> list[dict]:
        response = client.post("/v1/rank", json=body)
        assert response.status_code == 200, response.text
        return response.json()["creatives"]

    before = served()
    top = before[0]
    rules = SafetyRules.from_mapping(
        {"regions": {region: {"banned_advertisers": [top["advertiser_id"]]}}}
    )
    safety = SafetyGate(rules, clock=lambda: NOW)
    control.include_router(make_safety_router(safety))
    client = TestClient(
        create_app(
            world.ranker, control=control, schema=world.schema, access=AccessPolicy(token=TOKEN)
        ),
        base_url=LOCAL,
    )
    world.ranker.safety = safety
    try:
        after = served()
        assert after
        assert all(c["advertiser_id"] != top["advertiser_id"] for c in after)

        listed = client.get("/v1/safety/blocks", params={"region": region}, headers=HEADERS)
        assert listed.status_code == 200, listed.text
        blocked_ids = {e["creative_id"] for e in listed.json()["entries"]}
        assert top["creative_id"] in blocked_ids
        assert {e["rule"] for e in listed.json()["entries"]} == {
            f"advertiser:{top['advertiser_id']}"
        }

        # A person allows the top creative back, and denies the next one.
        path = f"/v1/safety/overrides/{top['creative_id']}"
        allow = {"region": region, "decision": "allow", "by": "ana", "reason": "appeal upheld"}
        assert client.put(path, json=allow).status_code == 401  # writes need the token
        answer = client.put(path, json=allow, headers=HEADERS)
        assert answer.status_code == 200, answer.text
        assert answer.json()["rule"] == "override:allow"
        deny = {"region": region, "decision": "deny", "by": "ana"}
        path = f"/v1/safety/overrides/{after[0]['creative_id']}"
        assert client.put(path, json=deny, headers=HEADERS).status_code == 200
        final = [c["creative_id"] for c in served()]
        assert top["creative_id"] in final
        assert after[0]["creative_id"] not in final
        audit = client.get(
            "/v1/safety/blocks", params={"creative_id": top["creative_id"]}, headers=HEADERS
        ).json()["entries"]
        assert [e["rule"] for e in audit][-1] == "override:allow"
        assert (audit[-1]["note"], audit[-1]["by"], audit[-1]["time"]) == (
            "appeal upheld",
            "ana",
            NOW,
        )

        bad = client.put(
            path, json={"region": region, "decision": "maybe", "by": "ana"}, headers=HEADERS
        )
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"][-1] == "decision"
        bad = client.put(path, json={"region": region, "decision": "deny"}, headers=HEADERS)
        assert bad.status_code == 422  # an override names who made it
        assert bad.json()["detail"][0]["loc"][-1] == "by"
        bad = client.get("/v1/safety/blocks", params={"after": -1}, headers=HEADERS)
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["query", "after"]
        bad = client.get("/v1/safety/blocks", params={"limit": 0}, headers=HEADERS)
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["query", "limit"]
        bad = client.put("/v1/safety/overrides/x", json=deny, headers=HEADERS)
        assert bad.status_code == 422
    finally:
        world.ranker.safety = None


def test_serve_refuses_bad_safety_rules(tmp_path: Path) -> None:
    from adrank.cli import main

    missing = tmp_path / "missing.toml"
    with pytest.raises(SystemExit, match="--safety-rules: safety rules file not found"):
        main(["serve", "--artifacts", str(tmp_path), "--safety-rules", str(missing)])
    bad = tmp_path / "bad.toml"
    bad.write_text("[regions.DE]\nkeywords = 3\n")
    with pytest.raises(SystemExit, match=r"--safety-rules: regions\.DE: keywords must be a list"):
        main(["serve", "--artifacts", str(tmp_path), "--safety-rules", str(bad)])


def test_counts_per_region_and_rule_kind(capsys, tmp_path: Path) -> None:
    from adrank.safety.counts import main, region_counts

    g = gate()
    g.override(5, "DE", allow=False, by="ana")  # an override is not a rule's block
    counts = region_counts(g, tiny())
    assert counts["DE"] == {
        "blocked": 4, "age_gated": 1, "keyword": 1, "category": 1, "advertiser": 1,
        "classifier": 1, "age_gate": 1,
    }  # fmt: skip
    assert counts["US"]["blocked"] == counts["US"]["keyword"] == 1
    catalog = tmp_path / "catalog.parquet"
    import pyarrow.parquet as pq

    pq.write_table(tiny().table, catalog)
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    assert main(["--rules", str(rules), "--catalog", str(catalog)]) == 0
    assert "| DE | 4 of 6 | 1 | 1 | 1 | 1 | 1 | 1 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--rules: safety rules file not found"):
        main(["--rules", str(tmp_path / "missing.toml")])
