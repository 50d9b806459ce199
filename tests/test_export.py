"""Export: files on disk, Triton configs, every served form (TorchScript fp32 and bf16, ONNX
fp32 and int8) against the unsplit module, in process and through the real server, and a
click-only model that serves its click head only."""

from __future__ import annotations

import json
import shutil
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
from adrank.features.schema import parse_schema
from adrank.models import MultiTaskRanker, load_checkpoint
from adrank.training.loop import TrainConfig, predict, to_torch, train
from adrank.training.metrics import auc
from adrank.triton import RankerClient, python_backend
from adrank.triton.model_config import DEFAULT_DEPLOYMENT, DEPLOYMENTS, ONNX_OPSET
from adrank.triton.testing import serve_ranker
from reference import pooled_embeddings_ref

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
    assert sorted(p.name for p in export.version_dir.iterdir()) == [
        "model.bf16.pt",
        "model.int8.onnx",
        "model.onnx",
        "model.pt",
        "model.py",
        "requirements.txt",
    ]
    model_py = (export.version_dir / "model.py").read_text()
    assert model_py == Path(python_backend.__file__).read_text()  # self-contained, no adrank
    assert "adrank" not in [
        line.split()[1] for line in model_py.splitlines() if line.startswith(("import ", "from "))
    ]
    manifest = load_manifest(export.artifacts_dir)
    assert manifest == export.manifest
    assert manifest["tasks"] == ["click", "conversion", "negative"]
    assert manifest["outputs"] == ["P_CTR", "P_CVR", "P_NEG"]
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
    default = _parse(export.model_dir / "config.pbtxt")
    assert default == _parse(export.model_dir / "configs" / f"{DEFAULT_DEPLOYMENT}.pbtxt")
    assert sorted(p.stem for p in (export.model_dir / "configs").iterdir()) == sorted(DEPLOYMENTS)
    for name, spec in DEPLOYMENTS.items():
        config = _parse(export.model_dir / "configs" / f"{name}.pbtxt")
        kind = model_config_pb2.ModelInstanceGroup.KIND_GPU if spec.device == "gpu" else 2
        assert config.instance_group[0].kind == kind
        model_file = config.default_model_filename or config.parameters["MODEL_FILE"].string_value
        assert (export.version_dir / model_file).is_file()
        assert config.max_batch_size == 16384
        assert config.HasField("dynamic_batching")
        inputs = {i.name: (i.data_type, list(i.dims)) for i in config.input}
        assert inputs == {
            "EMBEDDINGS": (model_config_pb2.TYPE_FP32, [schema.embedding_dim]),
            "DENSE": (model_config_pb2.TYPE_FP32, [schema.dense_dim]),
        }
        outputs = [(o.name, o.data_type, list(o.dims)) for o in config.output]
        assert outputs == [
            (n, model_config_pb2.TYPE_FP32, [1]) for n in ("P_CTR", "P_CVR", "P_NEG")
        ]


def _onnx_outputs(path, embeddings, dense):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"EMBEDDINGS": embeddings, "DENSE": dense})


def test_onnx_files_check_and_carry_the_opset(exported):
    import onnx

    export, _ = exported
    for name in ("model.onnx", "model.int8.onnx"):
        model = onnx.load(str(export.version_dir / name))
        onnx.checker.check_model(model)
        [default_domain] = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
        assert default_domain.version == ONNX_OPSET
        assert [i.name for i in model.graph.input] == ["EMBEDDINGS", "DENSE"]
        assert [o.name for o in model.graph.output] == ["P_CTR", "P_CVR", "P_NEG"]


def served_forms(export, embeddings, dense):
    """{file name: [P_CTR, P_CVR, P_NEG] as numpy [B, 1]} for every model file of a version."""
    forms = {}
    for name in ("model.pt", "model.bf16.pt"):
        with torch.no_grad():
            outputs = load_dense_model(export.version_dir, name)(
                torch.from_numpy(embeddings), torch.from_numpy(dense)
            )
        forms[name] = [o.numpy() for o in outputs]
    for name in ("model.onnx", "model.int8.onnx"):
        forms[name] = _onnx_outputs(export.version_dir / name, embeddings, dense)
    return forms


# Each form's bound against the training-time model: max abs difference of a rate, and the
# click AUC lost on the held-out rows.
FORM_BOUNDS = {
    "model.pt": (1e-5, 1e-6),
    "model.onnx": (1e-5, 1e-6),
    "model.bf16.pt": (0.02, 0.001),
    "model.int8.onnx": (0.02, 0.001),
}


def test_every_served_form_is_within_its_bound_of_the_module(trained, exported):
    model, heldout = trained
    export, _ = exported
    with torch.no_grad():
        unsplit = [t.numpy() for t in model(*to_torch(heldout)).values()]
    embeddings = split_embeddings(export, heldout, "fp32")
    labels = heldout.labels["click"]
    reference_auc = auc(labels, unsplit[0].ravel())
    for name, outputs in served_forms(export, embeddings, heldout.dense).items():
        max_diff, auc_loss = FORM_BOUNDS[name]
        for task, expected, got in zip(model.tasks, unsplit, outputs, strict=True):
            assert got.shape == (len(heldout), 1)
            assert float(np.abs(expected - got).max()) <= max_diff, (name, task)
        assert reference_auc - auc(labels, outputs[0].ravel()) <= auc_loss, name


def test_fp32_split_pipeline_reproduces_the_module(trained, exported):
    model, heldout = trained
    export, _ = exported
    with torch.no_grad():
        unsplit = list(model(*to_torch(heldout)).values())
    split = split_outputs(export, heldout, "fp32")
    for name, a, b in zip(("ctr", "cvr", "neg"), unsplit, split, strict=True):
        assert b.shape == (len(heldout), 1)
        assert float((a - b).abs().max()) <= 1e-5, name


@pytest.mark.triton
def test_split_pipeline_through_the_real_triton_server(trained, exported, tmp_path):
    """adrank's lookup + each Python-backend variant on the embedded Triton = the unsplit
    module, within the variant's bound; one server holds a copy of the version per variant."""
    model, heldout = trained
    export, _ = exported
    rows = heldout.take(np.arange(2000))
    with torch.no_grad():
        unsplit = [t.numpy().ravel() for t in model(*to_torch(rows)).values()]
    assert_python_variants_serve(export, model.tasks, rows, unsplit, tmp_path)


def assert_python_variants_serve(export, tasks, rows, unsplit, repository: Path) -> None:
    """Each Python-backend variant of ``export``, copied into ``repository`` under its own name
    and served by one embedded Triton, answers ``unsplit`` (the module's outputs on ``rows``, one
    array per task) within its form's bound."""
    embeddings = split_embeddings(export, rows, "fp32")
    variants = [name for name, spec in DEPLOYMENTS.items() if spec.backend == "python"]
    for variant in variants:
        model_dir = repository / variant
        shutil.copytree(export.version_dir, model_dir / "1")
        config = (export.model_dir / "configs" / f"{variant}.pbtxt").read_text()
        (model_dir / "config.pbtxt").write_text(
            config.replace('name: "ranker"', f'name: "{variant}"')
        )
    with serve_ranker(repository) as (server, _):
        for variant in variants:
            with RankerClient(server.grpc_url, model=variant, timeout_s=30) as client:
                served = client.predict(embeddings, rows.dense)
            max_diff, _ = FORM_BOUNDS[DEPLOYMENTS[variant].model_file]
            for task, expected, got in zip(tasks, unsplit, served, strict=True):
                assert float(np.abs(expected - got).max()) <= max_diff, (variant, task)


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
    output = capsys.readouterr().out
    assert "EMBEDDINGS [" in output
    assert "served heads: P_CTR, P_CVR, P_NEG" in output
    assert _parse(tmp_path / "repo" / "ranker" / "config.pbtxt") == _parse(
        tmp_path / "repo" / "ranker" / "configs" / f"{DEFAULT_DEPLOYMENT}.pbtxt"
    )
    code = main(
        [
            *("export", "--checkpoint", str(checkpoint), "--repository", str(tmp_path / "repo")),
            *("--artifacts", str(tmp_path / "art"), "--default-config", "python_torch_fp32"),
            *("--execution-env-path", "$$TRITON_MODEL_DIRECTORY/env.tar.gz"),
        ]
    )
    assert code == 0
    config = _parse(tmp_path / "repo" / "ranker" / "config.pbtxt")
    assert config.parameters["MODEL_FILE"].string_value == "model.pt"
    env = config.parameters["EXECUTION_ENV_PATH"].string_value
    assert env == "$$TRITON_MODEL_DIRECTORY/env.tar.gz"


def test_export_refuses_an_unknown_default_deployment(trained, tmp_path):
    model, _ = trained
    with pytest.raises(ValueError, match=r"default_deployment must be one of .*got 'tpu'"):
        export_model(model, repository=tmp_path / "r", artifacts=tmp_path / "a",
                     default_deployment="tpu")  # fmt: skip


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
    names = ["config.pbtxt", *(f"configs/{name}.pbtxt" for name in DEPLOYMENTS)]
    assert sorted(p.name for p in (committed / "configs").iterdir()) == sorted(
        f"{name}.pbtxt" for name in DEPLOYMENTS
    )
    for name in names:
        assert (export.model_dir / name).read_text() == (committed / name).read_text(), name


@pytest.fixture(scope="module")
def click_only(trained, tmp_path_factory):
    """The trained model's click part under a schema whose log has click labels only."""
    model, _ = trained
    text = model.schema.text.replace(
        'click = "click"\nconversion = "conversion"\nnegative = "negative"\n', 'click = "click"\n'
    )
    schema = parse_schema(text, source="click-only")
    assert schema.tasks == ("click",)
    click = MultiTaskRanker(schema, model.config)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("dense.towers.")}
    state |= {k: v for k, v in model.state_dict().items() if k.startswith("dense.towers.0.")}
    click.load_state_dict(state)
    root = tmp_path_factory.mktemp("click_only")
    return click.eval(), export_model(click, repository=root / "models", artifacts=root / "art")


def test_a_click_only_model_exports_its_click_head_only(click_only, trained):
    click, export = click_only
    _, heldout = trained
    assert export.manifest["tasks"] == ["click"]
    assert export.manifest["outputs"] == ["P_CTR"]
    for path in [export.model_dir / "config.pbtxt", *(export.model_dir / "configs").iterdir()]:
        assert [o.name for o in _parse(path).output] == ["P_CTR"], path.name
    embeddings = split_embeddings(export, heldout, "fp32")
    with torch.no_grad():
        [expected] = [t.numpy() for t in click(*to_torch(heldout)).values()]
    for name, outputs in served_forms(export, embeddings, heldout.dense).items():
        assert len(outputs) == 1, name
        assert float(np.abs(outputs[0] - expected).max()) <= FORM_BOUNDS[name][0], name


@pytest.mark.triton
def test_a_click_only_model_serves_p_ctr_alone(click_only, trained):
    click, export = click_only
    _, heldout = trained
    rows = heldout.take(np.arange(500))
    embeddings = split_embeddings(export, rows, "fp32")
    with torch.no_grad():
        expected = click(*to_torch(rows))["click"].numpy().ravel()
    with serve_ranker(export.model_dir.parent, model_config_name="python_onnx_fp32") as (_, client):
        served = client.predict(embeddings, rows.dense)
    assert served.p_cvr is None
    assert served.p_neg is None
    assert float(np.abs(served.p_ctr - expected).max()) <= 1e-5


@pytest.mark.triton
def test_a_model_without_dense_fields_exports_and_serves(trained, tmp_path):
    """A categorical-only schema (N = 0): every form exports, and the served default answers
    DENSE [B, 0] requests within its bound of the module."""
    model, _ = trained
    text = model.schema.text
    for field in ("watch_minutes", "bid"):
        block = f'[fields.{field}]\nkind = "numeric_dense"\n'
        start = text.index(block)
        text = text[:start] + text[text.index("\n\n", start) + 2 :]
    schema = parse_schema(text, source="categorical-only")
    assert schema.dense_dim == 0
    module = MultiTaskRanker(schema, model.config).eval()
    export = export_model(module, repository=tmp_path / "models", artifacts=tmp_path / "art")
    assert export.manifest["dense_dim"] == 0
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((300, schema.embedding_dim), dtype=np.float32)
    dense = np.zeros((300, 0), np.float32)
    with torch.no_grad():
        expected = [
            t.numpy().ravel()
            for t in module.dense(torch.from_numpy(embeddings), torch.from_numpy(dense))
        ]
    for name, outputs in served_forms(export, embeddings, dense).items():
        for want, got in zip(expected, outputs, strict=True):
            assert float(np.abs(want - got.ravel()).max()) <= FORM_BOUNDS[name][0], name
    with serve_ranker(tmp_path / "models") as (_, client):
        served = client.predict(embeddings, dense)
    for want, got in zip(expected, served, strict=True):
        assert float(np.abs(want - got).max()) <= FORM_BOUNDS["model.int8.onnx"][0]
