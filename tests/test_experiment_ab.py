"""A/B statistics by hand and against scipy.stats, the report from a hand-made log, and the
simulated A/B test: the truth covered, a planted sample-ratio mismatch caught, the command."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

import experiment_world
from adrank.cli import main
from adrank.experiments import statistics as st
from adrank.experiments.report import analyze, write_report
from adrank.experiments.request_log import SCHEMA
from adrank.simulation.ab_test import EXPERIMENT, run_ab_test, write_ab_report


def test_mean_delta_by_hand_and_against_scipy():
    d = st.mean_delta([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    se = math.sqrt(1 / 3 + 1 / 3)
    assert (d.delta, d.std_error) == (pytest.approx(1.0), pytest.approx(se))
    assert d.ci_low == pytest.approx(1 - 1.959964 * se, rel=1e-6)
    rng = np.random.default_rng(0)
    a, b = rng.exponential(1.0, 4000), rng.exponential(1.05, 5000)
    ours = st.mean_delta(a, b)
    welch = stats.ttest_ind(b, a, equal_var=False)
    low, high = welch.confidence_interval()
    assert ours.p_value == pytest.approx(welch.pvalue, rel=2e-3)
    assert (ours.ci_low, ours.ci_high) == (
        pytest.approx(low, rel=1e-3),
        pytest.approx(high, rel=1e-3),
    )


def test_ratio_delta_method_against_its_linearization_and_a_bootstrap():
    rng = np.random.default_rng(1)
    impressions = rng.poisson(5, 3000).astype(float) + 1
    clicks = rng.binomial(impressions.astype(int), 0.1).astype(float)
    ratio, variance = st.ratio_variance(clicks, impressions)
    residual = clicks - ratio * impressions  # the influence function of sum y / sum x
    assert ratio == clicks.sum() / impressions.sum()
    assert variance == pytest.approx(residual.var(ddof=1) / (len(clicks) * impressions.mean() ** 2))
    draws = rng.integers(0, 3000, (2000, 3000))
    boot = clicks[draws].sum(1) / impressions[draws].sum(1)
    assert math.sqrt(variance) == pytest.approx(boot.std(), rel=0.1)
    d = st.ratio_delta(clicks, impressions, clicks * 1.1, impressions)
    assert d.delta == pytest.approx(0.1 * ratio)


def test_sample_ratio_check_against_scipy():
    for df in range(1, 6):
        for x in (0.0, 0.7, 4.0, 30.0):
            assert st.chi2_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), abs=1e-13)
    check = st.sample_ratio_check([5200, 4800], [0.5, 0.5])
    reference = stats.chisquare([5200, 4800], [5000, 5000])
    assert check.statistic == pytest.approx(reference.statistic)
    assert check.p_value == pytest.approx(reference.pvalue)
    assert check.mismatch  # 4 standard deviations off a 50/50 split
    assert not st.sample_ratio_check([5020, 4980], [1, 1]).mismatch
    three = st.sample_ratio_check([100, 210, 290], [1, 2, 3])
    assert three.p_value == pytest.approx(stats.chisquare([100, 210, 290], [100, 200, 300]).pvalue)


def test_cuped_removes_the_squared_correlation_and_keeps_the_difference():
    rng = np.random.default_rng(2)
    x = rng.normal(10, 2, 4000)
    y = x + rng.normal(0, 1, 4000)
    y[2000:] += 0.3
    adjusted, info = st.cuped(y, x)
    assert info.theta == pytest.approx(np.cov(y, x)[0, 1] / x.var(ddof=1))
    assert info.variance_reduction == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2)
    raw = st.mean_delta(y[:2000], y[2000:])
    cut = st.mean_delta(adjusted[:2000], adjusted[2000:])
    assert cut.std_error < 0.6 * raw.std_error
    assert cut.ci_low < 0.3 < cut.ci_high


def test_msprt_by_hand_and_peeking():
    v, tau2, delta = 0.04, 0.09, 0.5
    lam = math.sqrt(v / (v + tau2)) * math.exp(tau2 * delta**2 / (2 * v * (v + tau2)))
    assert st.msprt_p_value(delta, v, tau2) == pytest.approx(1 / lam)
    assert st.msprt_p_value(0.0, v, tau2) == 1.0
    # A/A tests read at 40 looks: stopping at the first fixed-horizon p < 0.05 rejects far more
    # than 5 %; the mSPRT's running minimum stays near its level.
    rng = np.random.default_rng(3)
    naive = always = 0
    for _ in range(400):
        a, b = rng.normal(0, 1, (2, 40, 50)).cumsum(axis=1)  # running sums per look
        n = 50 * np.arange(1, 41)
        delta = (b - a).sum(axis=1) / n
        variance = 2 / n
        z = np.abs(delta) / np.sqrt(variance)
        naive += (2 * (1 - stats.norm.cdf(z)) < 0.05).any()
        always += (
            min(st.msprt_p_value(d, s, 1.0) for d, s in zip(delta, variance, strict=True)) < 0.05
        )
    assert naive / 400 > 0.15
    assert always / 400 <= 0.07


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: st.mean_delta([1.0], [1.0, 2.0]), "control needs at least 2 units"),
        (lambda: st.mean_delta([1.0, np.inf], [1.0, 2.0]), "control must be finite"),
        (lambda: st.mean_delta([1.0, 2.0], [1.0, 2.0], alpha=0), "alpha must be"),
        (lambda: st.ratio_variance([1.0, 2.0], [0.0, 0.0]), "positive sum"),
        (lambda: st.ratio_variance([1.0, 2.0], [1.0, 2.0, 3.0]), "one length"),
        (lambda: st.chi2_sf(1.0, 0), "df must be an integer >= 1"),
        (lambda: st.sample_ratio_check([1], [1]), "one length >= 2"),
        (lambda: st.sample_ratio_check([1, -1], [1, 1]), "counts must be >= 0"),
        (lambda: st.sample_ratio_check([1, 1], [1, 0]), "shares must be > 0"),
        (lambda: st.cuped([1.0, 2.0], [1.0, 2.0, 3.0]), "one length"),
        (lambda: st.msprt_p_value(0.1, 0.0, 1.0), "must be > 0"),
    ],
)
def test_bad_statistics_inputs_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _log(rows):
    base = {name: None for name in SCHEMA.names}
    return pa.Table.from_pylist([base | row for row in rows], schema=SCHEMA)


def _row(request_id, user, arm, shown):
    return {
        "request_id": request_id,
        "user": json.dumps({"user_id": user}),
        "arms": json.dumps({"e": arm}),
        "shown_creative_id": list(range(shown)),
        "shown_campaign_id": [7] * shown,
    }


def test_the_report_by_hand(tmp_path):
    log = _log(
        [
            _row("r1", 1, "a", 2),
            _row("r2", 1, "a", 1),
            _row("r3", 2, "a", 0),
            _row("r4", 3, "b", 2),
            _row("r5", 4, "b", 2),
            _row("r6", 5, "c", 1),
        ]
    )
    events = pa.table(
        {
            "request_id": ["r1", "r1", "r2", "r4", "r4", "r5", "r9"],
            "creative_id": [0, 0, 0, 0, 1, 0, 0],
            "event": ["click", "impression", "negative", "click", "click", "conversion", "click"],
            "revenue": [0.5, 0.01, 0.0, 0.5, 0.5, 0.0, 9.0],
        }
    )
    report = analyze(log, events, "e", shares={"a": 1, "b": 1, "c": 1}, budgets={7: 10.0})
    a, b = report.arms["a"], report.arms["b"]
    assert (a["units"], a["requests"], a["impressions"]) == (2, 3, 3)
    assert a["CTR"] == pytest.approx(1 / 3)
    assert a["revenue per 1000 requests"] == pytest.approx(1000 * 0.51 / 3)
    assert a["negative-feedback rate"] == pytest.approx(1 / 3)
    assert b["CTR"] == pytest.approx(2 / 4)
    assert b["CVR"] == pytest.approx(1 / 2)
    assert b["ad load (ads per request)"] == 2.0
    assert report.deltas["b"]["CTR"].delta == pytest.approx(0.5 - 1 / 3)
    assert report.sample_ratio.counts == (2, 2, 1)
    assert set(report.deltas) == {"b"}  # "c" has one unit: no variance, no delta
    assert report.spend_vs_budget["a"] == pytest.approx(0.51 / (10 / 3))
    path = write_report(report, tmp_path)
    text = path.read_text()
    assert "no sample-ratio mismatch" in text
    assert "mSPRT" in text
    assert (tmp_path / "deltas.png").stat().st_size > 0
    with pytest.raises(ValueError, match="control arm 'z' is not in the log"):
        analyze(log, events, "e", control="z")
    with pytest.raises(ValueError, match="no logged request is in experiment 'x'"):
        analyze(log, events, "x")
    with pytest.raises(ValueError, match="events lack the columns"):
        analyze(log, events.drop(["revenue"]), "e")
    with pytest.raises(ValueError, match=r"events\.event must be among"):
        analyze(log, events.set_column(2, "event", pa.array(["view"] * 7)), "e")
    with pytest.raises(ValueError, match="shares lack the arms"):
        analyze(log, events, "e", shares={"a": 1})


def test_simulated_ab_covers_the_truth_and_a_planted_mismatch_is_caught(tmp_path, capsys):
    world = experiment_world.world()
    clean = run_ab_test(world, tmp_path / "clean", requests=1500, seed=4)
    report, path = write_ab_report(clean)
    assert not report.sample_ratio.mismatch
    revenue = report.deltas["treatment"]["revenue per 1000 requests"]
    truth = clean.true_deltas["revenue per 1000 requests"]
    assert revenue.ci_low <= truth <= revenue.ci_high
    assert "The truth (simulation)" in path.read_text()
    assert max(info.variance_reduction for *_, info in report.cuped.values()) > 0.05
    broken = run_ab_test(world, tmp_path / "broken", requests=1500, seed=4, srm_drop=0.3)
    d = broken.directory
    code = main(
        [
            "experiment", "report", "--log", str(d / "log"), "--events",
            str(d / "events.parquet"), "--experiment", EXPERIMENT, "--experiments",
            str(d / "experiments.toml"), "--pre-log", str(d / "pre-log"), "--pre-events",
            str(d / "pre-events.parquet"), "--out", str(tmp_path / "report"),
        ]
    )  # fmt: skip
    assert code == 1  # a broken split fails the command
    assert "SAMPLE-RATIO MISMATCH" in capsys.readouterr().out
    assert "SAMPLE-RATIO MISMATCH" in (tmp_path / "report" / "report.md").read_text()
    with pytest.raises(SystemExit, match="together"):
        main(["experiment", "report", "--log", "x", "--events", "y", "--experiment", "e",
              "--pre-log", "z"])  # fmt: skip
    with pytest.raises(ValueError, match="srm_drop must be in"):
        run_ab_test(world, tmp_path / "x", srm_drop=1.0)


def test_adrank_simulate_ab_prints_the_truth_beside_the_measure(tmp_path, capsys):
    args = ["simulate", "--ab", "--workspace", str(tmp_path / "ws"), "--rows", "3000"]
    args += ["--campaigns", "6", "--requests", "600", "--candidates", "30"]
    assert main([*args, "--out", str(tmp_path / "ab")]) == 0
    out = capsys.readouterr().out
    assert "true delta" in out
    assert "sample-ratio check" in out
    assert (tmp_path / "ab" / "report" / "report.md").exists()
    with pytest.raises(SystemExit, match=r"--srm-drop must be in \[0, 1\)"):
        main([*args, "--srm-drop", "1.5"])
