"""The service counts every ad it returns as served for pacing (``PacedRanker``): a burst of
wins closes a small budget before the events that report them arrive."""

from __future__ import annotations

import numpy as np
import pytest

from adrank.orchestrator.request import RankRequest
from adrank.pacing import PacingService, SQLitePacingStore
from adrank.service.stack import PacedRanker
from service_world import NOW, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("paced"))


def test_served_ads_count_against_the_budget_before_their_events(world, monkeypatch) -> None:
    import adrank.service.stack as stack

    monkeypatch.setattr(stack.time, "time", lambda: NOW)
    body = world.good_body()
    request = RankRequest(
        "paced", body["user"], body["context"], np.array(body["candidates"]), 5, body["region"]
    )
    pacing = PacingService(SQLitePacingStore(":memory:"))
    paced = PacedRanker(world.ranker, pacing)
    campaign = int(world.ranker.rank(request).campaign_id[0])
    pacing.set_budget(campaign, 3.0, NOW, max_charge=1.0)
    for _ in range(5):  # unpaced: the ranker alone records nothing
        world.ranker.rank(request)
    assert not pacing.status(campaign, NOW).exhausted
    for _ in range(5):  # five wins through the service, no event reported yet
        paced.rank(request)
    assert pacing.status(campaign, NOW).exhausted
    assert paced.readiness() == world.ranker.readiness()
