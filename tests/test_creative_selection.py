"""Creative selection within an ad: at most one creative of an ad (the catalog's ``ad_id``) wins
a request, chosen in the same selection as the per-advertiser cap.

Glossary: an *ad* (ad group) holds several creatives; a *plain reference* is the whole
selection written as a Python loop (scores, eligibility, the greedy walk under both caps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adrank import ops
from adrank.data import SyntheticConfig, generate_log
from adrank.data.catalog import catalog_table
from adrank.orchestrator.catalog import Catalog
from adrank.service.app import create_app
from service_world import LOCAL, build_world

ALL = np.uint64(2**64 - 1)


def plain_selection(c, rows, p_ctr, *, k, reserve, cap, region_bit, killed):
    """The winners (positions) of CPM/CPC candidates as a Python loop: eCPM, eligibility, then
    the best first (ties: the earlier candidate), skipping any whose advertiser or ad is full."""
    scored = []
    for i, r in enumerate(rows):
        bid = float(c["bid"][r])
        ecpm = bid if c["objective"][r] == 0 else bid * float(p_ctr[i]) * 1000.0
        mask = int(c["region_mask"][r])
        eligible = (
            bool(c["active"][r])
            and not killed[i]
            and (mask == int(ALL) or mask & region_bit != 0)
            and float(np.float32(ecpm)) >= reserve
        )
        if eligible:
            scored.append((-float(np.float32(ecpm)), i))
    per_advertiser: dict[int, int] = {}
    per_ad: set[int] = set()
    winners = []
    for _, i in sorted(scored):
        if len(winners) == k:
            break
        advertiser, ad = int(c["advertiser_id"][rows[i]]), int(c["ad_id"][rows[i]])
        if per_advertiser.get(advertiser, 0) >= cap or ad in per_ad:
            continue
        per_advertiser[advertiser] = per_advertiser.get(advertiser, 0) + 1
        per_ad.add(ad)
        winners.append(i)
    return winners


@st.composite
def catalogs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    num_rows = draw(st.integers(1, 60))
    size = draw(st.integers(0, 90))
    masks = rng.integers(0, 4, num_rows).astype(np.uint64)
    masks[rng.random(num_rows) < 0.5] = ALL
    c = {
        "creative_id": rng.permutation(num_rows).astype(np.int64) + 10,
        "advertiser_id": rng.integers(0, max(1, num_rows // 4), num_rows),
        "category": np.zeros(num_rows, dtype=np.int64),
        "objective": rng.integers(0, 2, num_rows).astype(np.int8),  # CPM and CPC
        "bid": rng.choice([0.5, 1.0, 2.0, 3.0], num_rows),  # few values: scores tie
        "target_cpa": np.zeros(num_rows),
        "region_mask": masks,
        "active": rng.random(num_rows) < 0.85,
        "ad_id": rng.integers(0, max(1, num_rows // draw(st.integers(1, 5))), num_rows),
    }
    rows = rng.integers(0, num_rows, size)  # an id may repeat: still one per ad
    p_ctr = rng.choice([0.0005, 0.001, 0.002, 0.003], size).astype(np.float32)
    rules = {
        "k": draw(st.integers(0, 20)),
        "reserve": draw(st.sampled_from([0.0, 0.9])),
        "cap": draw(st.integers(1, 3)),
        "region_bit": draw(st.sampled_from([0, 1, 2])),
        "killed": rng.random(size) < 0.1,
    }
    return c, rows, p_ctr, rules


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalogs())
def test_one_creative_per_ad_equals_the_plain_reference(case) -> None:
    c, rows, p_ctr, rules = case
    got = ops.auction(
        ops.auction_catalog(**c),
        rows,
        p_ctr,
        k=rules["k"],
        reserve_ecpm=rules["reserve"],
        neg_penalty=0.0,
        max_per_advertiser=rules["cap"],
        region_bit=rules["region_bit"],
        killed=rules["killed"],
    )
    np.testing.assert_array_equal(got.winners, plain_selection(c, rows, p_ctr, **rules))
    ads = c["ad_id"][rows[got.winners]]
    assert len(set(ads.tolist())) == len(ads)


def test_the_next_creative_of_an_ad_wins_when_its_best_is_capped_out() -> None:
    """Why not a pre-filter to each ad's best: here the ad's best creative (advertiser 1) loses
    to the advertiser cap, and its second (advertiser 2, same ad) rightly wins a slot."""
    c = {
        "creative_id": np.array([1, 2, 3, 4]),
        "advertiser_id": np.array([1, 1, 1, 2]),
        "category": np.zeros(4, dtype=np.int64),
        "objective": np.zeros(4, dtype=np.int8),
        "bid": np.array([5.0, 4.0, 3.0, 2.0]),
        "target_cpa": np.zeros(4),
        "region_mask": np.full(4, ALL),
        "active": np.ones(4, dtype=bool),
        "ad_id": np.array([10, 11, 12, 12]),
    }
    got = ops.auction(
        ops.auction_catalog(**c),
        np.arange(4),
        np.full(4, 0.01, np.float32),
        k=3,
        reserve_ecpm=0.0,
        neg_penalty=0.0,
        max_per_advertiser=2,
    )
    np.testing.assert_array_equal(got.winners, [0, 1, 3])
    np.testing.assert_array_equal(got.price, [4.0, 2.0, 0.0])  # GSP over the capped walk
    without_ads = ops.auction(
        ops.auction_catalog(**{**c, "ad_id": None}),
        np.arange(4),
        np.full(4, 0.01, np.float32),
        k=3,
        reserve_ecpm=0.0,
        neg_penalty=0.0,
        max_per_advertiser=2,
    )
    np.testing.assert_array_equal(without_ads.winners, [0, 1, 3])
    same_ad = ops.auction(
        ops.auction_catalog(**{**c, "ad_id": np.array([10, 10, 12, 12])}),
        np.arange(4),
        np.full(4, 0.01, np.float32),
        k=3,
        reserve_ecpm=0.0,
        neg_penalty=0.0,
        max_per_advertiser=2,
    )
    np.testing.assert_array_equal(same_ad.winners, [0, 2])


@pytest.mark.parametrize(
    ("ad_id", "error", "match"),
    [
        (np.array([1.5, 2.5]), TypeError, "ad_id must hold integers"),
        (np.array([1, 2, 3]), ValueError, r"ad_id must hold one value per creative \(2\)"),
        (np.array([[1, 2]]), ValueError, "ad_id must be 1-D"),
    ],
)
def test_bad_ad_ids_are_named(ad_id, error, match) -> None:
    c = {
        "creative_id": [1, 2],
        "advertiser_id": [1, 2],
        "category": [0, 0],
        "objective": np.zeros(2, dtype=np.int8),
        "bid": [1.0, 1.0],
        "target_cpa": [0.0, 0.0],
        "region_mask": np.full(2, ALL),
        "active": [True, True],
    }
    with pytest.raises(error, match=match):
        ops.auction_catalog(**c, ad_id=ad_id)


def test_a_catalog_reads_its_optional_ad_ids() -> None:
    log = generate_log(
        50,
        seed=1,
        config=SyntheticConfig(num_advertisers=5, num_campaigns=10, num_creatives=60, num_users=50),
    )
    plain = catalog_table(log)
    assert "ad_id" not in plain.column_names
    assert Catalog.from_arrow(plain).ad_id is None
    grouped = catalog_table(log, creatives_per_ad=3)
    # the default keeps today's table (compared as text: NaN target CPAs equal themselves)
    assert str(grouped.drop(["ad_id"]).to_pylist()) == str(plain.to_pylist())
    catalog = Catalog.from_arrow(grouped)
    campaigns = dict(zip(catalog.ad_id.tolist(), catalog.campaign_id.tolist(), strict=False))
    for ad, campaign in zip(catalog.ad_id, catalog.campaign_id, strict=True):
        assert campaigns[int(ad)] == campaign  # an ad never spans campaigns
    assert np.bincount(np.unique(catalog.ad_id, return_inverse=True)[1]).max() == 3
    with pytest.raises(ValueError, match="creatives_per_ad must be >= 1"):
        catalog_table(log, creatives_per_ad=0)
    with pytest.raises(TypeError, match="creatives_per_ad must be an int"):
        catalog_table(log, creatives_per_ad=2.0)
    nulls = grouped.set_column(
        grouped.column_names.index("ad_id"), "ad_id", pa.array([None] * len(grouped), pa.int64())
    )
    with pytest.raises(ValueError, match="catalog column ad_id has"):
        Catalog.from_arrow(nulls)


def test_over_http_one_creative_per_ad(tmp_path: Path) -> None:
    """Every creative of a campaign in one ad: the response then has one per campaign."""
    world = build_world(tmp_path)
    client = TestClient(create_app(world.ranker, schema=world.schema), base_url=LOCAL)
    body = {**world.good_body(), "k": 10, "constraints": {"max_per_advertiser": 10}}

    def campaigns() -> list[int]:
        response = client.post("/v1/rank", json=body)
        assert response.status_code == 200, response.text
        return [c["campaign_id"] for c in response.json()["creatives"]]

    before = campaigns()
    assert len(set(before)) < len(before)  # without ads, a campaign shows several creatives
    table = world.catalog.append_column("ad_id", world.catalog["campaign_id"])
    world.ranker.swap_catalog(Catalog.from_arrow(table))
    after = campaigns()
    assert len(after) > 0
    assert len(set(after)) == len(after)
    assert after[0] == before[0]  # the best creative of the best ad still leads
