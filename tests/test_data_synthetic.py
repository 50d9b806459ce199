"""The synthetic short-video ads log: determinism, consistency of its columns, round trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from adrank.data import SyntheticConfig, generate_log, read_log
from adrank.data.content import FILLER, GENERIC_AUDIO, GENERIC_VISUAL, TOPICS
from adrank.features import FeaturePipeline, load_schema
from adrank.training.report import oracle_metrics

SMALL = SyntheticConfig(
    num_advertisers=5, num_campaigns=12, num_creatives=40, num_users=300, num_categories=6
)


@pytest.fixture(scope="module")
def log():
    return generate_log(5000, seed=3, config=SMALL)


def test_same_seed_same_log_other_seed_other_log(log):
    again = generate_log(5000, seed=3, config=SMALL)
    for name in ("impressions", "advertisers", "campaigns", "creatives", "users"):
        # pandas' equality counts NaN (target_cpa of non-oCPM campaigns) as equal to NaN
        assert getattr(log, name).to_pandas().equals(getattr(again, name).to_pandas())
    assert not generate_log(5000, seed=4, config=SMALL).impressions.equals(log.impressions)


def test_labels_follow_the_funnel(log):
    table = log.impressions
    click = table.column("click").to_numpy()
    conversion = table.column("conversion").to_numpy()
    assert set(np.unique(click)) <= {0, 1}
    assert (conversion <= click).all()  # a conversion needs a click
    for name in ("p_click", "p_conversion", "p_negative"):
        p = table.column(name).to_numpy()
        assert ((p > 0) & (p < 1)).all()
    assert 0.02 < click.mean() < 0.4
    oracle = oracle_metrics(table)
    assert set(oracle) == {"click", "conversion", "negative"}
    assert all(0.55 < value < 1.0 for value in oracle.values())


def test_rows_agree_with_the_catalogs(log):
    impressions = log.impressions.to_pydict()
    users = log.users.to_pydict()
    creatives = log.creatives.to_pydict()
    user_row = {u: i for i, u in enumerate(users["user_id"])}
    creative_row = {c: i for i, c in enumerate(creatives["creative_id"])}
    for i in range(0, 5000, 97):
        u = user_row[impressions["user_id"][i]]
        c = creative_row[impressions["creative_id"][i]]
        for column in ("age_bucket", "country", "interests", "recent_creatives", "os"):
            assert impressions[column][i] == users[column][u]
        for column in ("campaign_id", "category", "format", "duration_s", "language"):
            assert impressions[column][i] == creatives[column][c]
        assert set(impressions["recent_creatives"][i]) <= set(creatives["creative_id"])
        assert 1 <= len(impressions["interests"][i]) <= 4
    objectives = set(log.campaigns.column("objective").to_pylist())
    assert objectives <= {"CPM", "CPC", "oCPM"}
    cpa = log.campaigns.column("target_cpa").to_numpy()
    is_ocpm = np.array([o == "oCPM" for o in log.campaigns.column("objective").to_pylist()])
    assert np.isfinite(cpa[is_ocpm]).all()
    assert np.isnan(cpa[~is_ocpm]).all()


def test_write_and_read_back(log, tmp_path):
    directory = log.write(tmp_path / "log")
    table = read_log(directory)
    assert table.num_rows == 5000
    assert table.column("click").equals(log.impressions.column("click"))
    assert read_log(directory / "impressions.parquet").num_rows == 5000
    with pytest.raises(FileNotFoundError, match="no impressions file"):
        read_log(tmp_path / "missing")


def test_default_schema_reads_the_log(log):
    batch = FeaturePipeline(load_schema())(log.impressions)
    assert len(batch) == 5000
    assert batch.dense.shape == (5000, 2)
    assert np.isfinite(batch.dense).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_rows": 0}, "num_rows must be a positive integer"),
        ({"num_rows": 10, "seed": -1}, "seed must be a non-negative integer"),
        ({"num_rows": 2.5}, "num_rows must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_log(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_users": 0}, "num_users must be a positive integer"),
        ({"num_advertisers": 10, "num_campaigns": 5}, "num_campaigns must be >= num_advertisers"),
        (
            {"num_advertisers": 5, "num_campaigns": 50, "num_creatives": 10},
            "num_creatives must be >= num_campaigns",
        ),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(**kwargs)


def test_single_row_log():
    table = generate_log(1, seed=0, config=SMALL).impressions
    assert table.num_rows == 1
    assert isinstance(table.column("interests"), pa.ChunkedArray)


# --- creative content --------------------------------------------------------------------------

CONTENT = dataclasses.replace(SMALL, content=True, num_topics=6)
CONTENT_COLUMNS = ("topic", "caption", "hashtags", "visual_tags", "audio_tags")


@pytest.fixture(scope="module")
def content_log():
    return generate_log(5000, seed=3, config=CONTENT)


def test_content_is_off_by_default(log):
    assert not SMALL.content
    for name in (*CONTENT_COLUMNS, "topic_interests"):
        assert name not in log.impressions.column_names
    assert not set(CONTENT_COLUMNS) & set(log.creatives.column_names)
    assert "topic_interests" not in log.users.column_names


def test_content_changes_no_other_column_but_the_clicks(log, content_log):
    changed = {"click", "conversion", "p_click"}
    for name in log.impressions.column_names:
        same = content_log.impressions[name].equals(log.impressions[name])
        assert same != (name in changed), name
    for name in ("advertisers", "campaigns"):
        assert getattr(log, name).to_pandas().equals(getattr(content_log, name).to_pandas())
    again = generate_log(5000, seed=3, config=CONTENT)
    assert again.impressions.equals(content_log.impressions)
    assert again.creatives.equals(content_log.creatives)


def test_content_columns_hold_topic_words(content_log):
    creatives = content_log.creatives.to_pydict()
    topics = list(TOPICS)[: CONTENT.num_topics]
    topic_words = {w for t in topics for w in TOPICS[t][0]}
    visual = {w for t in topics for w in TOPICS[t][1]} | set(GENERIC_VISUAL)
    audio = {w for t in topics for w in TOPICS[t][2]} | set(GENERIC_AUDIO)
    for i in range(CONTENT.num_creatives):
        words = creatives["caption"][i].split(" ")
        assert 5 <= len(words) <= 12
        assert set(words) <= topic_words | set(FILLER)
        assert 1 <= len(creatives["hashtags"][i]) <= 3
        assert set(creatives["hashtags"][i]) <= topic_words
        assert 2 <= len(creatives["visual_tags"][i]) <= 4
        assert set(creatives["visual_tags"][i]) <= visual
        assert set(creatives["audio_tags"][i]) <= audio
        assert 0 <= creatives["topic"][i] < CONTENT.num_topics
    # A creative's main topic shows in its words: most captions hold one of its words.
    main_topic_words = [
        set(creatives["caption"][i].split(" ")) & set(TOPICS[topics[creatives["topic"][i]]][0])
        for i in range(CONTENT.num_creatives)
    ]
    assert sum(bool(w) for w in main_topic_words) >= 0.8 * CONTENT.num_creatives
    interests = content_log.users["topic_interests"].to_pylist()
    assert all(1 <= len(v) <= 3 and len(set(v)) == len(v) for v in interests)
    assert {t for v in interests for t in v} <= set(range(CONTENT.num_topics))


def test_content_rows_agree_with_the_catalogs(content_log):
    impressions = content_log.impressions.to_pydict()
    users = content_log.users.to_pydict()
    creatives = content_log.creatives.to_pydict()
    user_row = {u: i for i, u in enumerate(users["user_id"])}
    creative_row = {c: i for i, c in enumerate(creatives["creative_id"])}
    for i in range(0, 5000, 97):
        u, c = user_row[impressions["user_id"][i]], creative_row[impressions["creative_id"][i]]
        assert impressions["topic_interests"][i] == users["topic_interests"][u]
        for column in CONTENT_COLUMNS:
            assert impressions[column][i] == creatives[column][c]


def test_topics_drive_the_click_rate(log, content_log):
    table = content_log.impressions
    interests = table["topic_interests"].to_pylist()
    topic = table["topic"].to_pylist()
    matched = np.array([t in v for t, v in zip(topic, interests, strict=True)])
    with_content = table["p_click"].to_numpy()
    without = log.impressions["p_click"].to_numpy()
    # The same impressions: a creative on one of the user's topics gains, the others lose.
    assert (with_content[matched] > without[matched]).mean() > 0.9
    assert (with_content[~matched] < without[~matched]).mean() > 0.6
    assert 0.5 * without.mean() < with_content.mean() < 2.0 * without.mean()
    assert oracle_metrics(table)["click"] > oracle_metrics(log.impressions)["click"]


def test_the_catalog_carries_content_and_the_safety_gate_reads_it(log, content_log):
    from adrank.data.catalog import catalog_table
    from adrank.orchestrator.catalog import Catalog
    from adrank.safety import SafetyGate, SafetyRules

    rules = SafetyRules.from_mapping({"regions": {"DE": {"keywords": ["casino", "beer"]}}})
    plain = Catalog.from_arrow(catalog_table(log))
    assert not set(CONTENT_COLUMNS) & set(plain.table.column_names)
    gate = SafetyGate(rules)
    assert not gate.blocked(plain, np.arange(len(plain)), "DE", {"age_bucket": 3}).any()
    assert gate.audit() == []  # the catalog without content has no text to block

    world = dataclasses.replace(CONTENT, num_topics=12)  # the first 12 hold nightlife
    content = Catalog.from_arrow(catalog_table(generate_log(10, seed=1, config=world)))
    assert set(CONTENT_COLUMNS) <= set(content.table.column_names)
    blocked = gate.blocked(content, np.arange(len(content)), "DE", {"age_bucket": 3})
    texts = [
        f"{caption} {' '.join(tags)}".split(" ")
        for caption, tags in zip(
            content.table["caption"].to_pylist(), content.table["hashtags"].to_pylist(), strict=True
        )
    ]
    expected = np.array([bool({"casino", "beer"} & set(words)) for words in texts])
    assert expected.any()
    np.testing.assert_array_equal(blocked, expected)
    assert {e.rule for e in gate.audit()} <= {"keyword:casino", "keyword:beer"}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"content": 1}, TypeError, "content must be a bool, got int"),
        ({"num_topics": 0}, ValueError, "num_topics must be a positive integer"),
        ({"num_topics": 17}, ValueError, "num_topics must be <= 16, got 17"),
    ],
)
def test_bad_content_config(kwargs, error, match):
    with pytest.raises(error, match=match):
        SyntheticConfig(**kwargs)


def test_content_words_do_not_trip_the_offensive_language_classifier():
    """The vocabulary is plain: on every topic, the packaged classifier scores each creative's
    text well under the usual thresholds (keyword rules, not the classifier, block nightlife)."""
    from adrank.safety.gate import profanity_classifier

    pytest.importorskip("profanity_check")
    world = dataclasses.replace(CONTENT, num_creatives=400, num_topics=16)
    creatives = generate_log(10, seed=2, config=world).creatives
    texts = [
        f"{caption} {' '.join(tags)}"
        for caption, tags in zip(
            creatives["caption"].to_pylist(), creatives["hashtags"].to_pylist(), strict=True
        )
    ]
    assert max(profanity_classifier()(texts)) < 0.8
