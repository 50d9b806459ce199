"""The ranker's config.pbtxt: built from model_config_pb2, written, parsed back, validated."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.grpc import model_config_pb2 as pb

from adrank.triton import python_backend
from adrank.triton.model_config import (
    BASELINE_DEPLOYMENT,
    DEFAULT_DEPLOYMENT,
    DEPLOYMENTS,
    INPUT_DENSE,
    INPUT_EMBEDDINGS,
    OUTPUT_NAMES,
    RankerSignature,
    build_model_config,
    model_config_path,
    outputs_for_tasks,
    ranker_signature,
    read_model_config,
    write_model_config,
    write_model_configs,
    write_python_backend_model,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMITTED_CONFIGS = sorted((REPO_ROOT / "triton_models").glob("*/config.pbtxt")) + sorted(
    (REPO_ROOT / "triton_models").glob("*/configs/*.pbtxt")
)


def test_default_config_serves_through_the_python_backend():
    config = build_model_config("ranker", embedding_dim=40, dense_dim=3, instances=2, threads=2)
    assert config.backend == "python"
    assert config.platform == ""
    assert config.max_batch_size == 16384
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (pb.ModelInstanceGroup.KIND_CPU, 2)
    ]
    assert config.HasField("dynamic_batching")
    assert {k: v.string_value for k, v in config.parameters.items()} == {
        "NUM_THREADS": "2",
        "RUNTIME": "torch",
        "MODEL_FILE": "model.pt",
    }
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        (INPUT_EMBEDDINGS, pb.TYPE_FP32, [40]),
        (INPUT_DENSE, pb.TYPE_FP32, [3]),
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        (name, pb.TYPE_FP32, [1]) for name in OUTPUT_NAMES
    ]


def test_dynamic_batching_can_be_left_out():
    config = build_model_config("ranker", embedding_dim=4, dense_dim=1, dynamic_batching=False)
    assert not config.HasField("dynamic_batching")
    assert build_model_config("ranker", embedding_dim=4, dense_dim=1).HasField("dynamic_batching")


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_a_model_without_dense_fields_declares_dense_of_variable_width(deployment):
    # Triton refuses a 0 dim; requests send DENSE [B, 0].
    config = build_model_config("m", embedding_dim=8, dense_dim=0, deployment=deployment)
    assert [(t.name, list(t.dims)) for t in config.input] == [("EMBEDDINGS", [8]), ("DENSE", [-1])]
    parsed = text_format.Parse(text_format.MessageToString(config), pb.ModelConfig())
    assert ranker_signature(parsed) == RankerSignature("m", 8, 0, 16384)


def test_torch_threads_is_the_older_name_of_threads():
    config = build_model_config("ranker", embedding_dim=4, dense_dim=1, torch_threads=3)
    assert config.parameters["NUM_THREADS"].string_value == "3"


@pytest.mark.parametrize(
    ("deployment", "runtime", "filename"),
    [
        ("python_onnx_int8", "onnxruntime", "model.int8.onnx"),
        ("python_onnx_fp32", "onnxruntime", "model.onnx"),
        ("python_torch_fp32", "torch", "model.pt"),
        ("python_torch_bf16", "torch", "model.bf16.pt"),
    ],
)
def test_python_backend_variants_name_their_runtime_and_file(deployment, runtime, filename):
    config = build_model_config("ranker", embedding_dim=8, dense_dim=2, deployment=deployment)
    assert config.backend == "python"
    assert config.parameters["RUNTIME"].string_value == runtime
    assert config.parameters["MODEL_FILE"].string_value == filename
    assert [g.kind for g in config.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]


def test_the_default_deployment_is_a_python_backend_variant():
    assert DEPLOYMENTS[DEFAULT_DEPLOYMENT].backend == "python"


def test_gpu_config_serves_the_torchscript_file_through_libtorch():
    config = build_model_config("ranker", embedding_dim=40, dense_dim=3, deployment="libtorch_gpu")
    assert config.platform == "pytorch_libtorch"
    assert config.backend == "pytorch"
    assert config.default_model_filename == "model.pt"
    assert [g.kind for g in config.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
    assert not config.parameters
    # libtorch maps tensors by config order: it must be forward(embeddings, dense)'s order.
    assert [t.name for t in config.input] == [INPUT_EMBEDDINGS, INPUT_DENSE]
    assert ranker_signature(config) == RankerSignature("ranker", 40, 3, 16384)


@pytest.mark.parametrize(
    ("deployment", "device"),
    [
        ("onnxruntime_cpu", pb.ModelInstanceGroup.KIND_CPU),
        ("onnxruntime_gpu", pb.ModelInstanceGroup.KIND_GPU),
    ],
)
def test_onnxruntime_configs_serve_the_onnx_file(deployment, device):
    config = build_model_config(
        "ranker", embedding_dim=40, dense_dim=3, deployment=deployment, threads=2
    )
    assert (config.platform, config.backend) == ("onnxruntime_onnx", "onnxruntime")
    assert config.default_model_filename == "model.onnx"
    assert [g.kind for g in config.instance_group] == [device]
    if device == pb.ModelInstanceGroup.KIND_CPU:
        assert config.parameters["intra_op_thread_count"].string_value == "2"
    else:
        assert not config.parameters
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator


def test_tensorrt_config_accelerates_the_onnx_file():
    config = build_model_config("ranker", embedding_dim=40, dense_dim=3, deployment="tensorrt_gpu")
    assert (config.platform, config.default_model_filename) == ("onnxruntime_onnx", "model.onnx")
    [accelerator] = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP32"
    assert [g.kind for g in config.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]


@pytest.mark.parametrize(
    "outputs", [["P_CTR"], ["P_CTR", "P_CVR"], ["P_CTR", "P_NEG"], list(OUTPUT_NAMES)]
)
@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_configs_declare_the_trained_heads_only(deployment, outputs):
    config = build_model_config(
        "m", embedding_dim=4, dense_dim=1, deployment=deployment, outputs=outputs
    )
    assert [t.name for t in config.output] == outputs
    assert ranker_signature(config).outputs == tuple(outputs)


def test_outputs_for_tasks():
    assert outputs_for_tasks(["click"]) == ("P_CTR",)
    assert outputs_for_tasks(("click", "negative")) == ("P_CTR", "P_NEG")
    assert outputs_for_tasks(("click", "conversion", "negative")) == OUTPUT_NAMES
    with pytest.raises(ValueError, match="must include 'click'"):
        outputs_for_tasks(["conversion"])
    with pytest.raises(ValueError, match="unknown task 'views'"):
        outputs_for_tasks(["click", "views"])


@pytest.mark.parametrize("deployment", [None, *sorted(DEPLOYMENTS)])
def test_written_config_parses_back_to_the_same_message(tmp_path, deployment):
    model_dir = tmp_path / "my_ranker"
    path = write_model_config(
        model_dir,
        embedding_dim=7,
        dense_dim=2,
        max_batch_size=64,
        deployment=deployment or BASELINE_DEPLOYMENT,
        as_default=deployment is None,
    )
    assert path == model_config_path(model_dir, deployment)
    assert path == (
        model_dir / "config.pbtxt"
        if deployment is None
        else model_dir / f"configs/{deployment}.pbtxt"
    )
    parsed = read_model_config(path)
    expected = build_model_config(
        "my_ranker",
        embedding_dim=7,
        dense_dim=2,
        max_batch_size=64,
        deployment=deployment or BASELINE_DEPLOYMENT,
    )
    assert parsed == expected
    assert ranker_signature(parsed) == RankerSignature("my_ranker", 7, 2, 64)


def test_write_model_configs_writes_the_default_and_every_deployment(tmp_path):
    paths = write_model_configs(
        tmp_path / "ranker",
        embedding_dim=7,
        dense_dim=2,
        default="python_onnx_fp32",
        outputs=["P_CTR"],
        execution_env_path="$$TRITON_MODEL_DIRECTORY/env",
    )
    assert paths[0] == tmp_path / "ranker" / "config.pbtxt"
    assert sorted(p.stem for p in paths[1:]) == sorted(DEPLOYMENTS)
    default = read_model_config(paths[0])
    assert default == read_model_config(model_config_path(tmp_path / "ranker", "python_onnx_fp32"))
    for path in paths:
        config = read_model_config(path)
        assert [t.name for t in config.output] == ["P_CTR"]
        if config.backend == "python":
            env = config.parameters["EXECUTION_ENV_PATH"].string_value
            assert env == "$$TRITON_MODEL_DIRECTORY/env"
        else:
            assert "EXECUTION_ENV_PATH" not in config.parameters


@settings(max_examples=25, deadline=None)
@given(
    embedding_dim=st.integers(1, 4096),
    dense_dim=st.integers(1, 512),
    max_batch_size=st.integers(1, 1 << 20),
    deployment=st.sampled_from(sorted(DEPLOYMENTS)),
)
def test_signature_round_trips_through_text(embedding_dim, dense_dim, max_batch_size, deployment):
    config = build_model_config(
        "m",
        embedding_dim=embedding_dim,
        dense_dim=dense_dim,
        max_batch_size=max_batch_size,
        deployment=deployment,
    )
    text = text_format.MessageToString(config)
    parsed = text_format.Parse(text, pb.ModelConfig())
    assert ranker_signature(parsed) == RankerSignature(
        "m", embedding_dim, dense_dim, max_batch_size
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"embedding_dim": 0}, ValueError, "embedding_dim must be >= 1, got 0"),
        ({"dense_dim": -1}, ValueError, "dense_dim must be >= 0, got -1"),
        ({"embedding_dim": 2.0}, TypeError, "embedding_dim must be an int, got float"),
        ({"dense_dim": True}, TypeError, "dense_dim must be an int, got bool"),
        ({"max_batch_size": 0}, ValueError, "max_batch_size must be >= 1"),
        ({"instances": 0}, ValueError, "instances must be >= 1"),
        ({"threads": 0}, ValueError, "threads must be >= 1"),
        ({"torch_threads": 0}, ValueError, "threads must be >= 1"),
        ({"max_queue_delay_us": -5}, ValueError, "max_queue_delay_us must be >= 0"),
        ({"max_queue_delay_us": 1.5}, TypeError, "max_queue_delay_us must be an int"),
        ({"deployment": "tpu"}, ValueError, "deployment must be one of .*, got 'tpu'"),
        ({"outputs": ["P_CVR"]}, ValueError, r"outputs must be P_CTR and any of .*got \['P_CVR'\]"),
        ({"outputs": ["P_CTR", "P_NEG", "P_CVR"]}, ValueError, "distinct and in the order"),
        ({"outputs": []}, ValueError, "outputs must be P_CTR"),
        ({"outputs": "P_CTR"}, TypeError, "outputs must be a sequence of output names"),
        (
            {"deployment": "onnxruntime_gpu", "execution_env_path": "/env"},
            ValueError,
            "execution_env_path is for the Python backend, not 'onnxruntime_gpu'",
        ),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, match):
    arguments = {"embedding_dim": 8, "dense_dim": 2, **kwargs}
    with pytest.raises(error, match=match):
        build_model_config("ranker", **arguments)


def test_empty_name_is_rejected():
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        build_model_config("", embedding_dim=8, dense_dim=2)


def test_unknown_deployment_has_no_config_path(tmp_path):
    with pytest.raises(ValueError, match="deployment must be one of"):
        model_config_path(tmp_path, "tpu")


def test_a_field_triton_does_not_know_is_a_parse_error(tmp_path):
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "ranker"\nmax_batch_sise: 4\n')
    with pytest.raises(ValueError, match=r"config.pbtxt: not a valid Triton model config"):
        read_model_config(path)


def _ranker_config() -> pb.ModelConfig:
    return build_model_config("ranker", embedding_dim=8, dense_dim=2)


def _swap_inputs(config: pb.ModelConfig) -> None:
    first, second = pb.ModelInput(), pb.ModelInput()
    first.CopyFrom(config.input[1])
    second.CopyFrom(config.input[0])
    del config.input[:]
    config.input.extend([first, second])


def _drop_click(config: pb.ModelConfig) -> None:
    del config.output[0]


def _int_dense(config: pb.ModelConfig) -> None:
    config.input[1].data_type = pb.TYPE_INT64


def _two_dim_embeddings(config: pb.ModelConfig) -> None:
    config.input[0].dims.append(4)


def _wide_output(config: pb.ModelConfig) -> None:
    config.output[0].dims[0] = 2


def _no_batching(config: pb.ModelConfig) -> None:
    config.max_batch_size = 0


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (_swap_inputs, r"inputs must be \['EMBEDDINGS', 'DENSE'\] in this order"),
        (_drop_click, r"outputs must be P_CTR and any of P_CVR, P_NEG .*got \['P_CVR', 'P_NEG'\]"),
        (_int_dense, "DENSE must be TYPE_FP32, got TYPE_INT64"),
        (_two_dim_embeddings, r"EMBEDDINGS dims must be one positive size .* got \[8, 4\]"),
        (_wide_output, r"P_CTR dims must be \[1\], got \[2\]"),
        (_no_batching, "max_batch_size must be >= 1, got 0"),
    ],
)
def test_signature_names_what_breaks_the_contract(mutate, match):
    config = _ranker_config()
    mutate(config)
    with pytest.raises(ValueError, match=match):
        ranker_signature(config)


def test_python_backend_model_file_is_the_package_source_copied(tmp_path):
    path = write_python_backend_model(tmp_path / "3")
    assert path == tmp_path / "3" / "model.py"
    assert path.read_text() == Path(python_backend.__file__).read_text()
    requirements = (tmp_path / "3" / "requirements.txt").read_text()
    assert "numpy<2" in requirements
    assert "onnxruntime" in requirements
    assert "torch" in requirements


def test_python_backend_source_imports_only_numpy_and_its_runtime():
    # What model.py imports at the top level: the standard library and numpy. The runtime
    # (torch or onnxruntime) and triton_python_backend_utils are imported inside functions.
    tree = ast.parse(Path(python_backend.__file__).read_text())
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"numpy"}
    inner = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert inner - set(sys.stdlib_module_names) == {
        "numpy",
        "torch",
        "onnxruntime",
        "triton_python_backend_utils",
    }


@pytest.mark.skipif(not COMMITTED_CONFIGS, reason="no config committed under triton_models/")
@pytest.mark.parametrize("path", COMMITTED_CONFIGS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_committed_configs_follow_the_ranker_contract(path):
    config = read_model_config(path)
    signature = ranker_signature(config)
    model_dir = path.parent.parent if path.parent.name == "configs" else path.parent
    assert signature.name == model_dir.name
    if path.parent.name == "configs":
        assert config == build_model_config(
            signature.name,
            embedding_dim=signature.embedding_dim,
            dense_dim=signature.dense_dim,
            deployment=path.stem,
        )
    else:  # what `adrank export` writes by default
        assert config == read_model_config(model_dir / "configs" / f"{DEFAULT_DEPLOYMENT}.pbtxt")
