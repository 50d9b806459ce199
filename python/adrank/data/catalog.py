"""The serving catalog of a synthetic world: one row per creative, in the layout of
:class:`adrank.orchestrator.catalog.Catalog` (required columns plus the creative features)."""

from __future__ import annotations

from typing import Any

import numpy as np

from adrank.data.synthetic import SyntheticLog

__all__ = ["catalog_table"]


def catalog_table(log: SyntheticLog, *, paused_share: float = 0.05, seed: int = 0) -> Any:
    """Joins creatives with their campaigns; ``paused_share`` of the campaigns are paused.

    ``bid`` is the campaign's own bid as the training log records it (the target CPA for oCPM),
    so the model's ``bid`` feature means the same thing at serving time.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not 0.0 <= paused_share <= 1.0:
        raise ValueError(f"paused_share must be in [0, 1], got {paused_share}")
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
    return pa.table(
        {
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
    )
