"""The serving catalog of a synthetic world: one row per creative, in the layout of
:class:`adrank.orchestrator.catalog.Catalog` (required columns plus the creative features)."""

from __future__ import annotations

from typing import Any

import numpy as np

from adrank.data.synthetic import SyntheticLog

__all__ = ["CONTENT_COLUMNS", "catalog_table"]

# A world drawn with SyntheticConfig(content=True) has these creative columns too.
CONTENT_COLUMNS = ("topic", "caption", "hashtags", "visual_tags", "audio_tags")


def catalog_table(
    log: SyntheticLog, *, paused_share: float = 0.05, seed: int = 0, creatives_per_ad: int = 1
) -> Any:
    """Joins creatives with their campaigns; ``paused_share`` of the campaigns are paused.

    ``creatives_per_ad`` > 1 adds an ``ad_id`` column: each campaign's creatives, in id order,
    grouped into ads of that many (the last one may have fewer); 1 (the default) adds none, so
    each creative is its own ad and the table is the one it always was.

    A world drawn with content adds its :data:`CONTENT_COLUMNS` (``caption`` and ``hashtags``
    are also what the safety gate's text rules read).

    ``bid`` is the campaign's own bid as the training log records it (the target CPA for oCPM),
    so the model's ``bid`` feature means the same thing at serving time.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not 0.0 <= paused_share <= 1.0:
        raise ValueError(f"paused_share must be in [0, 1], got {paused_share}")
    if isinstance(creatives_per_ad, bool) or not isinstance(creatives_per_ad, int):
        raise TypeError(f"creatives_per_ad must be an int, got {type(creatives_per_ad).__name__}")
    if creatives_per_ad < 1:
        raise ValueError(f"creatives_per_ad must be >= 1, got {creatives_per_ad}")
    creatives, campaigns = log.creatives, log.campaigns
    rows = pc.index_in(creatives["campaign_id"], campaigns["campaign_id"])
    campaign = campaigns.take(rows)
    objective = campaign["objective"].combine_chunks()
    is_ocpm = pc.equal(objective.cast(pa.string()), "oCPM")
    own_bid = pc.if_else(is_ocpm, campaign["target_cpa"], campaign["bid"])
    paused = np.random.default_rng(seed).random(len(campaigns)) < paused_share
    status = np.where(paused, "paused", "active")[np.asarray(rows)]
    regions = campaign["target_regions"].combine_chunks()
    regions = pa.ListArray.from_arrays(regions.offsets, regions.flatten().cast(pa.string()))
    columns = {
        "creative_id": creatives["creative_id"],
        "advertiser_id": creatives["advertiser_id"],
        "campaign_id": creatives["campaign_id"],
        "category": creatives["category"],
        "objective": objective,
        "bid": own_bid,
        "target_cpa": campaign["target_cpa"],
        "regions": regions,
        "status": pa.array(status),
        "format": creatives["format"],
        "duration_s": creatives["duration_s"],
        "music_id": creatives["music_id"],
        "language": creatives["language"],
    }
    for name in CONTENT_COLUMNS:  # a world drawn with content: the creative features it adds
        if name in creatives.column_names:
            columns[name] = creatives[name]
    if creatives_per_ad > 1:
        columns["ad_id"] = pa.array(
            _ad_ids(
                np.asarray(creatives["campaign_id"]),
                np.asarray(creatives["creative_id"]),
                creatives_per_ad,
            )
        )
    return pa.table(columns)


def _ad_ids(campaign_id: np.ndarray, creative_id: np.ndarray, per_ad: int) -> np.ndarray:
    """Ad ids (int64 [R]): a campaign's creatives in id order, ``per_ad`` to an ad."""
    order = np.lexsort((creative_id, campaign_id))
    sorted_campaigns = campaign_id[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_campaigns)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    within = np.arange(len(order)) - first  # position within the campaign
    ads = np.empty(len(order), dtype=np.int64)
    ads[order] = sorted_campaigns * 1_000_000 + within // per_ad
    return ads
