"""A synthetic short-video ads log whose labels come from known probabilities.

The world: advertisers run campaigns (objective CPM, CPC or oCPM; a bid or a target CPA; a
daily budget; target regions); campaigns own creatives (category, format, duration, music,
language); users (age bucket, gender, country, device, OS, interests, recently watched
creatives, daily watch minutes) see creatives in a context (placement, hour, network).

With ``SyntheticConfig(content=True)`` creatives also have content (:mod:`.content`): a
``caption``, ``hashtags``, ``visual_tags`` and ``audio_tags`` drawn from a mix of topics, and
their main ``topic``; users have ``topic_interests``; and the click logit gains
``TOPIC_EFFECT x relevance`` (the creative's topic mass on the user's interests), so a model
that reads the content can rank better. Content is drawn from a generator of its own: every
other column of a log is the same with and without it, except the click labels (the same
uniform draws against the new ``p_click``) and the conversions that follow clicks.

Each impression's click, conversion and negative-feedback labels are drawn from hidden
ground-truth probabilities built from feature interactions (interest match, age x category,
placement x format, country x language, duration x placement, ...). Those probabilities are
kept in the log as ``p_click``, ``p_conversion`` (given a click) and ``p_negative``, so the
oracle AUC (scoring with the truth) is known: no model can beat it on the same rows.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``: the same seed and
sizes give the same log, byte for byte.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from adrank.data.content import (
    MAX_TOPICS,
    TOPIC_EFFECT,
    CreativeContent,
    draw_content,
    draw_topic_interests,
    relevance,
)

__all__ = ["SyntheticConfig", "SyntheticLog", "generate_log", "read_log"]

COUNTRIES = ("US", "BR", "IN", "ID", "MX", "JP", "DE", "FR", "GB", "TR")
LANGUAGES = ("en", "pt", "hi", "id", "es", "ja", "de", "fr")
COUNTRY_LANGUAGE = (0, 1, 2, 3, 4, 5, 6, 7, 0, 0)  # index into LANGUAGES
OBJECTIVES = ("CPM", "CPC", "oCPM")
FORMATS = ("vertical", "horizontal", "square", "live")
OS_NAMES = ("android", "ios", "other")
PLACEMENTS = ("feed", "search", "profile", "live")
NETWORKS = ("wifi", "4g", "5g")
GENDERS = ("female", "male", "unknown")
NUM_AGE_BUCKETS = 7
NUM_HOURS = 24
IMPRESSION_FILE = "impressions.parquet"


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Sizes of the synthetic world. Fewer entities make a small log easier to learn."""

    num_advertisers: int = 200
    num_campaigns: int = 500
    num_creatives: int = 2000
    num_users: int = 10000
    num_categories: int = 32
    num_music: int = 500
    num_devices: int = 60
    max_recent: int = 8
    content: bool = False  # captions, hashtags, visual/audio tags and topic interests
    num_topics: int = 12  # of content.TOPICS, with content

    def __post_init__(self) -> None:
        if not isinstance(self.content, bool):
            raise TypeError(f"content must be a bool, got {type(self.content).__name__}")
        for field in dataclasses.fields(self):
            if field.name == "content":
                continue
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field.name} must be a positive integer, got {value!r}")
        if self.num_campaigns < self.num_advertisers:
            raise ValueError("num_campaigns must be >= num_advertisers")
        if self.num_creatives < self.num_campaigns:
            raise ValueError("num_creatives must be >= num_campaigns")
        if self.num_topics > MAX_TOPICS:
            raise ValueError(f"num_topics must be <= {MAX_TOPICS}, got {self.num_topics}")


@dataclasses.dataclass
class SyntheticLog:
    """The impressions and the catalogs they join (all ``pyarrow.Table``)."""

    impressions: Any
    advertisers: Any
    campaigns: Any
    creatives: Any
    users: Any

    def write(self, directory: str | Path) -> Path:
        """Writes one Parquet file per table into ``directory``; returns the directory."""
        import pyarrow.parquet as pq

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("impressions", "advertisers", "campaigns", "creatives", "users"):
            pq.write_table(getattr(self, name), directory / f"{name}.parquet")
        return directory


def read_log(path: str | Path) -> Any:
    """The impressions table of a log written by :meth:`SyntheticLog.write` (or a Parquet file)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.is_dir():
        path = path / IMPRESSION_FILE
    if not path.exists():
        raise FileNotFoundError(f"no impressions file at {str(path)!r}")
    return pq.read_table(path)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _dictionary(indices: np.ndarray, names: tuple[str, ...]) -> Any:
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), pa.array(names))


def _list_array(values: np.ndarray, offsets: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))


def _gather_jagged(values: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple:
    """(values, offsets) of the lists ``rows`` of a jagged array, in that order."""
    lengths = np.diff(offsets)[rows]
    out_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_offsets[1:])
    starts = np.repeat(offsets[rows] - out_offsets[:-1], lengths)
    return values[starts + np.arange(out_offsets[-1])], out_offsets


@dataclasses.dataclass
class _Truth:
    """The hidden parameters of the ground-truth functions."""

    creative_quality: np.ndarray
    creative_annoyance: np.ndarray
    campaign_conversion: np.ndarray
    age_category: np.ndarray
    placement_format: np.ndarray
    country_category: np.ndarray
    gender_category: np.ndarray


def generate_log(
    num_rows: int, *, seed: int = 0, config: SyntheticConfig | None = None, treatment: bool = False
) -> SyntheticLog:
    """Draw a synthetic log of ``num_rows`` impressions.

    Parameters
    ----------
    num_rows : int >= 1
    seed : int >= 0
    config : SyntheticConfig, the sizes of the world (defaults: 2,000 creatives, 10,000 users)

    Returns
    -------
    SyntheticLog
        ``impressions`` has the feature columns of ``default_schema.toml``, the labels
        ``click``, ``conversion``, ``negative`` (int8) and the true probabilities ``p_click``,
        ``p_conversion`` (given a click) and ``p_negative`` (float32). With ``treatment``, an
        experiment: ``treatment`` (int8, 1: the ad shown, 0: withheld, half each),
        ``converted`` (int8: organic conversions, plus the ad's for the treated) and
        ``true_uplift`` (float32, the planted effect); drawn after every other column, so those
        are the same as without it.
    """
    import pyarrow as pa

    if isinstance(num_rows, bool) or not isinstance(num_rows, int) or num_rows < 1:
        raise ValueError(f"num_rows must be a positive integer, got {num_rows!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(seed)
    num_cat = cfg.num_categories

    # --- catalogs ---
    advertiser_ids = 1_000 + np.arange(cfg.num_advertisers, dtype=np.int64)
    campaign_advertiser = np.concatenate(
        [
            np.arange(cfg.num_advertisers),
            rng.integers(0, cfg.num_advertisers, cfg.num_campaigns - cfg.num_advertisers),
        ]
    )
    campaign_ids = 50_000 + np.arange(cfg.num_campaigns, dtype=np.int64)
    objective = rng.choice(3, cfg.num_campaigns, p=[0.3, 0.4, 0.3])
    bid = np.where(
        objective == 0,
        rng.lognormal(1.0, 0.5, cfg.num_campaigns),  # CPM: price per mille
        np.where(objective == 1, rng.lognormal(-1.5, 0.5, cfg.num_campaigns), 0.0),  # CPC
    )
    target_cpa = np.where(objective == 2, rng.lognormal(2.0, 0.6, cfg.num_campaigns), np.nan)
    budget = np.round(rng.lognormal(6.0, 1.0, cfg.num_campaigns), 2)
    region_counts = rng.integers(1, 5, cfg.num_campaigns)
    region_offsets = np.concatenate([[0], np.cumsum(region_counts)])
    regions = rng.integers(0, len(COUNTRIES), region_offsets[-1])

    creative_campaign = np.concatenate(
        [
            np.arange(cfg.num_campaigns),
            rng.integers(0, cfg.num_campaigns, cfg.num_creatives - cfg.num_campaigns),
        ]
    )
    creative_ids = 100_000 + np.arange(cfg.num_creatives, dtype=np.int64)
    creative_category = rng.integers(0, num_cat, cfg.num_creatives)
    creative_format = rng.choice(len(FORMATS), cfg.num_creatives, p=[0.55, 0.2, 0.15, 0.1])
    duration = np.round(rng.gamma(2.0, 9.0, cfg.num_creatives) + 3.0, 1)
    music = rng.integers(0, cfg.num_music, cfg.num_creatives)
    language = rng.choice(len(LANGUAGES), cfg.num_creatives)

    user_ids = 10_000_000 + np.arange(cfg.num_users, dtype=np.int64)
    age = rng.integers(0, NUM_AGE_BUCKETS, cfg.num_users)
    gender = rng.choice(3, cfg.num_users, p=[0.48, 0.48, 0.04])
    country = rng.choice(len(COUNTRIES), cfg.num_users)
    device = rng.integers(0, cfg.num_devices, cfg.num_users)
    os_index = np.where(device < cfg.num_devices // 3, 1, np.where(device % 17 == 0, 2, 0))
    watch_minutes = np.round(rng.lognormal(3.0, 0.8, cfg.num_users), 1)
    interest_counts = rng.integers(1, 5, cfg.num_users)
    interest_matrix = np.zeros((cfg.num_users, num_cat), dtype=bool)
    for k in range(4):  # at most 4 draws per user; repeats merge
        chosen = rng.integers(0, num_cat, cfg.num_users)
        interest_matrix[
            np.arange(cfg.num_users)[interest_counts > k], chosen[interest_counts > k]
        ] = True
    interest_users, interest_values = np.nonzero(interest_matrix)
    interest_offsets = np.concatenate(
        [[0], np.cumsum(np.bincount(interest_users, minlength=cfg.num_users))]
    )
    recent_values, recent_offsets = _recent_creatives(
        rng, cfg, interest_values, interest_offsets, creative_category
    )

    truth = _Truth(
        creative_quality=rng.normal(0.0, 0.2, cfg.num_creatives),
        creative_annoyance=rng.normal(0.0, 0.2, cfg.num_creatives),
        campaign_conversion=rng.normal(0.0, 0.4, cfg.num_campaigns),
        age_category=rng.normal(0.0, 0.5, (NUM_AGE_BUCKETS, num_cat)),
        placement_format=rng.normal(0.0, 0.4, (len(PLACEMENTS), len(FORMATS))),
        country_category=rng.normal(0.0, 0.4, (len(COUNTRIES), num_cat)),
        gender_category=rng.normal(0.0, 0.3, (len(GENDERS), num_cat)),
    )

    # --- impressions ---
    activity_weight = rng.lognormal(0.0, 1.0, cfg.num_users)  # some users watch far more
    user = rng.choice(cfg.num_users, num_rows, p=activity_weight / activity_weight.sum())
    creative = rng.integers(0, cfg.num_creatives, num_rows)
    placement = rng.choice(len(PLACEMENTS), num_rows, p=[0.6, 0.15, 0.15, 0.1])
    hour = rng.integers(0, NUM_HOURS, num_rows)
    network = rng.choice(len(NETWORKS), num_rows, p=[0.5, 0.35, 0.15])

    cat = creative_category[creative]
    fmt = creative_format[creative]
    camp = creative_campaign[creative]
    interested = interest_matrix[user, cat]
    long_video = duration[creative] > 30.0
    young = age[user] <= 1
    activity = (np.log1p(watch_minutes[user]) - 3.0) / 0.8

    click_logit = (
        -2.3
        + truth.creative_quality[creative]
        + 1.0 * interested
        + truth.age_category[age[user], cat]
        + truth.placement_format[placement, fmt]
        + 0.5 * (language[creative] == np.asarray(COUNTRY_LANGUAGE)[country[user]])
        - 0.5 * (long_video & (placement == 0))
        + 0.3 * activity
        + 0.3 * np.sin(2.0 * np.pi * hour / NUM_HOURS)
        + 0.15 * (objective[camp] == 1)
    )
    conversion_logit = (
        -1.8
        + truth.campaign_conversion[camp]
        + 0.8 * (objective[camp] == 2)
        + truth.country_category[country[user], cat]
        + 0.5 * interested
        + 0.3 * (os_index[user] == 1)
    )
    negative_logit = (
        -3.2
        + truth.creative_annoyance[creative]
        + 0.8 * (long_video & young)
        - 0.7 * interested
        + truth.gender_category[gender[user], cat]
        + 0.5 * ((network == 1) & (fmt == 3))
    )
    content = topic_interests = None
    if cfg.content:  # its own generator: the draws above and below stay as they were
        content_rng = np.random.default_rng([seed, 0xC0])
        content = draw_content(content_rng, cfg.num_creatives, cfg.num_topics)
        topic_interests = draw_topic_interests(content_rng, cfg.num_users, cfg.num_topics)
        matched = relevance(content.topic_mix, topic_interests, user, creative)
        expected = len(topic_interests[0]) / cfg.num_users / cfg.num_topics  # keeps the CTR
        click_logit = click_logit + TOPIC_EFFECT * (matched - expected)
    p_click = _sigmoid(click_logit)
    p_conversion = _sigmoid(conversion_logit)
    p_negative = _sigmoid(negative_logit)
    click = rng.random(num_rows) < p_click
    conversion = click & (rng.random(num_rows) < p_conversion)
    negative = rng.random(num_rows) < p_negative

    if treatment:  # organic conversion, then the ad's own (clicked, converted) on top of it
        p_organic = _sigmoid(conversion_logit - 2.5)
        treated = rng.random(num_rows) < 0.5
        organic = rng.random(num_rows) < p_organic
        converted = organic | (treated & conversion)
        true_uplift = (1.0 - p_organic) * p_click * p_conversion

    interests_rows = _gather_jagged(interest_values, interest_offsets, user)
    recent_rows = _gather_jagged(recent_values, recent_offsets, user)
    impressions = pa.table(
        {
            "user_id": user_ids[user],
            "age_bucket": age[user].astype(np.int64),
            "gender": _dictionary(gender[user], GENDERS),
            "country": _dictionary(country[user], COUNTRIES),
            "device": device[user].astype(np.int64),
            "os": _dictionary(os_index[user], OS_NAMES),
            "interests": _list_array(interests_rows[0].astype(np.int64), interests_rows[1]),
            "recent_creatives": _list_array(creative_ids[recent_rows[0]], recent_rows[1]),
            "watch_minutes": watch_minutes[user],
            "placement": _dictionary(placement, PLACEMENTS),
            "hour": hour.astype(np.int64),
            "network": _dictionary(network, NETWORKS),
            "creative_id": creative_ids[creative],
            "advertiser_id": advertiser_ids[campaign_advertiser[camp]],
            "campaign_id": campaign_ids[camp],
            "category": cat.astype(np.int64),
            "format": _dictionary(fmt, FORMATS),
            "duration_s": duration[creative],
            "music_id": music[creative].astype(np.int64),
            "language": _dictionary(language[creative], LANGUAGES),
            "objective": _dictionary(objective[camp], OBJECTIVES),
            "bid": np.where(objective[camp] == 2, target_cpa[camp], bid[camp]),
            "click": click.astype(np.int8),
            "conversion": conversion.astype(np.int8),
            "negative": negative.astype(np.int8),
            "p_click": p_click.astype(np.float32),
            "p_conversion": p_conversion.astype(np.float32),
            "p_negative": p_negative.astype(np.float32),
        }
    )
    creative_columns: dict[str, Any] = {}
    user_columns: dict[str, Any] = {}
    if content is not None and topic_interests is not None:
        creative_columns = _content_columns(content)
        user_columns = {"topic_interests": _list_array(*topic_interests)}
        for name, column in user_columns.items():
            impressions = impressions.append_column(name, column.take(user))
        for name, column in creative_columns.items():
            impressions = impressions.append_column(name, column.take(creative))
    if treatment:
        impressions = impressions.append_column("treatment", pa.array(treated.astype(np.int8)))
        impressions = impressions.append_column("converted", pa.array(converted.astype(np.int8)))
        impressions = impressions.append_column(
            "true_uplift", pa.array(true_uplift.astype(np.float32))
        )
    return SyntheticLog(
        impressions=impressions,
        advertisers=pa.table({"advertiser_id": advertiser_ids}),
        campaigns=pa.table(
            {
                "campaign_id": campaign_ids,
                "advertiser_id": advertiser_ids[campaign_advertiser],
                "objective": _dictionary(objective, OBJECTIVES),
                "bid": bid,
                "target_cpa": target_cpa,
                "daily_budget": budget,
                "target_regions": pa.ListArray.from_arrays(
                    pa.array(region_offsets.astype(np.int32)),
                    _dictionary(regions, COUNTRIES),
                ),
            }
        ),
        creatives=pa.table(
            {
                "creative_id": creative_ids,
                "advertiser_id": advertiser_ids[campaign_advertiser[creative_campaign]],
                "campaign_id": campaign_ids[creative_campaign],
                "category": creative_category.astype(np.int64),
                "format": _dictionary(creative_format, FORMATS),
                "duration_s": duration,
                "music_id": music.astype(np.int64),
                "language": _dictionary(language, LANGUAGES),
                **creative_columns,
            }
        ),
        users=pa.table(
            {
                "user_id": user_ids,
                "age_bucket": age.astype(np.int64),
                "gender": _dictionary(gender, GENDERS),
                "country": _dictionary(country, COUNTRIES),
                "device": device.astype(np.int64),
                "os": _dictionary(os_index, OS_NAMES),
                "interests": _list_array(interest_values.astype(np.int64), interest_offsets),
                "recent_creatives": _list_array(creative_ids[recent_values], recent_offsets),
                "watch_minutes": watch_minutes,
                **user_columns,
            }
        ),
    )


def _content_columns(content: CreativeContent) -> dict[str, Any]:
    """The creatives' content columns [R]: topic (int64), caption (string), tag lists."""
    import pyarrow as pa

    return {
        "topic": pa.array(content.topic),
        "caption": pa.array(content.caption, pa.string()),
        "hashtags": _list_array(*content.hashtags),
        "visual_tags": _list_array(*content.visual_tags),
        "audio_tags": _list_array(*content.audio_tags),
    }


def _recent_creatives(
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    interest_values: np.ndarray,
    interest_offsets: np.ndarray,
    creative_category: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per user, up to ``max_recent`` watched creatives, mostly from the user's interests."""
    counts = rng.integers(0, cfg.max_recent + 1, cfg.num_users)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    owner = np.repeat(np.arange(cfg.num_users), counts)
    # A random interest of the owner, then a random creative of that category.
    interest_counts = np.diff(interest_offsets)[owner]
    pick = interest_offsets[owner] + (rng.random(len(owner)) * interest_counts).astype(np.int64)
    wanted = interest_values[pick]
    by_category = np.argsort(creative_category, kind="stable")
    category_counts = np.bincount(creative_category, minlength=cfg.num_categories)
    category_starts = np.concatenate([[0], np.cumsum(category_counts)])
    position = category_starts[wanted] + (rng.random(len(owner)) * category_counts[wanted]).astype(
        np.int64
    )
    # A category without creatives points past its start; those draws are not used below.
    in_category = by_category[np.minimum(position, cfg.num_creatives - 1)]
    anything = rng.integers(0, cfg.num_creatives, len(owner))
    from_interest = (rng.random(len(owner)) < 0.7) & (category_counts[wanted] > 0)
    return np.where(from_interest, in_category, anything), offsets
