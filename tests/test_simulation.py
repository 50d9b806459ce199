"""``adrank simulate`` end to end on a small day through the real Ranker: billing totals, kill
switches and pacing wired through the Ranker's arguments, the report and its plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adrank.cli import main
from adrank.orchestrator.model import TorchScriptModel
from adrank.pacing import PacingConfig
from adrank.simulation import day_run, make_world, simulation_world
from adrank.simulation.world import DAY_START
from adrank.workspace import prepare_workspace

CAMPAIGNS, ROWS = 6, 3000


@pytest.fixture(scope="module")
def workspace_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("simulate")
    prepare_workspace(
        root,
        rows=ROWS,
        world=simulation_world(CAMPAIGNS),
        repository=root / "repository",
        say=lambda _: None,
    )
    return root


@pytest.fixture(scope="module")
def world(workspace_dir):
    workspace = prepare_workspace(
        workspace_dir,
        rows=ROWS,
        world=simulation_world(CAMPAIGNS),
        repository=workspace_dir / "repository",
        say=lambda _: None,
    )
    return make_world(workspace, seed=1)


def test_every_billed_cent_reaches_the_pacing_store_and_killed_campaigns_never_win(world):
    campaigns = world.campaign_ids
    model = TorchScriptModel(world.version_dir)
    unbudgeted = np.full(len(campaigns), np.inf)
    free = day_run(world, model, PacingConfig(), unbudgeted, seed=1)
    spend = free.simulate(world, requests=500, seed=1, candidates=30).spend
    assert (spend > 0).sum() >= 2
    # Kill the smallest spender that spent anything: the top one keeps winning beside it.
    killed = int(campaigns[np.flatnonzero(spend > 0)[np.argmin(spend[spend > 0])]])
    run = day_run(world, model, PacingConfig(), unbudgeted, seed=1)
    run.traffic.kill_campaign(killed)
    result = run.simulate(world, requests=500, seed=1, candidates=30)
    assert result.requests > 450
    assert result.impressions > 0  # the others still win
    ids, recorded = run.pacing.store.spend(int(run.pacing.config.day_of(DAY_START)))
    billed = dict(zip(result.campaign_ids.tolist(), result.spend.tolist(), strict=True))
    assert billed[killed] == 0.0  # killed all day, through the Ranker's ``killed`` lookup
    assert billed[int(campaigns[np.argmax(spend)])] > 0
    np.testing.assert_allclose(recorded, [billed[c] for c in ids.tolist()], rtol=1e-9)


def test_a_budget_caps_spend_through_the_rankers_pacing_lookup(world):
    campaigns = world.campaign_ids
    model = TorchScriptModel(world.version_dir)
    free = day_run(world, model, PacingConfig(enabled=False), np.full(len(campaigns), np.inf))
    spend = free.simulate(world, requests=500, seed=2, candidates=30).spend
    top = int(np.argmax(spend))
    budgets = np.full(len(campaigns), np.inf)
    budgets[top] = spend[top] / 4
    capped = day_run(world, model, PacingConfig(enabled=False), budgets)
    result = capped.simulate(world, requests=500, seed=2, candidates=30)
    # The cap stops it once recorded spend reaches the budget; late events may overshoot a bit.
    assert budgets[top] <= result.spend[top] < 1.5 * budgets[top]
    stopped = np.cumsum(result.minute_spend[top]) >= budgets[top] * 1.2
    assert not stopped.any() or result.minute_spend[top, np.argmax(stopped) + 10 :].sum() == 0


def test_simulate_writes_the_report(workspace_dir, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    args = ["simulate", "--requests", "500", "--campaigns", str(CAMPAIGNS), "--rows", str(ROWS)]
    args += ["--workspace", str(workspace_dir), "--candidates", "30", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "reusing the workspace" in printed
    assert "report:" in printed
    report = (out / "report.md").read_text()
    assert "pacing on and off" in report
    assert "Ranked by adrank's Ranker" in report
    plots = sorted(out.glob("campaign_*.png"))
    assert len(plots) == report.count("![campaign") >= 1
    for plot in plots:
        assert plot.read_bytes()[:4] == b"\x89PNG"


def test_a_small_sweep_holds_the_overspend_bound_in_every_world(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sweep-report"
    args = ["simulate", "--sweep", "--seeds", "1", "--campaign-counts", str(CAMPAIGNS)]
    args += ["--delays", "prompt,late-clicks", "--requests", "600", "--rows", str(ROWS)]
    args += ["--candidates", "30", "--workspace", str(tmp_path / "ws"), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "2 worlds" in printed
    assert "worst overspend over the sweep" in printed
    report = (out / "sweep.md").read_text()
    assert report.count(f"| {CAMPAIGNS} | 1 |") == 2  # one row per world
    worst = float(printed.split("worst overspend over the sweep: ")[1].split("%")[0])
    assert worst <= 2.0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--delays", "prompt,never"], "--delays must be among"),
        (["--seeds", "one"], "--seeds must be comma-separated integers"),
        (["--campaign-counts", "1"], "--campaign-counts must be integers >= 2"),
    ],
)
def test_sweep_flags_are_checked(flags: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=message):
        main(["simulate", "--sweep", *flags, "--workspace", str(tmp_path)])


def test_event_delays_draw_within_their_bounds_and_tell_pacing() -> None:
    from adrank.simulation.delays import DELAYS, LATE_CLICKS, Lag

    rng = np.random.default_rng(0)
    for delays in DELAYS.values():
        for lag in (delays.impression, delays.click, delays.conversion):
            draws = [lag.draw(rng) for _ in range(500)]
            assert min(draws) >= 0
            assert max(draws) <= lag.max
    config = LATE_CLICKS.pacing_config()
    assert config.report_delay_s == 120.0  # impressions up to a minute late, plus their minute
    assert config.attribution_window_s == 900.0  # clicks up to 14 minutes late
    with pytest.raises(ValueError, match="shape must be uniform or exponential"):
        Lag("normal", 3)
    with pytest.raises(ValueError, match="max must be whole minutes"):
        Lag("uniform", -1)
    with pytest.raises(ValueError, match="an exponential lag needs a mean > 0"):
        Lag("exponential", 5)
