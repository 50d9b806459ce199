"""The pacing controller on scripted spend traces, its vectorized step against a scalar
reference, the events' checks, and the service's multipliers."""

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


def controller_step_ref(config, state, budget, spend, now):  # one campaign at a time
    def share(t):
        f = ((t - config.day_offset_s) % 86400) / 86400
        weights = [w / sum(config.curve.hourly_weights) for w in config.curve.hourly_weights]
        hour = min(int(f * 24), 23)
        return sum(weights[:hour]) + weights[hour] * (f * 24 - hour)

    then, current = share(state.updated_at), share(now)
    out = []
    for i in range(len(budget)):
        remaining = max(budget[i] - state.spend_at_update[i], 0.0)
        plan = remaining * (current - then) / max(1 - then, 1e-9)
        spent = spend[i] - state.spend_at_update[i]
        error = min(max((plan - spent) / plan, -1.0), 1.0) if plan > 0 else 0.0
        u = state.log_multiplier[i] + config.ki * error + config.kp * (error - state.last_error[i])
        out.append((min(max(u, math.log(config.min_multiplier)), 0.0), error))
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 1000),
            st.floats(0, 1000),
            st.floats(-7, 0),
            st.floats(-1, 1),
            st.floats(0, 50),
        ),
        min_size=1,
        max_size=8,
    ),
    st.floats(0, 80_000),
    st.floats(1, 6000),
)
def test_step_matches_reference(rows, start, elapsed) -> None:
    config = PacingConfig()
    budget = np.array([r[0] for r in rows])
    at_update = np.array([r[1] for r in rows])
    state = ControllerState(
        campaign_id=np.arange(len(rows), dtype=np.int64),
        log_multiplier=np.array([r[2] for r in rows]),
        last_error=np.array([r[3] for r in rows]),
        spend_at_update=at_update,
        updated_at=DAY0 + start,
    )
    spend = at_update + np.array([r[4] for r in rows])
    now = DAY0 + min(start + elapsed, 86_399.0)
    got = controller_step(config, state, budget, spend, now)
    want = controller_step_ref(config, state, budget, spend, now)
    np.testing.assert_allclose(got.log_multiplier, [w[0] for w in want], atol=1e-9)
    np.testing.assert_allclose(got.last_error, [w[1] for w in want], atol=1e-9)
    np.testing.assert_array_equal(got.spend_at_update, spend)


def paced_service(budget: float = 1000.0, **settings_) -> PacingService:
    service = PacingService(SQLitePacingStore(":memory:"), PacingConfig(**settings_))
    service.set_budget(1, budget, DAY0)
    return service


def run_trace(service: PacingService, spend_per_minute, minutes: int, start: float = DAY0):
    """Feeds ``spend_per_minute(minute, multiplier)`` back in; returns the multipliers seen."""
    seen = []
    for minute in range(minutes):
        now = start + minute * MINUTE
        multiplier = float(service.multipliers(np.array([1]), now)[0])
        seen.append(multiplier)
        cost = spend_per_minute(minute, multiplier)
        if cost > 0:
            service.record_events([SpendEvent(f"m{minute}", 1, "impression", cost, now + 1)])
    return np.array(seen)


def test_spending_exactly_on_plan_keeps_the_multiplier() -> None:
    config = PacingConfig()
    service = paced_service()
    curve, budget = config.curve, 1000.0

    def on_plan(minute: int, _: float) -> float:
        f0, f1 = minute / 1440, (minute + 1) / 1440
        return budget * float(curve.cumulative(f1) - curve.cumulative(f0))

    # Spend in minute m is recorded before the step at m + 1 reads it.
    seen = run_trace(service, on_plan, 300)
    np.testing.assert_allclose(seen, 0.5, rtol=1e-6)


def test_overspending_lowers_and_underspending_raises_the_multiplier() -> None:
    fast = run_trace(paced_service(), lambda m, _: 5.0, 30)  # far above ~0.1 a minute at night
    assert (np.diff(fast) <= 0).all()
    assert fast[-1] == pytest.approx(PacingConfig().min_multiplier)
    slow = run_trace(paced_service(), lambda m, _: 0.0, 30)
    assert slow[-1] == 1.0
    assert (np.diff(slow) >= 0).all()


def test_no_windup_after_a_long_drought() -> None:
    def drought_then_flood(minute: int, _: float) -> float:
        return 0.0 if minute < 300 else 20.0

    seen = run_trace(paced_service(), drought_then_flood, 306)
    assert seen[300] == 1.0
    assert seen[303] < seen[302] < seen[301] < 1.0  # it reacts at the first step of the flood


def test_closed_loop_tracks_the_target_curve_and_lands_on_budget() -> None:
    config = PacingConfig()
    budget = 1000.0
    rng = np.random.default_rng(0)

    # The plant: spend grows with the multiplier and with traffic; at m = 1 demand is 3x budget.
    def plant(minute: int, multiplier: float) -> float:
        traffic = float(config.curve.rate(minute / 1440))
        return 3 * budget / 1440 * traffic * multiplier**1.5 * rng.uniform(0.7, 1.3)

    service = paced_service(budget)
    spends = []

    def recorded_plant(minute: int, multiplier: float) -> float:
        spends.append(plant(minute, multiplier))
        return spends[-1]

    run_trace(service, recorded_plant, 1440)
    final = service.status(1, DAY0 + 86_399)
    assert budget * 0.95 <= final.spend <= budget * 1.02
    target = budget * config.curve.cumulative(np.arange(1, 1441) / 1440)
    assert np.abs(np.cumsum(spends) - target)[120:].max() < 0.05 * budget


def test_spent_budget_stops_the_campaign_at_once() -> None:
    service = paced_service(budget=10.0)
    assert service.multipliers(np.array([1]), DAY0)[0] == 0.5
    service.record_events([SpendEvent("a", 1, "click", 9.0, DAY0 + 1)])
    assert service.multipliers(np.array([1]), DAY0 + 2)[0] == 0.5
    service.record_events([SpendEvent("b", 1, "click", 1.0, DAY0 + 3)])
    assert service.multipliers(np.array([1]), DAY0 + 4)[0] == 0.0  # before any controller step
    status = service.status(1, DAY0 + 5)
    assert status.exhausted
    assert status.spend == 10.0
    # Raising the budget mid-day lets it win again.
    service.set_budget(1, 20.0, DAY0 + 6)
    assert service.multipliers(np.array([1]), DAY0 + 7)[0] == 0.5


def test_a_new_day_starts_from_zero_and_late_events_stay_in_their_day() -> None:
    service = paced_service(budget=10.0)
    service.record_events([SpendEvent("a", 1, "impression", 10.0, DAY0 + 100)])
    assert service.multipliers(np.array([1]), DAY0 + 200)[0] == 0.0
    tomorrow = DAY0 + 86_400 + 10
    assert service.multipliers(np.array([1]), tomorrow)[0] == 0.5
    service.record_events([SpendEvent("late", 1, "impression", 3.0, DAY0 + 86_000)])
    assert service.status(1, tomorrow).spend == 0.0


def test_pacing_off_keeps_only_the_budget_cap() -> None:
    service = paced_service(budget=10.0, enabled=False)
    assert service.multipliers(np.array([1]), DAY0)[0] == 1.0
    service.record_events([SpendEvent("a", 1, "impression", 12.0, DAY0 + 1)])
    assert service.multipliers(np.array([1]), DAY0 + 2)[0] == 0.0


def test_multipliers_are_vectorized_over_candidates() -> None:
    service = PacingService(SQLitePacingStore(":memory:"))
    for campaign, budget in ((3, 5.0), (9, 1.0), (11, 8.0)):
        service.set_budget(campaign, budget, DAY0)
    service.record_events([SpendEvent("a", 9, "impression", 1.0, DAY0)])
    ids = np.random.default_rng(1).integers(0, 14, size=500)
    want = {3: 0.5, 9: 0.0, 11: 0.5}
    got = service.multipliers(ids, DAY0 + 1)
    assert got.dtype == np.float64
    assert got.shape == (500,)
    np.testing.assert_array_equal(got, [want.get(int(c), 1.0) for c in ids])
    assert service.multipliers(np.empty(0, dtype=np.int64), DAY0 + 1).shape == (0,)


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
    [("update_interval_s", 0), ("kp", -1), ("ki", 0), ("initial_multiplier", 1.5),
     ("min_multiplier", 0), ("day_offset_s", 86_400), ("ki", float("nan"))],
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
    assert service.status(42, DAY0).daily_budget is None
