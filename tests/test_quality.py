"""The data-quality gates: every rule with a log that breaks it and one that does not, the
report, ``adrank check`` and the gate before ``adrank train``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adrank.cli import main
from adrank.data import generate_log
from adrank.features import load_schema
from adrank.quality import (
    QualityError,
    QualitySettings,
    check_frame,
    load_settings,
    population_stability_index,
)

T0 = 1.7e9


def clean_log(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A synthetic log with ids, timestamps and click/conversion times that break no rule."""
    frame = generate_log(rows, seed=seed).impressions.to_pandas()
    rng = np.random.default_rng(seed)
    frame["impression_id"] = np.arange(rows) + seed * 10**6
    frame["timestamp"] = T0 + rng.uniform(0, 86_400, rows)
    clicked = frame["click"] == 1
    frame["click_time"] = np.where(clicked, frame["timestamp"] + 5.0, np.nan)
    frame["conversion_time"] = np.where(
        frame["conversion"] == 1, frame["click_time"] + 3600, np.nan
    )
    return frame


@pytest.fixture(scope="module")
def schema():
    return load_schema()


def found(report) -> set[tuple[str, str]]:
    return {(f.severity, f.rule) for f in report.findings}


def _set(frame, column, rows, value):
    frame[column] = frame[column].astype(object)
    for row in rows:
        frame.at[row, column] = value
    return frame


def _conversions(frame):
    return frame.index[frame["conversion"] == 1]


BREAKERS = {
    "dense type": (
        lambda f: f.assign(watch_minutes=f["watch_minutes"].astype(str)),
        {("error", "types")},
    ),
    "categorical type": (lambda f: _set(f, "gender", [3], ["a", "b"]), {("error", "types")}),
    "nulls warn": (
        lambda f: f.assign(bid=f["bid"].where(np.arange(len(f)) % 10 >= 6)),
        {("warning", "nulls")},
    ),
    "nulls stop": (
        lambda f: f.assign(bid=f["bid"].where(np.arange(len(f)) % 50 == 0)),
        {("error", "nulls"), ("warning", "nulls")},
    ),
    "label values": (
        lambda f: f.assign(click=f["click"].where(f.index != 4, 2)),
        {("error", "labels")},
    ),
    "label rate": (lambda f: f.assign(negative=0), {("warning", "label rate")}),
    "duplicate ids": (
        lambda f: f.assign(impression_id=f["impression_id"].where(f.index != 9, 8)),
        {("error", "duplicate ids")},
    ),
    "timestamps": (
        lambda f: f.assign(timestamp=f["timestamp"].where(f.index != 2, 5.0)),
        {("error", "timestamps")},
    ),
    "conversion without click": (
        lambda f: f.assign(
            conversion=f["conversion"].where(f.index != f.index[f["click"] == 0][0], 1)
        ),
        {("error", "conversion after click")},
    ),
    "conversion before click": (
        lambda f: f.assign(conversion_time=f["conversion_time"] - 7200),
        {("error", "conversion after click")},
    ),
    "late conversion warns": (
        lambda f: _late(f, 1),
        {("warning", "attribution window")},
    ),
    "late conversions stop": (
        lambda f: _late(f, 10**6),
        {("error", "attribution window"), ("warning", "attribution window")},
    ),
}


def _late(frame, count):
    late = _conversions(frame)[:count]
    frame.loc[late, "conversion_time"] = frame.loc[late, "click_time"] + 8 * 86_400
    return frame


# One late conversion among ~dozens is within the error share when the share allows it.
SETTINGS = {"late conversion warns": QualitySettings(late_conversion_rate_error=0.5)}


def test_a_clean_log_passes_every_rule(schema):
    report = check_frame(clean_log(), schema, reference=clean_log(seed=1))
    assert report.findings == []
    assert report.psi
    assert max(report.psi.values()) < 0.1
    assert "0 error(s), 0 warning(s)" in report.format()


@pytest.mark.parametrize("name", sorted(BREAKERS))
def test_each_rule_catches_the_log_that_breaks_it(schema, name):
    breaker, expected = BREAKERS[name]
    report = check_frame(breaker(clean_log()), schema, SETTINGS.get(name))
    assert found(report) == expected, report.format()


def test_drift_warns_then_stops_with_the_psi(schema):
    reference = clean_log(seed=1)
    moved = clean_log().assign(bid=lambda f: f["bid"] * 1.3)
    shifted = clean_log().assign(bid=lambda f: f["bid"] * 4)
    assert found(check_frame(moved, schema, reference=reference)) == {("warning", "drift")}
    report = check_frame(shifted, schema, reference=reference)
    assert found(report) == {("error", "drift"), ("warning", "drift")}
    assert report.psi["bid"] > 0.25
    assert "largest drift (PSI): bid" in report.format()


def test_psi_of_same_and_moved_distributions():
    rng = np.random.default_rng(0)
    a, b = pd.Series(rng.normal(size=20_000)), pd.Series(rng.normal(size=20_000))
    assert population_stability_index(a, b) < 0.01
    assert population_stability_index(a, b + 1.0) > 0.25
    cats = pd.Series(["x"] * 900 + ["y"] * 100)
    assert population_stability_index(cats, pd.Series(["y"] * 900 + ["x"] * 100)) > 1.0
    assert np.isnan(population_stability_index(pd.Series([], dtype=float), a))
    with pytest.raises(ValueError, match="bins must be >= 2"):
        population_stability_index(a, b, bins=1)


def test_settings_errors(tmp_path):
    with pytest.raises(ValueError, match="null_rate_warning must be in"):
        QualitySettings(null_rate_warning=2.0)
    with pytest.raises(ValueError, match="null_rate_warning must be <= null_rate_error"):
        QualitySettings(null_rate_warning=0.5, null_rate_error=0.1)
    with pytest.raises(ValueError, match="label_rate_min must be <="):
        QualitySettings(label_rate_min=0.6)
    with pytest.raises(ValueError, match="attribution_window_s must be > 0"):
        QualitySettings(attribution_window_s=0)
    with pytest.raises(ValueError, match="psi_bins must be >= 2"):
        QualitySettings(psi_bins=1)
    with pytest.raises(ValueError, match="psi_warning must be > 0"):
        QualitySettings(psi_warning=0.5, psi_error=0.2)
    path = tmp_path / "q.toml"
    path.write_text("[quality]\npsi_error = 0.5\n")
    assert load_settings(path).psi_error == 0.5
    path.write_text("[quality]\npsi_eror = 0.5\n")
    with pytest.raises(ValueError, match="unknown quality setting 'psi_eror'"):
        load_settings(path)
    with pytest.raises(ValueError, match="cannot read quality settings"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(TypeError, match="schema must be a FeatureSchema"):
        check_frame(clean_log(100), "schema.toml")


def _parquet(frame, path):
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def test_check_command_and_the_gate_before_train(tmp_path, capsys):
    good = _parquet(clean_log(), tmp_path / "good.parquet")
    bad = _parquet(BREAKERS["duplicate ids"][0](clean_log()), tmp_path / "bad.parquet")
    warn = _parquet(BREAKERS["nulls warn"][0](clean_log()), tmp_path / "warn.parquet")
    plot = tmp_path / "report.png"
    assert main(["check", str(good), "--reference", str(good), "--plot", str(plot)]) == 0
    assert "0 error(s)" in capsys.readouterr().out
    assert plot.stat().st_size > 0
    assert main(["check", str(bad)]) == 1
    assert "duplicate ids" in capsys.readouterr().out
    out = tmp_path / "m.pt"
    train = ["train", "--out", str(out), "--no-progress", "--batch-size", "256", "--data"]
    assert main([*train, str(bad)]) != 0
    assert "duplicate ids" in capsys.readouterr().err
    assert not out.exists()
    assert main([*train, str(warn)]) == 0
    assert "warning nulls" in capsys.readouterr().err
    assert main([*train, str(bad), "--skip-check"]) == 0


def test_quality_error_carries_its_report(schema):
    report = check_frame(BREAKERS["timestamps"][0](clean_log(500)), schema)
    error = QualityError(report)
    assert isinstance(error, ValueError)
    assert error.report is report
    assert "timestamps" in str(error)
