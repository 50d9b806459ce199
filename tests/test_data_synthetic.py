"""The synthetic short-video ads log: determinism, consistency of its columns, round trip."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from adrank.data import SyntheticConfig, generate_log, read_log
from adrank.features import FeaturePipeline, load_schema
from adrank.training.report import oracle_metrics

SMALL = SyntheticConfig(
    num_advertisers=5, num_campaigns=12, num_creatives=40, num_users=300, num_categories=6
)


@pytest.fixture(scope="module")
def log():
    return generate_log(5000, seed=3, config=SMALL)


def test_same_seed_same_log_other_seed_other_log(log):
    again = generate_log(5000, seed=3, config=SMALL)
    for name in ("impressions", "advertisers", "campaigns", "creatives", "users"):
        # pandas' equality counts NaN (target_cpa of non-oCPM campaigns) as equal to NaN
        assert getattr(log, name).to_pandas().equals(getattr(again, name).to_pandas())
    assert not generate_log(5000, seed=4, config=SMALL).impressions.equals(log.impressions)


def test_labels_follow_the_funnel(log):
    table = log.impressions
    click = table.column("click").to_numpy()
    conversion = table.column("conversion").to_numpy()
    assert set(np.unique(click)) <= {0, 1}
    assert (conversion <= click).all()  # a conversion needs a click
    for name in ("p_click", "p_conversion", "p_negative"):
        p = table.column(name).to_numpy()
        assert ((p > 0) & (p < 1)).all()
    assert 0.02 < click.mean() < 0.4
    oracle = oracle_metrics(table)
    assert set(oracle) == {"click", "conversion", "negative"}
    assert all(0.55 < value < 1.0 for value in oracle.values())


def test_rows_agree_with_the_catalogs(log):
    impressions = log.impressions.to_pydict()
    users = log.users.to_pydict()
    creatives = log.creatives.to_pydict()
    user_row = {u: i for i, u in enumerate(users["user_id"])}
    creative_row = {c: i for i, c in enumerate(creatives["creative_id"])}
    for i in range(0, 5000, 97):
        u = user_row[impressions["user_id"][i]]
        c = creative_row[impressions["creative_id"][i]]
        for column in ("age_bucket", "country", "interests", "recent_creatives", "os"):
            assert impressions[column][i] == users[column][u]
        for column in ("campaign_id", "category", "format", "duration_s", "language"):
            assert impressions[column][i] == creatives[column][c]
        assert set(impressions["recent_creatives"][i]) <= set(creatives["creative_id"])
        assert 1 <= len(impressions["interests"][i]) <= 4
    objectives = set(log.campaigns.column("objective").to_pylist())
    assert objectives <= {"CPM", "CPC", "oCPM"}
    cpa = log.campaigns.column("target_cpa").to_numpy()
    is_ocpm = np.array([o == "oCPM" for o in log.campaigns.column("objective").to_pylist()])
    assert np.isfinite(cpa[is_ocpm]).all()
    assert np.isnan(cpa[~is_ocpm]).all()


def test_write_and_read_back(log, tmp_path):
    directory = log.write(tmp_path / "log")
    table = read_log(directory)
    assert table.num_rows == 5000
    assert table.column("click").equals(log.impressions.column("click"))
    assert read_log(directory / "impressions.parquet").num_rows == 5000
    with pytest.raises(FileNotFoundError, match="no impressions file"):
        read_log(tmp_path / "missing")


def test_default_schema_reads_the_log(log):
    batch = FeaturePipeline(load_schema())(log.impressions)
    assert len(batch) == 5000
    assert batch.dense.shape == (5000, 2)
    assert np.isfinite(batch.dense).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_rows": 0}, "num_rows must be a positive integer"),
        ({"num_rows": 10, "seed": -1}, "seed must be a non-negative integer"),
        ({"num_rows": 2.5}, "num_rows must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_log(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_users": 0}, "num_users must be a positive integer"),
        ({"num_advertisers": 10, "num_campaigns": 5}, "num_campaigns must be >= num_advertisers"),
        (
            {"num_advertisers": 5, "num_campaigns": 50, "num_creatives": 10},
            "num_creatives must be >= num_campaigns",
        ),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(**kwargs)


def test_single_row_log():
    table = generate_log(1, seed=0, config=SMALL).impressions
    assert table.num_rows == 1
    assert isinstance(table.column("interests"), pa.ChunkedArray)
