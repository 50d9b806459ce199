"""Export: files on disk, Triton configs, and the split pipeline against the unsplit module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from adrank import EmbeddingTable, ops
from adrank.artifacts import load_manifest, load_tables
from adrank.cli import main
from adrank.data import SyntheticConfig, generate_log
from adrank.export import export_model, load_dense_model, next_version
from adrank.features import FeaturePipeline, load_schema
from adrank.models import load_checkpoint
from adrank.models.tables import pooled_embeddings_ref
from adrank.training.loop import TrainConfig, predict, to_torch, train
from adrank.training.metrics import auc
from adrank.triton import RankerClient
from adrank.triton.testing import serve_ranker

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


def pooled_with_adrank(tables, schema, batch):
    """adrank's lookup: every sparse field of the batch in one collection call, [B, E]."""
    keys = [f.name for f in schema.sparse_fields]
    values = np.concatenate([batch.sparse[k].values for k in keys])
    lengths = np.concatenate([np.diff(batch.sparse[k].offsets) for k in keys])
    field_tables = {f.name: tables[f.table] for f in schema.sparse_fields}
    modes = {f.name: f.pooling for f in schema.sparse_fields}
    pooled = ops.embedding_bag_collection(keys, values, lengths, field_tables, modes)
    return pooled.reshape(len(batch), -1)


def split_embeddings(export, batch, precision):
    schema = load_schema(export.artifacts_dir / "schema.toml")
    tables = load_tables(export.artifacts_dir / "tables", schema, precision)
    embeddings = pooled_with_adrank(tables, schema, batch)
    np.testing.assert_allclose(
        embeddings, pooled_embeddings_ref(tables, schema, batch), rtol=1e-5, atol=1e-6
    )
    return embeddings


def split_outputs(export, batch, precision):
    """The split pipeline in process: adrank's lookup + the exported TorchScript dense model."""
    embeddings = split_embeddings(export, batch, precision)
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
        fp32 = EmbeddingTable.load(export.artifacts_dir / table["fp32"], verify=True)
        assert (fp32.num_rows, fp32.dim, fp32.dtype) == (table["rows"], table["dim"], "float32")
        assert fp32.data.ctypes.data % 64 == 0  # mapped rows start on cache lines
        int8 = EmbeddingTable.load(export.artifacts_dir / table["int8"], verify=True)
        assert (int8.num_rows, int8.dim) == (table["rows"], table["dim"])
        assert int8.dtype == "int8_rowwise"
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


@pytest.mark.triton
def test_split_pipeline_through_the_real_triton_server(trained, exported):
    """adrank's lookup + the dense model on the embedded Triton = the unsplit module."""
    model, heldout = trained
    export, root = exported
    rows = heldout.take(np.arange(2000))
    with torch.no_grad():
        unsplit = [t.numpy().ravel() for t in model(*to_torch(rows))]
    embeddings = split_embeddings(export, rows, "fp32")
    with serve_ranker(root / "models") as (_, client):
        served = client.predict(embeddings, rows.dense)
    for name, expected, got in zip(("ctr", "cvr", "neg"), unsplit, served, strict=True):
        assert float(np.abs(expected - got).max()) <= 1e-5, name


@pytest.mark.triton
def test_a_new_version_loads_without_a_restart(trained, tmp_path):
    model, heldout = trained
    repository, artifacts = tmp_path / "models", tmp_path / "artifacts"
    first = export_model(model, repository=repository, artifacts=artifacts)
    rows = heldout.take(np.arange(100))
    embeddings = split_embeddings(first, rows, "fp32")
    with serve_ranker(repository, models=["ranker"]) as (server, client):
        second = export_model(model, repository=repository, artifacts=artifacts)
        server.load_model("ranker")  # the running server picks up the new version
        for version in (first.version, second.version):  # both served during a rollout
            pinned = RankerClient(server.grpc_url, model_version=str(version), timeout_s=10)
            with pinned:
                out = pinned.predict(embeddings, rows.dense)
            np.testing.assert_allclose(out.p_ctr, client.predict(embeddings, rows.dense).p_ctr)


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
    # A fresh repository beside artifacts that hold versions 1 and 2: the next free is 3.
    third = export_model(model, repository=root / "other", artifacts=root / "artifacts")
    assert third.version == 3


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


def test_committed_triton_configs_are_what_export_writes(exported):
    """triton_models/ranker/ holds the configs of the default schema; export must agree."""
    export, _ = exported
    committed = Path(__file__).resolve().parents[1] / "triton_models" / "ranker"
    for name in ("config.pbtxt", "configs/gpu.pbtxt"):
        assert (export.model_dir / name).read_text() == (committed / name).read_text(), name
