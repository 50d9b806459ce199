"""``adrank simulate`` end to end on a small day: the report, its plots, and billing totals."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adrank.cli import main
from adrank.pacing import PacingService, SQLitePacingStore
from adrank.simulation import SimClock, StandInRanker, make_world, simulate_day
from adrank.simulation.world import DAY_START
from adrank.traffic import SQLiteTrafficStore, TrafficControl


def test_every_billed_cent_reaches_the_pacing_store() -> None:
    world = make_world(num_campaigns=3, creatives_per_campaign=2, seed=1)
    clock = SimClock()
    pacing = PacingService(SQLitePacingStore(":memory:"))
    traffic = TrafficControl(SQLiteTrafficStore(":memory:"))
    traffic.kill_campaign(2)
    ranker = StandInRanker(world, pacing, traffic, clock)
    result = simulate_day(world, ranker.rank, pacing, clock, requests=1500, seed=1)
    assert result.requests > 1000
    ids, recorded = pacing.store.spend(int(pacing.config.day_of(DAY_START)))
    billed = dict(zip(result.campaign_ids.tolist(), result.spend.tolist(), strict=True))
    assert billed[2] == 0.0  # killed all day
    np.testing.assert_allclose(recorded, [billed[c] for c in ids.tolist()], rtol=1e-9)


def test_simulate_writes_the_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert main(["simulate", "--requests", "2000", "--campaigns", "3", "--out", str(out)]) == 0
    assert "report:" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert "pacing on and off" in report
    assert report.count("![campaign") == 3
    for campaign in (1, 2, 3):
        assert (out / f"campaign_{campaign}.png").read_bytes()[:4] == b"\x89PNG"
