"""The ranker's config.pbtxt: built from model_config_pb2, written, parsed back, validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.grpc import model_config_pb2 as pb

from adrank.triton.model_config import (
    INPUT_DENSE,
    INPUT_EMBEDDINGS,
    OUTPUT_NAMES,
    TORCH_THREADS_PARAMETER,
    RankerSignature,
    build_model_config,
    model_config_path,
    ranker_signature,
    read_model_config,
    write_model_config,
    write_python_backend_model,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMITTED_CONFIGS = sorted((REPO_ROOT / "triton_models").glob("*/config.pbtxt")) + sorted(
    (REPO_ROOT / "triton_models").glob("*/configs/*.pbtxt")
)


def test_cpu_config_serves_through_the_python_backend():
    config = build_model_config(
        "ranker", embedding_dim=40, dense_dim=3, instances=2, torch_threads=2
    )
    assert config.backend == "python"
    assert config.platform == ""
    assert config.max_batch_size == 16384
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (pb.ModelInstanceGroup.KIND_CPU, 2)
    ]
    assert config.HasField("dynamic_batching")
    assert config.parameters[TORCH_THREADS_PARAMETER].string_value == "2"
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        (INPUT_EMBEDDINGS, pb.TYPE_FP32, [40]),
        (INPUT_DENSE, pb.TYPE_FP32, [3]),
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        (name, pb.TYPE_FP32, [1]) for name in OUTPUT_NAMES
    ]


def test_gpu_config_serves_the_torchscript_file_through_libtorch():
    config = build_model_config("ranker", embedding_dim=40, dense_dim=3, kind="gpu")
    assert config.platform == "pytorch_libtorch"
    assert config.backend == "pytorch"
    assert config.default_model_filename == "model.pt"
    assert [g.kind for g in config.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
    assert TORCH_THREADS_PARAMETER not in config.parameters
    # libtorch maps tensors by config order: it must be forward(embeddings, dense)'s order.
    assert [t.name for t in config.input] == [INPUT_EMBEDDINGS, INPUT_DENSE]
    assert ranker_signature(config) == RankerSignature("ranker", 40, 3, 16384)


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_written_config_parses_back_to_the_same_message(tmp_path, kind):
    model_dir = tmp_path / "my_ranker"
    path = write_model_config(model_dir, embedding_dim=7, dense_dim=2, max_batch_size=64, kind=kind)
    assert path == model_config_path(model_dir, kind)
    assert path == (
        model_dir / "config.pbtxt" if kind == "cpu" else model_dir / "configs/gpu.pbtxt"
    )
    parsed = read_model_config(path)
    expected = build_model_config(
        "my_ranker", embedding_dim=7, dense_dim=2, max_batch_size=64, kind=kind
    )
    assert parsed == expected
    assert ranker_signature(parsed) == RankerSignature("my_ranker", 7, 2, 64)


@settings(max_examples=25, deadline=None)
@given(
    embedding_dim=st.integers(1, 4096),
    dense_dim=st.integers(1, 512),
    max_batch_size=st.integers(1, 1 << 20),
    kind=st.sampled_from(["cpu", "gpu"]),
)
def test_signature_round_trips_through_text(embedding_dim, dense_dim, max_batch_size, kind):
    config = build_model_config(
        "m",
        embedding_dim=embedding_dim,
        dense_dim=dense_dim,
        max_batch_size=max_batch_size,
        kind=kind,
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
        ({"dense_dim": -1}, ValueError, "dense_dim must be >= 1, got -1"),
        ({"embedding_dim": 2.0}, TypeError, "embedding_dim must be an int, got float"),
        ({"dense_dim": True}, TypeError, "dense_dim must be an int, got bool"),
        ({"max_batch_size": 0}, ValueError, "max_batch_size must be >= 1"),
        ({"instances": 0}, ValueError, "instances must be >= 1"),
        ({"torch_threads": 0}, ValueError, "torch_threads must be >= 1"),
        ({"max_queue_delay_us": -5}, ValueError, "max_queue_delay_us must be >= 0"),
        ({"max_queue_delay_us": 1.5}, TypeError, "max_queue_delay_us must be an int"),
        ({"kind": "tpu"}, ValueError, "kind must be 'cpu' or 'gpu', got 'tpu'"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, match):
    arguments = {"embedding_dim": 8, "dense_dim": 2, **kwargs}
    with pytest.raises(error, match=match):
        build_model_config("ranker", **arguments)


def test_empty_name_is_rejected():
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        build_model_config("", embedding_dim=8, dense_dim=2)


def test_unknown_kind_has_no_config_path(tmp_path):
    with pytest.raises(ValueError, match="kind must be 'cpu' or 'gpu'"):
        model_config_path(tmp_path, "tpu")  # type: ignore[arg-type]


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


def _drop_output(config: pb.ModelConfig) -> None:
    del config.output[2]


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
        (_drop_output, r"outputs must be \['P_CTR', 'P_CVR', 'P_NEG'\]"),
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


def test_python_backend_model_file_imports_the_package_implementation(tmp_path):
    path = write_python_backend_model(tmp_path / "3")
    assert path == tmp_path / "3" / "model.py"
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    from adrank.triton.python_backend import TritonPythonModel

    assert namespace["TritonPythonModel"] is TritonPythonModel


@pytest.mark.skipif(not COMMITTED_CONFIGS, reason="no config committed under triton_models/")
@pytest.mark.parametrize("path", COMMITTED_CONFIGS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_committed_configs_follow_the_ranker_contract(path):
    config = read_model_config(path)
    signature = ranker_signature(config)
    assert signature.name == path.parent.name or path.parent.name == "configs"
    if path.parent.name == "configs":
        assert config.platform == "pytorch_libtorch"
        assert [g.kind for g in config.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
    else:
        assert config.backend == "python"
        assert [g.kind for g in config.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]
