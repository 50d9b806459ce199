"""The multi-task ranker: shapes, the sparse part against a numpy lookup, ESMM, TorchScript, and
a tower for each trained task only (through the checkpoint too)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adrank.data import SyntheticConfig, generate_log
from adrank.export import script_dense_model
from adrank.features import FeaturePipeline, load_schema
from adrank.features.schema import parse_schema
from adrank.models import (
    MultiTaskRanker,
    RankerConfig,
    esmm_loss,
    load_checkpoint,
    save_checkpoint,
)
from adrank.models.ranker import DenseArch, check_tasks
from adrank.training.loop import to_torch
from reference import pooled_embeddings_ref

CONFIG = RankerConfig(deep_layers=(16,), tower_layers=(8,))


@pytest.fixture(scope="module")
def schema():
    return load_schema()


def schema_with_labels(schema, labels: str):
    """``schema`` with its ``[labels]`` section replaced by ``labels`` (TOML lines)."""
    text = schema.text.replace(
        'click = "click"\nconversion = "conversion"\nnegative = "negative"\n', labels
    )
    assert text != schema.text
    return parse_schema(text, source="test")


@pytest.fixture(scope="module")
def batch(schema):
    world = SyntheticConfig(num_advertisers=3, num_campaigns=6, num_creatives=20, num_users=50)
    return FeaturePipeline(schema)(generate_log(300, seed=0, config=world).impressions)


@pytest.fixture(scope="module")
def model(schema):
    torch.manual_seed(0)
    return MultiTaskRanker(schema, CONFIG).eval()


def test_outputs_are_probabilities_of_shape_b_by_1(model, batch):
    with torch.no_grad():
        outputs = model(*to_torch(batch))
    assert list(outputs) == ["click", "conversion", "negative"]
    for output in outputs.values():
        assert output.shape == (len(batch), 1)
        assert output.dtype == torch.float32
        assert ((output > 0) & (output < 1)).all()


def test_sparse_part_matches_a_numpy_lookup(model, schema, batch):
    tables = {name: w.detach().numpy() for name, w in model.sparse.tables.items()}
    with torch.no_grad():
        pooled = model.sparse(to_torch(batch)[0]).numpy()
    assert pooled.shape == (len(batch), schema.embedding_dim)
    np.testing.assert_allclose(pooled, pooled_embeddings_ref(tables, schema, batch), atol=1e-6)


def test_shared_tables_are_one_parameter(model, schema):
    fields_on_creative = [f.name for f in schema.sparse_fields if f.table == "creative"]
    assert fields_on_creative == ["recent_creatives", "creative_id"]
    assert len(model.sparse.tables) == len(schema.tables)


def esmm_loss_ref(ctr, cvr, neg, labels):
    p_ctr, p_ctcvr = torch.sigmoid(ctr), torch.sigmoid(ctr) * torch.sigmoid(cvr)
    return {
        "click": F.binary_cross_entropy(p_ctr, labels["click"]),
        "conversion": F.binary_cross_entropy(p_ctcvr, labels["conversion"]),
        "negative": F.binary_cross_entropy(torch.sigmoid(neg), labels["negative"]),
    }


def test_esmm_loss_matches_a_reference():
    torch.manual_seed(1)
    logits = {task: torch.randn(64, 1) for task in ("click", "conversion", "negative")}
    click = (torch.rand(64) < 0.3).float()
    labels = {
        "click": click,
        "conversion": click * (torch.rand(64) < 0.5).float(),  # only clicked rows convert
        "negative": (torch.rand(64) < 0.1).float(),
    }
    total, parts = esmm_loss(logits, labels)
    reference = esmm_loss_ref(*(t.reshape(-1) for t in logits.values()), labels)
    for task, value in reference.items():
        assert parts[task] == pytest.approx(float(value), rel=1e-5)
    assert float(total) == pytest.approx(sum(float(v) for v in reference.values()), rel=1e-5)
    only_click, parts = esmm_loss(logits, {"click": click})
    assert set(parts) == {"click"}
    assert float(only_click) == pytest.approx(float(reference["click"]), rel=1e-5)
    click_head_only, parts = esmm_loss({"click": logits["click"]}, {"click": click})
    assert float(click_head_only) == pytest.approx(float(reference["click"]), rel=1e-5)


@pytest.mark.parametrize(
    ("logits", "labels", "error", "match"),
    [
        ((torch.zeros(2, 1),), {"click": torch.zeros(2)}, TypeError, "logits must be a mapping"),
        ({"click": torch.zeros(2, 1)}, {"negative": torch.zeros(2)}, ValueError, "'click' task"),
        (
            {"click": torch.zeros(2, 1)},
            {"click": torch.zeros(2), "negative": torch.zeros(2)},
            ValueError,
            r"logits has no 'negative' task: the model has \['click'\]",
        ),
    ],
)
def test_esmm_loss_errors(logits, labels, error, match):
    with pytest.raises(error, match=match):
        esmm_loss(logits, labels)


def test_conversion_gradient_reaches_unclicked_rows():
    # ESMM: an impression without a click still teaches pCTR * pCVR (it did not convert).
    ctr = torch.zeros(2, 1, requires_grad=True)
    cvr = torch.zeros(2, 1, requires_grad=True)
    labels = {"click": torch.tensor([1.0, 0.0]), "conversion": torch.tensor([1.0, 0.0])}
    total, _ = esmm_loss({"click": ctr, "conversion": cvr}, labels)
    total.backward()
    assert cvr.grad[1, 0] > 0  # pushed down on the unclicked row


def test_torchscript_dense_part_equals_eager(model, batch):
    scripted = script_dense_model(model)
    sparse, dense = to_torch(batch)
    with torch.no_grad():
        embeddings = model.sparse(sparse)
        for eager, script in zip(
            model.dense(embeddings, dense), scripted(embeddings, dense), strict=True
        ):
            torch.testing.assert_close(script, eager, rtol=0, atol=1e-6)


@pytest.mark.parametrize("rank", [0, 4])
def test_cross_layer_ranks(schema, rank):
    model = MultiTaskRanker(schema, RankerConfig(cross_rank=rank, deep_layers=(8,)))
    out = model.dense(torch.zeros(3, schema.embedding_dim), torch.zeros(3, schema.dense_dim))
    assert out[0].shape == (3, 1)


def test_checkpoint_round_trip(model, batch, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", model, metrics={"click": {"auc": 0.7}})
    loaded, schema, metrics = load_checkpoint(path)
    assert metrics == {"click": {"auc": 0.7}}
    assert schema.text == model.schema.text
    assert loaded.config == model.config
    with torch.no_grad():
        expected, got = model(*to_torch(batch)), loaded(*to_torch(batch))
    assert list(got) == list(expected)
    for task in expected:
        torch.testing.assert_close(got[task], expected[task], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("labels", "tasks"),
    [
        ('click = "click"\n', ("click",)),
        ('click = "click"\nnegative = "negative"\n', ("click", "negative")),
    ],
)
def test_only_the_trained_tasks_have_towers(schema, batch, tmp_path, labels, tasks):
    reduced = schema_with_labels(schema, labels)
    model = MultiTaskRanker(reduced, CONFIG).eval()
    assert model.tasks == tasks
    assert len(model.dense.towers) == len(tasks)
    with torch.no_grad():
        outputs = model(*to_torch(batch))
    assert tuple(outputs) == tasks
    path = save_checkpoint(tmp_path / "m.pt", model)
    assert torch.load(path, weights_only=True)["tasks"] == list(tasks)
    loaded, _, _ = load_checkpoint(path)
    assert loaded.tasks == tasks
    with torch.no_grad():
        for task, value in loaded(*to_torch(batch)).items():
            torch.testing.assert_close(value, outputs[task], rtol=0, atol=0)


def test_a_checkpoint_from_before_tasks_keeps_only_the_trained_towers(schema, batch, tmp_path):
    # Written before tasks were recorded: three towers whatever the labels.
    old = MultiTaskRanker(schema, CONFIG).eval()
    payload = {
        "format": "adrank-ranker-1",
        "schema": schema_with_labels(schema, 'click = "click"\nnegative = "negative"\n').text,
        "config": dataclasses.asdict(CONFIG),
        "state_dict": old.state_dict(),
        "metrics": None,
    }
    torch.save(payload, tmp_path / "old.pt")
    loaded, _, _ = load_checkpoint(tmp_path / "old.pt")
    assert loaded.tasks == ("click", "negative")
    with torch.no_grad():
        expected, got = old(*to_torch(batch)), loaded(*to_torch(batch))
    assert list(got) == ["click", "negative"]
    for task in got:
        torch.testing.assert_close(got[task], expected[task], rtol=0, atol=0)


def test_a_checkpoint_whose_tasks_differ_from_its_schema_is_refused(schema, tmp_path):
    model = MultiTaskRanker(schema, CONFIG)
    path = save_checkpoint(tmp_path / "m.pt", model)
    payload = torch.load(path, weights_only=True)
    payload["tasks"] = ["click"]
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"tasks \['click'\] differ from its schema's labels"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("tasks", "error", "match"),
    [
        ("click", TypeError, "tasks must be a sequence of task names"),
        (["click", "views"], ValueError, "unknown task 'views'"),
        (["conversion"], ValueError, "must include 'click'"),
        (["click", "negative", "conversion"], ValueError, "distinct and in the order"),
        (["click", "click"], ValueError, "distinct and in the order"),
    ],
)
def test_task_errors(tasks, error, match):
    with pytest.raises(error, match=match):
        check_tasks(tasks)
    with pytest.raises(error, match=match):
        DenseArch(4, 1, CONFIG, tasks)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not an adrank checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an adrank checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cross_layers": -1}, "cross_layers must be >= 0"),
        ({"cross_rank": -2}, "cross_rank must be >= 0"),
        ({"deep_layers": (0,)}, "deep_layers must be positive"),
        ({"tower_layers": (4, -1)}, "tower_layers must be positive"),
        ({"embedding_init_std": 0.0}, "embedding_init_std must be > 0"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RankerConfig(**kwargs)
