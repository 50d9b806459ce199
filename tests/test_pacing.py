"""The pacing controller on scripted spend traces, its vectorized step against a scalar
reference, the throttle's draws, the budget cap and reserve, and the events' checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adrank.pacing import (
    ControllerState,
    PacingConfig,
    PacingService,
    SpendEvent,
    SQLitePacingStore,
    TrafficCurve,
)
from adrank.pacing.controller import controller_step

DAY0 = 1_735_689_600.0  # 2025-01-01 00:00 UTC
MINUTE = 60.0


# --- the step against a plain scalar reference -------------------------------------------------


def share_ref(config: PacingConfig, fraction: float) -> float:
    """Traffic share expected before ``fraction`` of the day: hourly weights, linear in between."""
    weights = [w / sum(config.curve.hourly_weights) for w in config.curve.hourly_weights]
    hour = min(int(fraction * 24), 23)
    return sum(weights[:hour]) + weights[hour] * (fraction * 24 - hour)


def controller_step_ref(config, state, budget, spend, now):  # one campaign at a time, floats
    def fraction(t):
        return ((t - config.day_offset_s) % 86400) / 86400

    # The curve itself is checked against share_ref in test_traffic_curve_matches_its_reference;
    # its values are taken as they are here, so that F(t) - F(t0) cancels the same way.
    def share(f):
        return float(config.curve.cumulative(f))

    f_then, f_now = share(fraction(state.updated_at)), share(fraction(now))
    ahead = share(min(fraction(now) + config.catch_up_s / 86400, 1.0))
    horizon = max(ahead - f_now, 1e-6)
    target = share(min(fraction(now) + (config.catch_up_s + config.lead_s) / 86400, 1.0))
    dt = now - state.updated_at
    a = -math.expm1(-dt / config.demand_window_s)  # 1 - exp(-dt / w), exact for tiny dt
    columns = {name: getattr(state, name).tolist() for name in ControllerState.COLUMNS}
    budget, spend = budget.tolist(), spend.tolist()  # Python floats: inf and nan, no warnings
    s0, d_spent0 = columns["spend_at_update"], columns["demand_spent"]
    d_exposed0, rate0 = columns["demand_exposed"], columns["spend_rate"]
    out = []
    for i in range(len(budget)):
        p = columns["participation"][i]
        spent = max(spend[i] - s0[i], 0.0)
        d_spent = d_spent0[i] + a * (spent - d_spent0[i])
        d_exposed = d_exposed0[i] + a * (p * max(f_now - f_then, 0.0) - d_exposed0[i])
        rate = spent / dt if dt > 0 else rate0[i]
        spend_rate = rate0[i] + a * (rate - rate0[i])
        want = (budget[i] * target - spend[i]) / horizon
        ceiling = min(1.0, config.max_increase * p)
        if d_exposed <= 1e-12:
            new_p = p  # nothing measured yet
        elif want <= 0:
            new_p = config.min_participation  # far ahead of the curve
        elif d_spent == 0:
            new_p = ceiling  # exposed, nothing spent: grow
        else:
            wanted = want * d_exposed / d_spent
            new_p = p if math.isnan(wanted) else min(max(wanted, config.min_participation), ceiling)
        out.append((new_p, d_spent, d_exposed, spend_rate))
    return out


tiny = st.sampled_from([0.0, 5e-324, 2.2e-311, 1e-300, 1e-12])
amount = st.one_of(tiny, st.floats(0, 1e12))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            amount,  # budget
            amount,  # spend at the last step
            st.one_of(tiny, st.floats(0, 1e9)),  # spent since
            st.floats(1e-4, 1.0),  # participation
            amount,  # demand_spent
            st.one_of(tiny, st.floats(0, 1.0)),  # demand_exposed
            amount,  # spend_rate
        ),
        min_size=1,
        max_size=8,
    ),
    st.floats(0, 86_399),
    st.one_of(st.just(0.0), st.floats(0, 6000)),
    st.sampled_from([0.0, 1800.0, 7200.0]),
)
def test_step_matches_reference(rows, start, elapsed, lead) -> None:
    config = PacingConfig(lead_s=lead)
    column = [np.array([r[j] for r in rows]) for j in range(7)]
    budget, at_update = column[0], column[1]
    state = ControllerState(
        campaign_id=np.arange(len(rows), dtype=np.int64),
        participation=column[3],
        demand_spent=column[4],
        demand_exposed=column[5],
        spend_rate=column[6],
        spend_at_update=at_update,
        updated_at=DAY0 + start,
    )
    spend = at_update + column[2]
    now = DAY0 + min(start + elapsed, 86_399.0)
    got = controller_step(config, state, budget, spend, now)
    want = np.array(controller_step_ref(config, state, budget, spend, now))
    np.testing.assert_allclose(got.participation, want[:, 0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.demand_spent, want[:, 1], rtol=1e-9)
    np.testing.assert_allclose(got.demand_exposed, want[:, 2], rtol=1e-9)
    np.testing.assert_allclose(got.spend_rate, want[:, 3], rtol=1e-9)
    assert ((got.participation >= config.min_participation) & (got.participation <= 1)).all()
    np.testing.assert_array_equal(got.spend_at_update, spend)
    assert got.updated_at == now


@pytest.mark.parametrize("budget", [0.0, 5e-324, 2.2e-311, 1e-300, 1.0, 1e300, 1.7e308])
@pytest.mark.parametrize("spend", [0.0, 5e-324, 2.2e-311, 1.0, 1e300, 1.7e308])
def test_step_is_silent_and_in_range_on_extreme_amounts(budget: float, spend: float) -> None:
    # pytest turns warnings into errors: an overflow or a division by a subnormal would fail.
    config = PacingConfig()
    n = 4
    state = ControllerState(
        campaign_id=np.arange(n, dtype=np.int64),
        participation=np.array([1e-4, 0.1, 0.5, 1.0]),
        demand_spent=np.array([0.0, 5e-324, 1.0, 1.7e308]),
        demand_exposed=np.array([0.0, 5e-324, 1e-3, 1.0]),
        spend_rate=np.array([0.0, 5e-324, 1.0, 1e300]),
        spend_at_update=np.zeros(n),
        updated_at=DAY0 + 86_000,
    )
    for now in (DAY0 + 86_000, DAY0 + 86_060, DAY0 + 86_399.9):
        got = controller_step(config, state, np.full(n, budget), np.full(n, spend), now)
        for name in ControllerState.COLUMNS:
            assert np.isfinite(getattr(got, name)).all() or name == "spend_rate", name
        assert ((got.participation >= 1e-4) & (got.participation <= 1)).all()
        service_view = PacingService(SQLitePacingStore(":memory:"))
        assert service_view.multipliers(np.array([1]), now).tolist() == [1.0]


# --- the service on scripted spend traces ------------------------------------------------------


def paced_service(budget: float = 1000.0, seed: int = 0, **settings_) -> PacingService:
    service = PacingService(SQLitePacingStore(":memory:"), PacingConfig(**settings_), seed=seed)
    service.set_budget(1, budget, DAY0)
    return service


def participation(service: PacingService, now: float) -> float:
    return float(service.participation(np.array([1]), now)[0])


def run_trace(service: PacingService, spend_in_minute, minutes: int, delay: int = 0):
    """Feeds ``spend_in_minute(minute, participation)`` back in as events ``delay`` minutes
    late; returns the participation seen at the start of each minute and the spend."""
    seen, spends, pending = [], [], {}
    for minute in range(minutes):
        now = DAY0 + minute * MINUTE
        p = participation(service, now)
        seen.append(p)
        cost = spend_in_minute(minute, p)
        spends.append(cost)
        if cost > 0:  # in ten charges, so no single one is large
            events = [
                SpendEvent(f"m{minute}-{j}", 1, "impression", cost / 10, now + 30)
                for j in range(10)
            ]
            pending.setdefault(minute + delay, []).extend(events)
        if minute in pending:
            service.record_events(pending.pop(minute))
    return np.array(seen), np.array(spends)


EXPECTED = TrafficCurve()


def expected_share(minute: int, curve: TrafficCurve = EXPECTED) -> float:
    return float(curve.cumulative((minute + 1) / 1440) - curve.cumulative(minute / 1440))


def test_nothing_spent_doubles_participation_each_step_up_to_one() -> None:
    seen, _ = run_trace(paced_service(), lambda m, p: 0.0, 8)
    np.testing.assert_allclose(seen, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0])


def test_a_campaign_with_demand_settles_where_it_spends_along_the_curve() -> None:
    budget, demand = 1000.0, 4000.0  # at p = 1 it would spend 4x its budget over the day

    def linear(minute: int, p: float) -> float:
        return p * demand * expected_share(minute)

    seen, spends = run_trace(paced_service(budget, lead_s=0), linear, 600)
    # want / D = B / (4 B) once on the curve; it gets there within the first hour.
    np.testing.assert_allclose(seen[60:], 0.25, rtol=0.02)
    target = budget * TrafficCurve().cumulative(np.arange(1, 601) / 1440)
    assert np.abs(np.cumsum(spends) - target)[60:].max() < 0.01 * budget


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_behind_the_curve_raises_and_ahead_lowers_participation(factor: float) -> None:
    budget, demand = 1000.0, 4000.0

    def shifted(minute: int, p: float) -> float:  # demand changes by ``factor`` at minute 300
        return p * demand * (1.0 if minute < 300 else factor) * expected_share(minute)

    seen, _ = run_trace(paced_service(budget, lead_s=0), shifted, 600)
    before, after = seen[299], seen[-1]
    assert before == pytest.approx(0.25, rel=0.02)
    # It settles where it spends along the curve again: p = B / (factor * 4 B).
    assert after == pytest.approx(0.25 / factor, rel=0.05)
    steps = np.diff(seen[301:331])  # and moves that way from the first step that sees it
    assert (steps > 0).all() if factor < 1 else (steps < 0).all()


def test_no_windup_after_a_long_drought() -> None:
    def drought_then_flood(minute: int, p: float) -> float:
        return 0.0 if minute < 300 else p * 20_000 * expected_share(minute)

    seen, _ = run_trace(paced_service(lead_s=0), drought_then_flood, 400)
    assert seen[300] == 1.0  # no demand: it sat at p = 1, and nothing accumulated meanwhile
    assert (np.diff(seen[301:]) <= 0).all()  # down from the first step that sees the flood
    assert seen[315] < 0.5  # within the demand window
    assert seen[-1] < 0.1  # toward B / D = 0.05 as the gap closes


@pytest.mark.parametrize(("seed", "lead"), [(0, 1800.0), (1, 1800.0), (2, 0.0)])
def test_closed_loop_tracks_the_target_curve_and_lands_on_budget(seed: int, lead: float) -> None:
    rng = np.random.default_rng(seed)
    budget = 1000.0
    true_day = TrafficCurve(
        tuple(np.asarray(TrafficCurve().hourly_weights) * rng.uniform(0.8, 1.2, 24))
    )

    def plant(minute: int, p: float) -> float:  # traffic off the expected curve, noisy demand
        return p * 3 * budget * expected_share(minute, true_day) * rng.uniform(0.5, 1.5)

    service = paced_service(budget, seed=seed, lead_s=lead)
    _, spends = run_trace(service, plant, 1440, delay=2)
    final = service.status(1, DAY0 + 86_399).spend
    assert budget * 0.97 <= final <= budget * 1.005
    target = budget * service.config.target_curve(np.arange(1, 1441) / 1440)
    assert np.abs(np.cumsum(spends) - target)[120:].max() < 0.05 * budget


def test_a_batch_that_crosses_the_budget_stops_the_campaign_at_once() -> None:
    service = paced_service(budget=10.0, report_delay_s=0)
    assert participation(service, DAY0) == 0.1
    service.record_events([SpendEvent("a", 1, "click", 1.0, DAY0 + 1)])
    assert participation(service, DAY0 + 2) == 0.1
    # One batch takes spend from 1 to 10.5; no controller step runs in between.
    batch = [SpendEvent(f"b{i}", 1, "click", 1.5, DAY0 + 3) for i in range(6)]
    service.record_events(batch)
    assert participation(service, DAY0 + 4) == 0.0
    assert not service.multipliers(np.full(50, 1), DAY0 + 4).any()
    status = service.status(1, DAY0 + 5)
    assert status.exhausted
    assert status.spend == 10.0
    # Raising the budget mid-day lets it win again.
    service.set_budget(1, 20.0, DAY0 + 6)
    assert participation(service, DAY0 + 7) == 0.1


def test_the_reserve_stops_a_campaign_before_its_last_charge_would_overspend() -> None:
    service = paced_service(budget=100.0, report_delay_s=0)
    service.record_events([SpendEvent("a", 1, "click", 2.0, DAY0 + 1)])
    assert participation(service, DAY0 + 2) == 0.1  # 2 + 2 < 100
    service.record_events([SpendEvent(f"b{i}", 1, "click", 1.9, DAY0 + 3) for i in range(50)])
    assert participation(service, DAY0 + 4) == 0.1  # 97 + largest charge 2 < 100
    service.record_events([SpendEvent("c", 1, "click", 1.5, DAY0 + 5)])
    assert participation(service, DAY0 + 6) == 0.0  # 98.5 + 2 >= 100
    # Charges of more than 2 % of the budget: one more than expected would overspend by more
    # than 2 %, so one more of the mean size is held back.
    large = paced_service(budget=100.0, report_delay_s=0)
    batch = [SpendEvent(f"d{i}", 1, "click", 3.0, DAY0 + 1) for i in range(30)]
    large.record_events([*batch, SpendEvent("e", 1, "click", 4.0, DAY0 + 1)])
    assert participation(large, DAY0 + 2) == 0.0  # 94 + 4 + 94 / 31 >= 100, though 94 + 4 < 100
    # Pacing off keeps only the cap: on until the recorded spend reaches the budget.
    off = paced_service(budget=10.0, enabled=False)
    off.record_events([SpendEvent("a", 1, "click", 4.0, DAY0 + 1)])
    off.record_events([SpendEvent("b", 1, "click", 2.5, DAY0 + 3)])  # 6.5 < 10
    assert participation(off, DAY0 + 4) == 1.0
    off.record_events([SpendEvent("c", 1, "click", 3.5, DAY0 + 5)])
    assert participation(off, DAY0 + 6) == 0.0


def test_a_cpc_campaign_keeps_a_reserve_for_the_clicks_still_to_come() -> None:
    service = paced_service(budget=10.0, report_delay_s=0, attribution_window_s=600)
    served = [SpendEvent(f"i{i}", 1, "impression", 0.0, DAY0 + 1) for i in range(10)]
    clicked = [SpendEvent(f"c{i}", 1, "click", 1.0, DAY0 + 1) for i in range(5)]
    service.record_events(served + clicked)
    # Spend 5 + a charge and a mean one in flight fit in 10, but half the impressions got
    # clicked, and all 10 are still inside their attribution window: up to 10 more may come.
    assert participation(service, DAY0 + 2) == 0.0
    # Once they are past the window (counted by whole minutes) they owe nothing, and the
    # campaign serves again.
    assert participation(service, DAY0 + 662) > 0.0


def test_ads_served_here_are_held_back_until_their_events_are_due() -> None:
    service = paced_service(budget=10.0, report_delay_s=60)
    service.record_events([SpendEvent(f"i{i}", 1, "impression", 0.5, DAY0 + 1) for i in range(10)])
    assert participation(service, DAY0 + 2) > 0.0  # 5 + what 10 open impressions may bring
    service.record_served(np.array([1, 1, 1, 7, 1, 1, 1]), DAY0 + 3)  # 7: no budget, ignored
    # Six ads shown that no event reports yet: each may cost 0.5 at once, and a click later.
    assert participation(service, DAY0 + 4) == 0.0
    assert participation(service, DAY0 + 64) > 0.0  # their events are due: no longer held back
    off = paced_service(budget=10.0, enabled=False)
    off.record_served(np.array([1] * 100), DAY0 + 3)  # only the cap binds with pacing off
    assert participation(off, DAY0 + 4) == 1.0


def test_a_known_largest_charge_guards_a_budget_of_a_few_charges() -> None:
    service = PacingService(SQLitePacingStore(":memory:"), PacingConfig(report_delay_s=0))
    service.set_budget(1, 0.5, DAY0, max_charge=0.8)  # one click would overspend by 60 %
    service.set_budget(2, 0.5, DAY0, max_charge=0.2)  # two fit
    service.set_budget(3, 0.5, DAY0)  # unknown: the largest charge seen so far stands in
    assert service.participation(np.array([1, 2, 3]), DAY0 + 1).tolist() == [0.0, 0.1, 0.1]
    service.record_events([SpendEvent("a", 2, "click", 0.1, DAY0 + 1)])
    assert participation(service, DAY0 + 2) == 0.0  # campaign 1 stays closed
    # Charges are more than 2 % of the budget: a charge of up to 0.2 and one more of the mean
    # size are held back: 0.1 + 0.2 + 0.1 < 0.5, then 0.2 + 0.2 + 0.1 reaches it.
    assert service.participation(np.array([2]), DAY0 + 2).tolist() == [0.1]
    service.record_events([SpendEvent("b", 2, "click", 0.1, DAY0 + 2)])
    assert service.participation(np.array([2]), DAY0 + 3).tolist() == [0.0]


def test_duplicates_and_late_events_count_once_in_their_own_day() -> None:
    service = paced_service(budget=100.0)
    event = SpendEvent("a", 1, "click", 3.0, DAY0 + 100)
    assert service.record_events([event, event]).duplicates == 1
    assert service.record_events([event]).duplicates == 1
    assert service.status(1, DAY0 + 200).spend == 3.0
    # A duplicate with another cost neither adds spend nor raises the largest charge.
    service.record_events([SpendEvent("a", 1, "click", 99.0, DAY0 + 300)])
    assert participation(service, DAY0 + 301) > 0  # 3 + reserve(3) < 100
    tomorrow = DAY0 + 86_400 + 10
    assert participation(service, tomorrow) == 0.1
    service.record_events([SpendEvent("late", 1, "impression", 3.0, DAY0 + 86_000)])
    assert service.status(1, tomorrow).spend == 0.0
    assert service.status(1, DAY0 + 86_000).spend == 6.0


def test_throttle_draws_follow_participation_and_share_one_draw_per_campaign() -> None:
    service = PacingService(SQLitePacingStore(":memory:"), seed=3)
    for campaign, budget in ((3, 5.0), (9, 1.0), (11, 8.0)):
        service.set_budget(campaign, budget, DAY0)
    service.record_events([SpendEvent("a", 9, "impression", 1.0, DAY0)])
    ids = np.random.default_rng(1).integers(0, 14, size=500)
    calls = np.array([service.multipliers(ids, DAY0 + 1) for _ in range(4000)])
    assert calls.dtype == np.float64
    assert set(np.unique(calls)) <= {0.0, 1.0}
    for campaign, share in ((3, 0.1), (9, 0.0), (11, 0.1), (0, 1.0), (13, 1.0)):
        columns = calls[:, ids == campaign]
        assert (columns == columns[:, :1]).all()  # one draw per campaign per request
        assert columns[:, 0].mean() == pytest.approx(share, abs=0.015)
    # Campaigns 3 and 11 are throttled independently.
    both = calls[:, ids == 3][:, 0] * calls[:, ids == 11][:, 0]
    assert both.mean() == pytest.approx(0.01, abs=0.006)
    assert service.multipliers(np.empty(0, dtype=np.int64), DAY0 + 1).shape == (0,)


@pytest.mark.parametrize("curve", [TrafficCurve(), TrafficCurve.from_counts(range(1, 25))])
def test_traffic_curve_matches_its_reference(curve: TrafficCurve) -> None:
    config = PacingConfig(curve=curve)
    fractions = [*np.random.default_rng(0).random(500).tolist(), 0.0, 0.5, 23 / 24, 1.0]
    got = curve.cumulative(np.array(fractions))
    np.testing.assert_allclose(got, [share_ref(config, f) for f in fractions], atol=1e-12)


def test_traffic_curve() -> None:
    curve = TrafficCurve()
    f = np.linspace(0, 1, 97)
    shares = curve.cumulative(f)
    assert shares[0] == 0.0
    assert shares[-1] == 1.0
    assert (np.diff(shares) > 0).all()
    np.testing.assert_allclose(TrafficCurve.flat().cumulative(f), f)
    assert curve.rate(21.5 / 24) > 1.5 > 0.3 > curve.rate(4 / 24)
    np.testing.assert_allclose(
        TrafficCurve.from_counts([0] + [5] * 23).shares[1:], 1 / 23, rtol=1e-3
    )
    with pytest.raises(ValueError, match="hourly_weights must have 24 values, got 3"):
        TrafficCurve((1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="hourly_weights must be finite and > 0"):
        TrafficCurve((1.0,) * 23 + (0.0,))


@pytest.mark.parametrize(
    ("name", "value"),
    [("update_interval_s", 0), ("initial_participation", 1.5), ("min_participation", 0),
     ("min_participation", 0.5), ("max_increase", 1.0), ("catch_up_s", 10),
     ("demand_window_s", float("nan")), ("report_delay_s", -1), ("day_offset_s", 86_400),
     ("lead_s", -1), ("lead_s", 86_400), ("attribution_window_s", -1),
     ("attribution_window_s", 86_401)],
)  # fmt: skip
def test_config_rejects_out_of_range_settings(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"pacing setting {name} is out of range"):
        PacingConfig(**{name: value})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"event_id": ""}, "event_id must be a string of 1 to 128 characters"),
        ({"event_id": 5}, "event_id must be a string"),
        ({"campaign_id": "7"}, "campaign_id must be an integer, got '7'"),
        ({"campaign_id": True}, "campaign_id must be an integer, got True"),
        ({"campaign_id": 2**63}, "campaign_id must fit in int64"),
        ({"kind": "view"}, "kind must be one of impression, click, conversion, got 'view'"),
        ({"cost": -1.0}, "cost must be >= 0, got -1.0"),
        ({"cost": float("inf")}, "cost must be finite, got inf"),
        ({"cost": "1"}, "cost must be a number, got '1'"),
        ({"timestamp": float("nan")}, "timestamp must be finite, got nan"),
        ({"timestamp": -5}, "timestamp must be >= 0"),
    ],
)
def test_malformed_events_are_rejected_and_change_nothing(fields: dict, message: str) -> None:
    service = paced_service()
    good = {"event_id": "ok", "campaign_id": 1, "kind": "click", "cost": 2.0, "timestamp": DAY0}
    with pytest.raises(ValueError, match=r"events\[1\]: " + message):
        service.record_events([good, {**good, "event_id": "bad", **fields}])
    assert service.status(1, DAY0 + 1).spend == 0.0
    assert service.record_events([good]).accepted == 1  # "ok" was not stored by the failed batch


def test_set_budget_checks_its_arguments() -> None:
    service = paced_service()
    with pytest.raises(ValueError, match="daily_budget must be a finite number >= 0, got -1"):
        service.set_budget(1, -1, DAY0)
    with pytest.raises(ValueError, match="campaign_id must be an integer, got 'x'"):
        service.set_budget("x", 1.0, DAY0)  # type: ignore[arg-type]
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="max_charge must be a finite number > 0"):
            service.set_budget(1, 1.0, DAY0, max_charge=bad)
    assert service.status(42, DAY0).daily_budget is None
