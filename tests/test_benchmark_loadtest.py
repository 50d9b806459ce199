"""The load test's arithmetic against hand-worked numbers, its closed loop, and the targets."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from adrank.benchmark.loadtest import LoadResult, LoadSummary, median_summary, run_load, summarize
from adrank.benchmark.targets import check_targets

NAN = np.nan


def _result(latencies_ms, wall_s, stages, name="x", concurrency=1) -> LoadResult:
    return LoadResult(
        name,
        concurrency,
        np.asarray(latencies_ms, dtype=np.float64) / 1e3,
        wall_s,
        {k: np.asarray(v, dtype=np.float64) for k, v in stages.items()},
    )


def test_summary_by_hand() -> None:
    result = _result(
        [10, 20, 30, 40, 50],
        0.25,
        {
            "catalog": [0.5, 0.5, 0.5, 0.5, 0.5],
            "features": [1, 2, 3, 4, 5],
            "model": [5, 6, 7, 8, 9],
        },
    )
    summary = summarize(result)
    # numpy's linear percentile over 5 values: position p/100 * 4 between sorted values.
    assert summary.latency_ms[50] == pytest.approx(30.0)
    assert summary.latency_ms[95] == pytest.approx(48.0)  # 40 + 0.8 * 10
    assert summary.latency_ms[99] == pytest.approx(49.6)  # 40 + 0.96 * 10
    assert summary.requests_per_s == pytest.approx(20.0)  # 5 requests in 0.25 s
    assert summary.requests == 5
    assert summary.stage_p50_ms == pytest.approx({"catalog": 0.5, "features": 3.0, "model": 7.0})
    # Outside the model per call: 1.5, 2.5, 3.5, 4.5, 5.5 -> median 3.5 (the model is left out).
    assert summary.outside_model_p50_ms == pytest.approx(3.5)
    # Wall minus model per call: 5, 14, 23, 32, 41 -> median 23.
    assert summary.latency_minus_model_p50_ms == pytest.approx(23.0)


def test_summary_skips_calls_without_stages() -> None:
    # The third call reported nothing: it counts for latency and throughput, not for stages.
    result = _result(
        [4, 8, 100, 6],
        0.5,
        {"features": [1, 3, NAN, 2], "selection": [1, 1, NAN, 1], "model": [2, 2, NAN, 2]},
    )
    summary = summarize(result)
    assert summary.requests_per_s == pytest.approx(8.0)
    assert summary.latency_ms[50] == pytest.approx(7.0)
    assert summary.stage_p50_ms["features"] == pytest.approx(2.0)
    assert summary.outside_model_p50_ms == pytest.approx(3.0)  # median of 2, 4, 3
    assert summary.latency_minus_model_p50_ms == pytest.approx(4.0)  # median of 2, 6, 4


def test_summary_without_stages_reports_none() -> None:
    summary = summarize(_result([1, 2, 3], 1.0, {}))
    assert summary.outside_model_p50_ms is None
    assert summary.latency_minus_model_p50_ms is None
    assert summary.requests_per_s == pytest.approx(3.0)


def test_median_over_rounds() -> None:
    rounds = [
        summarize(_result(lat, wall, {"features": f, "model": [1, 1]}))
        for lat, wall, f in (
            ([10, 10], 0.1, [1, 1]),  # 20 req/s, outside 1
            ([30, 30], 0.4, [5, 5]),  # 5 req/s, outside 5
            ([20, 20], 0.2, [2, 2]),  # 10 req/s, outside 2
        )
    ]
    combined = median_summary(rounds)
    assert combined.latency_ms[50] == pytest.approx(20.0)
    assert combined.requests_per_s == pytest.approx(10.0)
    assert combined.outside_model_p50_ms == pytest.approx(2.0)
    assert combined.stage_p50_ms["features"] == pytest.approx(2.0)
    assert (combined.requests, combined.rounds) == (6, 3)
    with pytest.raises(ValueError, match="rounds mix configurations"):
        median_summary([rounds[0], summarize(_result([1], 1.0, {}, name="other"))])
    with pytest.raises(ValueError, match="at least one summary"):
        median_summary([])


def test_run_load_is_a_closed_loop_of_c_workers() -> None:
    in_flight, peak, seen = [0], [0], []
    lock = threading.Lock()

    def call(request: int) -> dict:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            seen.append(request)
        time.sleep(0.005)
        with lock:
            in_flight[0] -= 1
        return {"timings_ms": {"model": 1.0, "features": float(request)}}

    requests = list(range(12))
    result = run_load(call, requests, 3, name="fake", warmup=2)
    assert seen[:2] == [0, 1]  # the warm-up calls, in turn, before the measured ones
    assert sorted(seen[2:]) == requests  # then each request once
    assert peak[0] == 3
    assert not np.isnan(result.latencies_s).any()
    assert (result.latencies_s >= 0.005).all()
    assert result.stages_ms["features"].tolist() == [float(r) for r in requests]
    # Three workers on 12 calls of >= 5 ms: at least 4 calls in turn, well under 12.
    assert 0.02 <= result.wall_s < 12 * 0.005


def test_run_load_raises_the_first_error_and_checks_arguments() -> None:
    def call(request: int) -> None:
        if request == 3:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_load(call, list(range(8)), 2)
    with pytest.raises(ValueError, match="concurrency must be an integer >= 1"):
        run_load(call, [1], 0)
    with pytest.raises(ValueError, match="at least one request"):
        run_load(call, [], 1)
    with pytest.raises(ValueError, match="warmup must be an integer >= 0"):
        run_load(call, [1], 1, warmup=-1)


def _summary(name: str, rps: float, p99: float, outside: float | None, c: int = 1) -> LoadSummary:
    return LoadSummary(name, c, 100, {50: p99 / 2, 95: p99, 99: p99}, rps, {}, outside, None)


@pytest.mark.parametrize(
    ("rps", "p99", "outside", "met"),
    [
        (300.0, 10.0, 0.9, (True, True)),
        (300.0, 10.0, 1.0, (True, True)),  # both bounds are inclusive
        (299.0, 10.0, 1.1, (False, False)),  # 2.99x, and 1.1 ms outside
        (900.0, 10.5, 0.5, (True, False)),  # fast enough, but a worse p99 than the baseline
    ],
)
def test_targets(rps, p99, outside, met) -> None:
    summaries = [_summary("adrank", rps, p99, outside), _summary("base", 100.0, 10.0, 20.0)]
    roles = {"adrank": "adrank", "base": "baseline"}
    targets = check_targets(summaries, roles, "base")
    assert [t.configuration for t in targets] == ["adrank", "adrank"]  # the baseline is no target
    assert (targets[0].met, targets[1].met) == met
    assert f"{rps / 100:.2f}x" in targets[1].measured


@pytest.mark.parametrize(
    ("http_minus_model", "met"),
    [(0.9, True), (1.0, False)],  # 0.5 ms over the API's 0.4 is met (inclusive), 0.6 is not
)
def test_transport_target(http_minus_model, met) -> None:
    def summary(name: str, minus_model: float) -> LoadSummary:
        return dataclasses.replace(
            _summary(name, 100.0, 10.0, 0.3), latency_minus_model_p50_ms=minus_model
        )

    roles = {"api+triton": "adrank", "http+triton": "adrank"}
    summaries = [summary("api+triton", 0.4), summary("http+triton", http_minus_model)]
    transport = [t for t in check_targets(summaries, roles, "base") if "over api+triton" in t.goal]
    assert [(t.configuration, t.met) for t in transport] == [("http+triton", met)]
    assert f"({http_minus_model:.3f} vs 0.400 ms)" in transport[0].measured
