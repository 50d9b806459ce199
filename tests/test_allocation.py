"""The mixed feed against hand-worked feeds, its rules as properties, and settings lookup."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adrank.allocation import AD, ORGANIC, AllocationPolicy, AllocationRules, build_feed

AS_ECPM = 1000.0  # exchange rate under which an ad's value equals its eCPM


def layout(feed) -> list[str]:
    return [("A" if k == AD else "O") + str(i) for k, i in zip(feed.kind, feed.index, strict=True)]


def test_hand_worked_feed_with_position_gap_and_share() -> None:
    rules = AllocationRules(
        first_ad_position=2, min_gap=3, max_ad_share=0.25, exchange_rate=AS_ECPM
    )
    feed = build_feed(np.array([9, 8, 7, 6, 5, 4, 3, 2.0]), np.array([10, 6.5, 1.0]), rules)
    # slot 2: 10 > 7; slots 3-5 keep the gap; slot 6: 6.5 > 4; slot 7: share 2/8 reached.
    assert layout(feed) == ["O0", "O1", "A0", "O2", "O3", "O4", "A1", "O5"]
    np.testing.assert_array_equal(feed.value, [9, 8, 10, 7, 6, 5, 6.5, 4])
    np.testing.assert_array_equal(feed.ad_slots, [2, 6])
    np.testing.assert_array_equal(feed.placed_ads, [0, 1])


def test_an_ad_waits_for_an_organic_item_it_beats() -> None:
    rules = AllocationRules(first_ad_position=2, min_gap=0, max_ad_share=1.0, exchange_rate=AS_ECPM)
    feed = build_feed(np.array([9, 8, 7, 6, 5, 4, 3, 2.0]), np.array([5.5]), rules)
    assert layout(feed) == ["O0", "O1", "O2", "O3", "A0", "O4", "O5", "O6"]
    tie = build_feed(np.array([9, 8, 7.0]), np.array([7.0]), rules)
    assert layout(tie) == ["O0", "O1", "O2"]  # a tie keeps the organic item


def test_exchange_rate_converts_ecpm_to_organic_units() -> None:
    rules = AllocationRules(first_ad_position=0, min_gap=0, max_ad_share=1.0, exchange_rate=0.5)
    # 2000 eCPM -> 2 per impression -> 1.0 organic units: beats only the 0.5 item.
    feed = build_feed(np.array([2, 1.5, 0.5]), np.array([2000.0]), rules)
    assert layout(feed) == ["O0", "O1", "A0"]
    assert feed.value[2] == 1.0


def test_edges() -> None:
    open_rules = AllocationRules(first_ad_position=0, min_gap=0, max_ad_share=1.0)
    assert layout(build_feed(np.empty(0), np.array([5.0, 4.0]), open_rules, feed_length=3)) == [
        "A0",
        "A1",
    ]
    no_ads = AllocationRules(max_ad_share=0.0, exchange_rate=AS_ECPM)
    assert layout(build_feed(np.array([1.0, 1.0]), np.array([99.0]), no_ads)) == ["O0", "O1"]
    assert len(build_feed(np.array([1.0]), np.ones(1), open_rules, feed_length=0).kind) == 0
    empty = build_feed(np.empty(0), np.empty(0), open_rules)
    assert empty.kind.dtype == np.int8
    assert len(empty.kind) == 0
    longer = build_feed(np.array([3.0, 2.0]), np.empty(0), open_rules, feed_length=5)
    assert layout(longer) == ["O0", "O1"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"first_ad_position": -1}, "first_ad_position must be an integer >= 0, got -1"),
        ({"min_gap": 1.5}, "min_gap must be an integer >= 0, got 1.5"),
        ({"max_ad_share": 1.2}, r"max_ad_share must be a number in \[0, 1\], got 1.2"),
        ({"exchange_rate": 0}, "exchange_rate must be a finite number > 0, got 0"),
        ({"exchange_rate": float("inf")}, "exchange_rate must be a finite number > 0"),
    ],
)
def test_rules_reject_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AllocationRules(**kwargs)


def test_build_feed_rejects_bad_inputs() -> None:
    rules = AllocationRules()
    with pytest.raises(ValueError, match="organic_values must be 1-D, got 2 dimensions"):
        build_feed(np.ones((2, 2)), np.ones(1), rules)
    with pytest.raises(ValueError, match="ad_ecpm must be finite"):
        build_feed(np.ones(3), np.array([np.nan]), rules)
    with pytest.raises(ValueError, match="feed_length must be an integer >= 0, got -1"):
        build_feed(np.ones(3), np.ones(1), rules, feed_length=-1)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(0, 10), max_size=30),
    st.lists(st.floats(0, 20_000), max_size=10),
    st.integers(0, 5),
    st.integers(0, 4),
    st.floats(0, 1),
    st.floats(0.1, 3),
    st.none() | st.integers(0, 40),
)
def test_every_rule_holds(organic, ads, first, gap, share, rate, feed_length) -> None:
    ads = sorted(ads, reverse=True)
    rules = AllocationRules(first, gap, share, rate)
    feed = build_feed(np.array(organic), np.array(ads), rules, feed_length)
    length = len(organic) if feed_length is None else feed_length
    slots = feed.ad_slots
    assert len(feed.kind) <= length
    assert len(slots) <= math.floor(share * length + 1e-9)
    assert (slots >= first).all()
    assert (np.diff(slots) - 1 >= gap).all()
    np.testing.assert_array_equal(feed.placed_ads, np.arange(len(slots)))  # rank order
    organic_order = feed.index[feed.kind == ORGANIC]
    np.testing.assert_array_equal(organic_order, np.arange(len(organic_order)))  # feed order
    for slot in slots:  # each ad beats the organic item that would have taken its slot
        displaced = int((feed.kind[:slot] == ORGANIC).sum())
        item = organic[displaced] if displaced < len(organic) else 0.0
        assert feed.value[slot] > item
        assert feed.value[slot] == pytest.approx(ads[feed.index[slot]] / 1000 * rate)
    # Nothing is left out that could fill a slot.
    assert len(feed.kind) == min(length, len(organic) + len(slots))


def test_policy_picks_the_most_specific_rules_and_applies_the_ad_load_cap() -> None:
    feed_us = AllocationRules(first_ad_position=1)
    feed_any = AllocationRules(first_ad_position=2)
    any_de = AllocationRules(first_ad_position=3, max_ad_share=0.5)
    policy = AllocationPolicy(
        default=AllocationRules(first_ad_position=4),
        overrides={("feed", "US"): feed_us, ("feed", None): feed_any, (None, "DE"): any_de},
    )
    assert policy.rules_for("feed", "US") is feed_us
    assert policy.rules_for("feed", "DE") is feed_any
    assert policy.rules_for("stories", "DE") is any_de
    assert policy.rules_for("stories", None).first_ad_position == 4
    capped = policy.rules_for("stories", "DE", ad_load_cap=0.1)
    assert capped.max_ad_share == 0.1
    assert capped.first_ad_position == 3
    assert policy.rules_for("stories", "DE", ad_load_cap=0.9).max_ad_share == 0.5
