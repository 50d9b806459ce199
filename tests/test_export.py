"""Export: files on disk, Triton configs, and the split pipeline against the unsplit module."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from adrank.cli import main
from adrank.data import SyntheticConfig, generate_log
from adrank.export import export_model, load_dense_model, load_manifest, next_version
from adrank.features import FeaturePipeline, load_schema
from adrank.models import load_checkpoint
from adrank.models.tables import (
    dequantize_int8_rowwise,
    load_tables,
    pooled_embeddings_ref,
    quantize_int8_rowwise,
)
from adrank.training.loop import TrainConfig, predict, to_torch, train
from adrank.training.metrics import auc

WORLD = SyntheticConfig(
    num_advertisers=10, num_campaigns=20, num_creatives=60, num_users=2000, num_categories=8
)


@pytest.fixture(scope="module")
def trained():
    log = generate_log(40_000, seed=4, config=WORLD).impressions
    result = train(log, load_schema(), config=TrainConfig(seed=0))
    heldout = FeaturePipeline(result.model.schema)(log.take(result.heldout_rows))
    return result.model, heldout


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model, _ = trained
    return export_model(model, repository=root / "models", artifacts=root / "artifacts"), root


def split_outputs(export, batch, precision):
    """The split pipeline: tables from files (numpy lookup) + the TorchScript dense model."""
    schema = load_schema(export.artifacts_dir / "schema.toml")
    tables = load_tables(export.artifacts_dir / "tables", schema, precision)
    embeddings = pooled_embeddings_ref(tables, schema, batch)
    dense_model = load_dense_model(export.version_dir)
    with torch.no_grad():
        return dense_model(torch.from_numpy(embeddings), torch.from_numpy(batch.dense))


def test_layout_and_manifest(exported):
    export, _ = exported
    assert export.version == 1
    assert (export.version_dir / "model.pt").is_file()
    model_py = (export.version_dir / "model.py").read_text()
    assert "from adrank.triton.python_backend import TritonPythonModel" in model_py
    manifest = load_manifest(export.artifacts_dir)
    assert manifest == export.manifest
    schema = load_schema()
    assert manifest["embedding_dim"] == schema.embedding_dim
    assert manifest["dense_dim"] == schema.dense_dim
    assert [f["name"] for f in manifest["sparse_fields"]] == [f.name for f in schema.sparse_fields]
    for name, table in manifest["tables"].items():
        fp32 = np.load(export.artifacts_dir / table["fp32"], mmap_mode="r")
        assert fp32.shape == (table["rows"], table["dim"])
        assert fp32.dtype == np.float32
        assert fp32.offset % 64 == 0  # rows start on cache lines when the file is mapped
        int8 = np.load(export.artifacts_dir / table["int8"], mmap_mode="r")
        assert int8.shape == (table["rows"], table["dim"] + 8)
        assert int8.dtype == np.uint8
        assert table["slot"] == schema.tables[name].slot
    assert not list(export.model_dir.glob(".*partial*"))


def _parse(path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_triton_configs_parse_and_match_the_contract(exported):
    export, _ = exported
    schema = load_schema()
    cpu = _parse(export.model_dir / "config.pbtxt")
    gpu = _parse(export.model_dir / "configs" / "gpu.pbtxt")
    assert cpu.backend == "python"
    assert gpu.platform == "pytorch_libtorch"
    assert cpu.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert gpu.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    for config in (cpu, gpu):
        assert config.max_batch_size == 16384
        assert config.HasField("dynamic_batching")
        inputs = {i.name: (i.data_type, list(i.dims)) for i in config.input}
        assert inputs == {
            "EMBEDDINGS": (model_config_pb2.TYPE_FP32, [schema.embedding_dim]),
            "DENSE": (model_config_pb2.TYPE_FP32, [schema.dense_dim]),
        }
        outputs = {o.name: (o.data_type, list(o.dims)) for o in config.output}
        assert outputs == {
            n: (model_config_pb2.TYPE_FP32, [1]) for n in ("P_CTR", "P_CVR", "P_NEG")
        }


def test_fp32_split_pipeline_reproduces_the_module(trained, exported):
    model, heldout = trained
    export, _ = exported
    with torch.no_grad():
        unsplit = model(*to_torch(heldout))
    split = split_outputs(export, heldout, "fp32")
    for name, a, b in zip(("ctr", "cvr", "neg"), unsplit, split, strict=True):
        assert b.shape == (len(heldout), 1)
        assert float((a - b).abs().max()) <= 1e-5, name


def test_int8_tables_lose_at_most_0_002_click_auc(trained, exported):
    model, heldout = trained
    export, _ = exported
    labels = heldout.labels["click"]
    fp32_auc = auc(labels, predict(model, heldout)["ctr"])
    int8_auc = auc(labels, split_outputs(export, heldout, "int8")[0].numpy().ravel())
    assert fp32_auc - int8_auc <= 0.002, (fp32_auc, int8_auc)


def test_versions_count_up_and_are_never_overwritten(trained, exported):
    model, _ = trained
    export, root = exported
    second = export_model(model, repository=root / "models", artifacts=root / "artifacts")
    assert second.version == 2 == next_version(export.model_dir) - 1
    assert (export.version_dir / "model.pt").is_file()  # version 1 is untouched
    with pytest.raises(FileExistsError, match="never overwritten"):
        export_model(model, repository=root / "models", artifacts=root / "artifacts", version=1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"version": 0}, ValueError, "version must be an integer >= 1"),
        ({"name": "a/b"}, ValueError, "plain directory name"),
    ],
)
def test_export_errors(trained, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        export_model(trained[0], repository=tmp_path, artifacts=tmp_path, **kwargs)


def dequantize_ref(fused):
    rows = []
    for row in fused:
        dim = len(row) - 8
        scale, bias = np.frombuffer(bytes(row[dim:]), dtype="<f4")
        rows.append([code * scale + bias for code in row[:dim]])
    return np.array(rows, dtype=np.float32)


def test_int8_rowwise_quantization():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 6)).astype(np.float32)
    table[3] = 0.25  # a constant row: scale 0, exact
    fused = quantize_int8_rowwise(table)
    assert fused.shape == (50, 14)
    assert fused.dtype == np.uint8
    restored = dequantize_int8_rowwise(fused)
    np.testing.assert_allclose(restored, dequantize_ref(fused), rtol=1e-6)
    step = (table.max(axis=1) - table.min(axis=1)) / 255.0
    assert (np.abs(restored - table) <= step[:, None] / 2 + 1e-6).all()
    np.testing.assert_array_equal(restored[3], table[3])
    np.testing.assert_allclose(restored.min(axis=1), table.min(axis=1), rtol=1e-6)


@pytest.mark.parametrize(
    ("function", "argument", "match"),
    [
        (quantize_int8_rowwise, np.zeros(4, np.float32), "2-D with at least one column"),
        (quantize_int8_rowwise, np.array([[np.inf]], np.float32), "finite"),
        (dequantize_int8_rowwise, np.zeros((2, 4), np.uint8), "uint8 \\[R, D \\+ 8\\]"),
        (dequantize_int8_rowwise, np.zeros((2, 10), np.float32), "uint8 \\[R, D \\+ 8\\]"),
    ],
)
def test_quantization_errors(function, argument, match):
    with pytest.raises(ValueError, match=match):
        function(argument)


def test_load_tables_errors(exported, tmp_path):
    export, _ = exported
    schema = load_schema()
    with pytest.raises(FileNotFoundError, match="has no fp32 file"):
        load_tables(tmp_path, schema)
    with pytest.raises(ValueError, match="precision must be one of"):
        load_tables(export.artifacts_dir / "tables", schema, "fp16")
    with pytest.raises(FileNotFoundError, match=r"no manifest\.json"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(ValueError, match="not an adrank export manifest"):
        load_manifest(tmp_path)


def test_train_and_export_commands(tmp_path, capsys):
    checkpoint = tmp_path / "ranker.pt"
    metrics = tmp_path / "metrics.json"
    code = main(
        [
            *("train", "--generate", "3000", "--out", str(checkpoint)),
            *("--metrics-json", str(metrics), "--no-progress", "--batch-size", "256"),
        ]
    )
    assert code == 0
    output = capsys.readouterr().out
    for expected in ("click", "oracle", "by decile"):
        assert expected in output
    report = json.loads(metrics.read_text())
    assert set(report["heldout"]) == {"click", "conversion", "negative"}
    assert set(report["oracle_auc"]) == {"click", "conversion", "negative"}
    _, _, saved = load_checkpoint(checkpoint)
    assert saved["click"]["auc"] == report["heldout"]["click"]["auc"]
    code = main(
        [
            *("export", "--checkpoint", str(checkpoint), "--repository", str(tmp_path / "repo")),
            *("--artifacts", str(tmp_path / "art")),
        ]
    )
    assert code == 0
    assert (tmp_path / "repo" / "ranker" / "1" / "model.pt").is_file()
    assert "EMBEDDINGS [" in capsys.readouterr().out


def test_train_command_reads_parquet_and_criteo(tmp_path, capsys):
    log = generate_log(2000, seed=0, config=WORLD)
    directory = log.write(tmp_path / "log")
    assert (
        main(["train", "--data", str(directory), "--out", str(tmp_path / "a.pt"), "--no-progress"])
        == 0
    )
    criteo = tmp_path / "criteo.txt"
    rng = np.random.default_rng(0)
    lines = [
        "\t".join(
            [str(rng.integers(0, 2))]
            + [str(rng.integers(-1, 50)) if rng.random() > 0.2 else "" for _ in range(13)]
            + [f"{rng.integers(0, 30):08x}" if rng.random() > 0.1 else "" for _ in range(26)]
        )
        for _ in range(400)
    ]
    criteo.write_text("\n".join(lines) + "\n")
    out = tmp_path / "c.pt"
    code = main(
        ["train", "--data", str(criteo), "--format", "criteo", "--out", str(out), "--no-progress"]
    )
    assert code == 0
    assert "click" in capsys.readouterr().out
    _, schema, _ = load_checkpoint(out)
    assert schema.name == "criteo"
