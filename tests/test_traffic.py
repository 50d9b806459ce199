"""Kill switches and ad-load caps: vectorized lookups, persistence, and changes under load."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from adrank.traffic import AdLoadCap, SQLiteTrafficStore, TrafficControl


def blocked_ref(advertisers, campaigns, killed_advertisers, killed_campaigns) -> list[bool]:
    return [
        a in killed_advertisers or c in killed_campaigns
        for a, c in zip(advertisers, campaigns, strict=True)
    ]


def test_blocked_matches_reference() -> None:
    control = TrafficControl(SQLiteTrafficStore(":memory:"))
    rng = np.random.default_rng(0)
    advertisers, campaigns = rng.integers(0, 20, 1000), rng.integers(0, 50, 1000)
    assert not control.blocked(advertisers, campaigns).any()
    for a in (3, 7, 19):
        control.kill_advertiser(a, "fraud review")
    for c in (0, 21, 49):
        control.kill_campaign(c)
    got = control.blocked(advertisers, campaigns)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, blocked_ref(advertisers, campaigns, {3, 7, 19}, {0, 21, 49}))
    control.revive_advertiser(7)
    control.revive_campaign(21)
    control.revive_campaign(12345)  # reviving what is not killed is harmless
    np.testing.assert_array_equal(
        control.blocked(advertisers, campaigns),
        blocked_ref(advertisers, campaigns, {3, 19}, {0, 49}),
    )
    assert control.blocked(np.empty(0), np.empty(0)).shape == (0,)


def test_changes_persist_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "control.sqlite"
    control = TrafficControl(SQLiteTrafficStore(path))
    control.kill_advertiser(5, "chargebacks")
    control.kill_campaign(50, "")
    control.kill_campaign(51)
    control.revive_campaign(51)
    control.set_ad_load_cap(0.2, region="DE")
    control.set_ad_load_cap(0.3, placement="stories")
    control.set_ad_load_cap(0.1, region="US", placement="feed")
    control.set_ad_load_cap(0.15, region="US", placement="feed")  # replaces the previous one
    control.store.close()

    reopened = TrafficControl(SQLiteTrafficStore(path))
    assert reopened.kill_switches() == {"advertisers": {5: "chargebacks"}, "campaigns": {50: ""}}
    assert sorted(reopened.ad_load_caps(), key=lambda c: c.max_ad_share) == [
        AdLoadCap(0.15, "US", "feed"),
        AdLoadCap(0.2, "DE", None),
        AdLoadCap(0.3, None, "stories"),
    ]
    np.testing.assert_array_equal(reopened.blocked([5, 6, 6], [1, 50, 51]), [True, True, False])


def test_ad_load_cap_is_the_smallest_that_applies() -> None:
    control = TrafficControl(SQLiteTrafficStore(":memory:"))
    assert control.ad_load_cap("feed", "US") == 1.0
    control.set_ad_load_cap(0.3, region="US")
    control.set_ad_load_cap(0.2, placement="feed")
    control.set_ad_load_cap(0.25, region="US", placement="stories")
    assert control.ad_load_cap("feed", "US") == 0.2
    assert control.ad_load_cap("stories", "US") == 0.25
    assert control.ad_load_cap("stories", "DE") == 1.0
    assert control.ad_load_cap("feed", None) == 0.2
    assert control.ad_load_cap(None, "US") == 0.3
    assert control.clear_ad_load_cap(placement="feed")
    assert not control.clear_ad_load_cap(placement="feed")
    assert control.ad_load_cap("feed", "US") == 0.3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.kill_advertiser("5"), "advertiser_id must be an integer, got '5'"),
        (lambda c: c.kill_campaign(True), "campaign_id must be an integer, got True"),
        (lambda c: c.kill_campaign(2**64), "campaign_id must fit in int64"),
        (lambda c: c.kill_campaign(1, "x" * 501), "reason must be a string of at most 500"),
        (
            lambda c: c.set_ad_load_cap(1.5, region="US"),
            r"max_ad_share must be a number in \[0, 1\]",
        ),
        (lambda c: c.set_ad_load_cap(0.5), "an ad-load cap needs a region, a placement, or both"),
        (lambda c: c.set_ad_load_cap(0.5, region=""), "region must be a string of 1 to 64"),
        (lambda c: c.blocked([1, 2], [1]), r"must have the same shape, got \(2,\) and \(1,\)"),
    ],
)
def test_bad_changes_are_rejected_and_change_nothing(call, message: str) -> None:
    control = TrafficControl(SQLiteTrafficStore(":memory:"))
    with pytest.raises(ValueError, match=message):
        call(control)
    assert control.kill_switches() == {"advertisers": {}, "campaigns": {}}
    assert control.ad_load_caps() == []


def test_kill_switch_takes_effect_on_the_next_request_under_load() -> None:
    control = TrafficControl(SQLiteTrafficStore(":memory:"))
    advertisers = np.arange(200, dtype=np.int64) % 40
    campaigns = np.arange(200, dtype=np.int64)
    killed = threading.Event()
    warmed = threading.Barrier(5)
    violations: list[int] = []
    calls_after = [0] * 4

    def serve(worker: int) -> None:
        warmed.wait()
        while calls_after[worker] < 300:
            after = killed.is_set()  # read before the call: the kill had returned by then
            mask = control.blocked(advertisers, campaigns)
            if after:
                calls_after[worker] += 1
                if not mask[advertisers == 13].all() or mask[advertisers != 13].any():
                    violations.append(worker)

    workers = [threading.Thread(target=serve, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    warmed.wait()
    control.kill_advertiser(13, "incident")
    killed.set()
    for worker in workers:
        worker.join(timeout=30)
    assert not any(w.is_alive() for w in workers)
    assert violations == []
    assert calls_after == [300] * 4
