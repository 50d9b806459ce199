"""Training on a small synthetic log: quality against the oracle, calibration, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from adrank.data import SyntheticConfig, generate_log
from adrank.features import load_schema
from adrank.training.loop import TrainConfig, split_holdout, train
from adrank.training.report import oracle_metrics

# A small world (60 creatives, 5,000 users) is learnable from 200,000 rows in one pass.
WORLD = SyntheticConfig(
    num_advertisers=10,
    num_campaigns=20,
    num_creatives=60,
    num_users=5000,
    num_categories=8,
    num_music=20,
    num_devices=10,
)


@pytest.fixture(scope="module")
def log():
    return generate_log(200_000, seed=1, config=WORLD).impressions


@pytest.fixture(scope="module")
def result(log):
    return train(log, load_schema(), config=TrainConfig(seed=0))


def test_click_auc_is_within_0_01_of_the_oracle(log, result):
    oracle = oracle_metrics(log.take(result.heldout_rows))
    click = result.metrics["click"]
    assert click["auc"] >= oracle["click"] - 0.01, (click["auc"], oracle["click"])
    assert click["auc"] <= oracle["click"] + 0.005  # no model beats the truth on fresh rows


def test_calibration_is_within_5_percent(result):
    assert abs(result.metrics["click"]["calibration"] - 1.0) <= 0.05
    deciles = result.metrics["click"]["calibration_deciles"]
    assert len(deciles) == 10
    assert [d["predicted"] for d in deciles] == sorted(d["predicted"] for d in deciles)


def test_every_task_learns_something(log, result):
    oracle = oracle_metrics(log.take(result.heldout_rows))
    for task in ("conversion", "negative"):
        assert result.metrics[task]["auc"] > 0.5 + (oracle[task] - 0.5) / 2
        assert abs(result.metrics[task]["calibration"] - 1.0) <= 0.15
    assert len(result.history) == 1


def test_same_seed_same_model():
    small = generate_log(3000, seed=2, config=WORLD).impressions
    config = TrainConfig(seed=5, batch_size=256)
    first = train(small, load_schema(), config=config)
    second = train(small, load_schema(), config=config)
    assert first.metrics["click"]["auc"] == second.metrics["click"]["auc"]
    np.testing.assert_array_equal(first.heldout_rows, second.heldout_rows)
    for a, b in zip(
        first.model.state_dict().values(), second.model.state_dict().values(), strict=True
    ):
        assert (a == b).all()


def test_split_holdout():
    train_rows, held = split_holdout(10, 0.3, seed=0)
    assert len(held) == 3
    assert sorted(np.concatenate([train_rows, held]).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="leave none to train on"):
        split_holdout(1, 0.5, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"learning_rate": 0.0}, "learning rates must be > 0"),
        ({"holdout": 1.0}, "holdout must be in"),
        ({"threads": 0}, "threads must be >= 1"),
        ({"embedding_weight_decay": -1e-3}, "embedding_weight_decay must be >= 0"),
        ({"table_weight_decay": {"creative": -1.0}}, r"table_weight_decay\['creative'\] must"),
        ({"table_weight_decay": {"creative": float("nan")}}, "must be >= 0, got nan"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_training_needs_labels(log):
    from adrank.features import FeaturePipeline
    from adrank.models import MultiTaskRanker
    from adrank.training.loop import fit

    schema = load_schema()
    batch = FeaturePipeline(schema)(log.slice(0, 10), with_labels=False)
    with pytest.raises(ValueError, match="no labels"):
        fit(MultiTaskRanker(schema), batch, TrainConfig())


def test_table_weight_decay_shrinks_only_its_table():
    """A table's own decay pulls its rows toward zero; the other tables keep the shared one."""
    small = generate_log(3000, seed=2, config=WORLD).impressions
    base = TrainConfig(seed=5, batch_size=256, embedding_weight_decay=1e-4)
    plain = train(small, load_schema(), config=base)
    config = dataclasses.replace(base, table_weight_decay={"creative": 0.5})
    decayed = train(small, load_schema(), config=config)
    norms = {n: float(t.detach().norm()) for n, t in plain.model.sparse.tables.items()}
    decayed_norms = {n: float(t.detach().norm()) for n, t in decayed.model.sparse.tables.items()}
    assert decayed_norms["creative"] < 0.7 * norms["creative"]
    for name, norm in norms.items():
        if name != "creative":  # the same init, the same decay; only the gradients differ
            assert decayed_norms[name] == pytest.approx(norm, rel=0.2)
    with pytest.raises(ValueError, match="table_weight_decay: no table 'nope'"):
        train(
            small, load_schema(), config=dataclasses.replace(base, table_weight_decay={"nope": 1.0})
        )
    with pytest.raises(TypeError, match="table_weight_decay must be a mapping"):
        TrainConfig(table_weight_decay=[("creative", 1.0)])


@pytest.mark.parametrize(
    ("entries", "expected"),
    [([], {}), (["creative=1e-3", "category=0"], {"creative": 1e-3, "category": 0.0})],
)
def test_parse_table_weight_decay(entries, expected):
    from adrank.commands.train import parse_table_weight_decay

    assert parse_table_weight_decay(entries) == expected


@pytest.mark.parametrize("entry", ["creative", "=1e-3", "creative=much"])
def test_parse_table_weight_decay_errors(entry):
    from adrank.commands.train import parse_table_weight_decay

    with pytest.raises(ValueError, match="--table-weight-decay wants TABLE=DECAY"):
        parse_table_weight_decay([entry])
