"""A log read through a schema (encode_log), the saved held-out split, bootstrap intervals and
the warnings of a run: every error path with its message."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adrank.data.log_errors import BadRowBudget, LogError
from adrank.data.readers import open_log
from adrank.features import FeaturePipeline, parse_schema
from adrank.features.pipeline import concat_batches
from adrank.training.heldout import load_heldout, save_heldout
from adrank.training.log_data import encode_log
from adrank.training.loop import TrainConfig, training_warnings
from adrank.training.metrics import bootstrap_intervals

SCHEMA = parse_schema(
    """
name = "small"
[labels]
click = "click"
conversion = "buy"
[fields.site]
kind = "categorical"
side = "context"
num_buckets = 32
dim = 4
[fields.tags]
kind = "multi_valued"
side = "user"
separator = "|"
value_type = "string"
num_buckets = 32
dim = 4
[fields.price]
kind = "numeric_dense"
side = "creative"
"""
)


def _log(tmp_path, text: str):
    path = tmp_path / "log.csv"
    path.write_text(text)
    return open_log(path, batch_rows=2)


LOG = "click,buy,site,tags,price,day\n1,0,a,x|y,2.0,mon\n0,0,b,,1.5,tue\n1,1,a,y,,mon\n"


def test_encode_log_hashes_in_batches_and_keeps_extra_columns(tmp_path):
    reader = _log(tmp_path, LOG)
    encoded = encode_log(reader, SCHEMA, extra_columns=["day"])
    whole = FeaturePipeline(SCHEMA)(open_log(reader.path).read({"price": "float"}))
    assert len(encoded) == 3
    np.testing.assert_array_equal(encoded.batch.sparse["tags"].offsets, [0, 2, 2, 3])
    np.testing.assert_array_equal(encoded.batch.sparse["site"].values, whole.sparse["site"].values)
    assert encoded.extra["day"].tolist() == ["mon", "tue", "mon"]
    assert encoded.skipped == []


def test_encode_log_errors(tmp_path):
    reader = _log(tmp_path, LOG.replace("site", "place"))
    with pytest.raises(LogError) as error:
        encode_log(reader, SCHEMA)
    assert str(error.value) == (
        f"{reader.path}: has no column 'site', which field 'site' of schema 'small' reads"
    )
    reader = _log(tmp_path, LOG.replace("buy", "purchase"))
    with pytest.raises(LogError, match=r"log\.csv: has no label column 'buy' \(task conversion\)$"):
        encode_log(reader, SCHEMA)
    assert list(encode_log(reader, SCHEMA, need_labels=False).batch.labels) == ["click"]
    reader = _log(tmp_path, LOG.replace("click,buy", "c,b"))
    with pytest.raises(LogError, match="has none of the schema's label columns: nothing to score"):
        encode_log(reader, SCHEMA, need_labels=False)
    reader = _log(tmp_path, LOG.replace("2.0", "cheap"))
    with pytest.raises(
        LogError, match=r"line 2: column 'price': expected a number, found 'cheap'$"
    ):
        encode_log(reader, SCHEMA)
    assert len(encode_log(reader, SCHEMA, budget=BadRowBudget(1, lambda _: None))) == 2
    with pytest.raises(LogError, match="has no column 'hour'"):
        encode_log(_log(tmp_path, LOG), SCHEMA, extra_columns=["hour"])


def test_concat_batches_keeps_every_bag():
    batch = FeaturePipeline(SCHEMA)(
        {"click": [1, 0], "buy": [0, 0], "site": ["a", "b"], "tags": ["x|y", "z"], "price": [1, 2]}
    )
    joined = concat_batches([batch.take([0]), batch.take([1])])
    np.testing.assert_array_equal(joined.sparse["tags"].values, batch.sparse["tags"].values)
    np.testing.assert_array_equal(joined.sparse["tags"].offsets, batch.sparse["tags"].offsets)
    with pytest.raises(ValueError, match="batches must not be empty"):
        concat_batches([])


def test_held_out_split_round_trips_and_refuses_other_files(tmp_path):
    checkpoint = tmp_path / "m.pt"
    assert load_heldout(checkpoint) is None
    save_heldout(checkpoint, np.array([3, 7]), data=tmp_path / "log.csv", num_rows=10,
                 config=TrainConfig(seed=4, holdout=0.2))  # fmt: skip
    heldout = load_heldout(checkpoint)
    np.testing.assert_array_equal(heldout.rows, [3, 7])
    assert (heldout.seed, heldout.fraction) == (4, 0.2)
    assert heldout.matches(tmp_path / "log.csv", 10)
    assert not heldout.matches(tmp_path / "log.csv", 11)
    assert not heldout.matches(tmp_path / "other.csv", 10)
    meta = tmp_path / "m.pt.heldout.json"
    meta.write_text(json.dumps({"format": "x"}))
    with pytest.raises(ValueError, match=r"m\.pt\.heldout\.json: not an adrank held-out split"):
        load_heldout(checkpoint)
    meta.write_text("{")
    with pytest.raises(ValueError, match=r"m\.pt\.heldout\.json: not valid JSON"):
        load_heldout(checkpoint)


def test_bootstrap_intervals_cover_the_estimate():
    rng = np.random.default_rng(0)
    labels = (rng.random(2000) < 0.3).astype(float)
    scores = np.clip(0.3 + 0.2 * (labels - 0.3) + rng.normal(0, 0.1, 2000), 0.01, 0.99)
    intervals = bootstrap_intervals(labels, scores, resamples=100)
    low, high = intervals["auc"]
    assert 0.5 < low < high < 1.0
    assert set(intervals) == {"auc", "log_loss", "calibration"}
    assert np.isnan(bootstrap_intervals(np.zeros(5), np.full(5, 0.1), 10)["auc"]).all()
    with pytest.raises(ValueError, match="resamples must be >= 1, got 0"):
        bootstrap_intervals(labels, scores, resamples=0)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got 1.5"):
        bootstrap_intervals(labels, scores, level=1.5)


def test_training_warnings():
    batch = FeaturePipeline(SCHEMA)(
        {"click": [0, 0], "buy": [1, 1], "site": ["a", "b"], "tags": ["x", "y"], "price": [1, 2]}
    )
    warnings = training_warnings(1000, batch, TrainConfig(batch_size=10))
    assert warnings == [
        "only 100 optimizer steps (1,000 training rows, batch size 10, 1 epoch(s)); fewer than "
        "300 rarely train a ranker: lower --batch-size or raise --epochs",
        "the held-out set (2 rows) has no positive click label: its AUC is undefined (nan); use "
        "a larger log or --holdout",
        "the held-out set (2 rows) has no negative conversion label: its AUC is undefined (nan); "
        "use a larger log or --holdout",
    ]
    balanced = FeaturePipeline(SCHEMA)(
        {"click": [0, 1], "buy": [1, 0], "site": ["a", "b"], "tags": ["x", "y"], "price": [1, 2]}
    )
    assert training_warnings(3000, balanced, TrainConfig(batch_size=10)) == []
