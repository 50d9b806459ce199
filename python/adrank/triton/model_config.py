"""The ranker's Triton contract: tensor names, ``config.pbtxt`` and the Python-backend ``model.py``.

Configs are built from ``tritonclient.grpc.model_config_pb2`` (never written by hand), so a
field name or enum that Triton does not know fails here, at export, not when the server loads.

Layout of one model in the repository::

    triton_models/<model>/config.pbtxt         CPU config: Python backend, KIND_CPU
    triton_models/<model>/configs/gpu.pbtxt    GPU hosts: libtorch backend, KIND_GPU
                                               (tritonserver --model-config-name=gpu)
    triton_models/<model>/<version>/model.pt   TorchScript dense part (adrank export)
    triton_models/<model>/<version>/model.py   thin Python-backend entry point

Tensors (``B`` = candidates of one request; ``dims`` leave it out since ``max_batch_size > 0``):
``EMBEDDINGS`` fp32 ``[B, E]``, ``DENSE`` fp32 ``[B, N]`` in; ``P_CTR``, ``P_CVR``, ``P_NEG``
fp32 ``[B, 1]`` out. The TorchScript ``forward(embeddings, dense)`` returns ``(ctr, cvr, neg)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from adrank.artifacts import MODEL_FILE

INPUT_EMBEDDINGS = "EMBEDDINGS"
INPUT_DENSE = "DENSE"
OUTPUT_NAMES = ("P_CTR", "P_CVR", "P_NEG")
TORCHSCRIPT_FILENAME = MODEL_FILE  # the export format names it (adrank.artifacts)
PYTHON_MODEL_FILENAME = "model.py"
GPU_CONFIG_NAME = "gpu"
# Read by the Python backend (adrank.triton.python_backend) from the config's parameters.
TORCH_THREADS_PARAMETER = "TORCH_NUM_THREADS"

Kind = Literal["cpu", "gpu"]

_PYTHON_MODEL_SOURCE = '''\
"""Triton Python-backend entry point, written by adrank (adrank.triton.model_config).

The implementation lives in the adrank package so that every model version runs the same code.
"""

from adrank.triton.python_backend import TritonPythonModel

__all__ = ["TritonPythonModel"]
'''


@dataclass(frozen=True)
class RankerSignature:
    """The shapes a ranker model accepts, as its ``config.pbtxt`` declares them."""

    name: str
    embedding_dim: int
    dense_dim: int
    max_batch_size: int

    def __post_init__(self) -> None:
        _check_positive("embedding_dim", self.embedding_dim)
        _check_positive("dense_dim", self.dense_dim)
        _check_positive("max_batch_size", self.max_batch_size)


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def build_model_config(
    name: str,
    *,
    embedding_dim: int,
    dense_dim: int,
    max_batch_size: int = 16384,
    instances: int = 1,
    kind: Kind = "cpu",
    torch_threads: int = 1,
    max_queue_delay_us: int = 0,
) -> pb.ModelConfig:
    """Build the ranker's ``ModelConfig``.

    ``kind="cpu"`` serves the TorchScript file through the Python backend (the embedded server);
    ``kind="gpu"`` through the libtorch backend on GPU instances (NVIDIA's container). The
    libtorch backend maps inputs and outputs by their order in the config when the names do
    not follow its ``<name>__<index>`` convention, so the order here is ``forward``'s order.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    RankerSignature(name, embedding_dim, dense_dim, max_batch_size)
    _check_positive("instances", instances)
    _check_positive("torch_threads", torch_threads)
    if isinstance(max_queue_delay_us, bool) or not isinstance(max_queue_delay_us, int):
        raise TypeError(f"max_queue_delay_us must be an int, got {type(max_queue_delay_us)}")
    if max_queue_delay_us < 0:
        raise ValueError(f"max_queue_delay_us must be >= 0, got {max_queue_delay_us}")
    if kind not in ("cpu", "gpu"):
        raise ValueError(f"kind must be 'cpu' or 'gpu', got {kind!r}")

    config = pb.ModelConfig(name=name, max_batch_size=max_batch_size)
    if kind == "cpu":
        config.backend = "python"
        group_kind = pb.ModelInstanceGroup.KIND_CPU
    else:
        config.platform = "pytorch_libtorch"
        config.backend = "pytorch"
        config.default_model_filename = TORCHSCRIPT_FILENAME
        group_kind = pb.ModelInstanceGroup.KIND_GPU
    config.input.add(name=INPUT_EMBEDDINGS, data_type=pb.TYPE_FP32, dims=[embedding_dim])
    config.input.add(name=INPUT_DENSE, data_type=pb.TYPE_FP32, dims=[dense_dim])
    for output in OUTPUT_NAMES:
        config.output.add(name=output, data_type=pb.TYPE_FP32, dims=[1])
    config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    config.instance_group.add(count=instances, kind=group_kind)
    # Two versions served at once: a fleet moves from one to the next without a gap.
    config.version_policy.latest.num_versions = 2
    if kind == "cpu":  # the libtorch backend has its own thread settings
        config.parameters[TORCH_THREADS_PARAMETER].string_value = str(torch_threads)
    return config


def model_config_path(model_dir: str | Path, kind: Kind = "cpu") -> Path:
    """Where the config of ``kind`` lives in a model directory."""
    model_dir = Path(model_dir)
    if kind == "cpu":
        return model_dir / "config.pbtxt"
    if kind == "gpu":
        return model_dir / "configs" / f"{GPU_CONFIG_NAME}.pbtxt"
    raise ValueError(f"kind must be 'cpu' or 'gpu', got {kind!r}")


def write_model_config(
    model_dir: str | Path,
    *,
    embedding_dim: int,
    dense_dim: int,
    max_batch_size: int = 16384,
    instances: int = 1,
    kind: Kind = "cpu",
    torch_threads: int = 1,
    max_queue_delay_us: int = 0,
) -> Path:
    """Write the ranker config of ``kind`` into ``model_dir`` (named after the folder).

    Returns the path written: ``model_dir/config.pbtxt`` for ``"cpu"``,
    ``model_dir/configs/gpu.pbtxt`` for ``"gpu"``.
    """
    model_dir = Path(model_dir)
    config = build_model_config(
        model_dir.name,
        embedding_dim=embedding_dim,
        dense_dim=dense_dim,
        max_batch_size=max_batch_size,
        instances=instances,
        kind=kind,
        torch_threads=torch_threads,
        max_queue_delay_us=max_queue_delay_us,
    )
    path = model_config_path(model_dir, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text_format.MessageToString(config))
    return path


def write_model_configs(model_dir: str | Path, **settings: Any) -> list[Path]:
    """Write both variants, CPU (served here) and GPU (kept beside it for GPU hosts), with the
    same ``settings`` (those of :func:`write_model_config` but ``kind``); returns their paths."""
    return [write_model_config(model_dir, kind=kind, **settings) for kind in ("cpu", "gpu")]


def write_python_backend_model(version_dir: str | Path) -> Path:
    """Write the thin Python-backend ``model.py`` into a version folder; returns its path."""
    version_dir = Path(version_dir)
    version_dir.mkdir(parents=True, exist_ok=True)
    path = version_dir / PYTHON_MODEL_FILENAME
    path.write_text(_PYTHON_MODEL_SOURCE)
    return path


def read_model_config(path: str | Path) -> pb.ModelConfig:
    """Parse a ``config.pbtxt``; a field Triton does not know raises ``ValueError``."""
    path = Path(path)
    try:
        return text_format.Parse(path.read_text(), pb.ModelConfig())
    except text_format.ParseError as error:
        raise ValueError(f"{path}: not a valid Triton model config: {error}") from error


def ranker_signature(config: pb.ModelConfig) -> RankerSignature:
    """Check that ``config`` follows the ranker contract and return its shapes.

    Raises ``ValueError`` naming the first tensor whose name, dtype or dims differ.
    """
    inputs = {t.name: t for t in config.input}
    outputs = {t.name: t for t in config.output}
    expected_inputs = [INPUT_EMBEDDINGS, INPUT_DENSE]
    if [t.name for t in config.input] != expected_inputs:
        raise ValueError(
            f"model {config.name!r}: inputs must be {expected_inputs} in this order, "
            f"got {[t.name for t in config.input]}"
        )
    if sorted(outputs) != sorted(OUTPUT_NAMES):
        raise ValueError(
            f"model {config.name!r}: outputs must be {list(OUTPUT_NAMES)}, got {sorted(outputs)}"
        )
    for tensor in [*config.input, *config.output]:
        if tensor.data_type != pb.TYPE_FP32:
            got = pb.DataType.Name(tensor.data_type)
            raise ValueError(f"model {config.name!r}: {tensor.name} must be TYPE_FP32, got {got}")
        if len(tensor.dims) != 1 or tensor.dims[0] < 1:
            raise ValueError(
                f"model {config.name!r}: {tensor.name} dims must be one positive size "
                f"(batch dimension left out), got {list(tensor.dims)}"
            )
    for output in OUTPUT_NAMES:
        if list(outputs[output].dims) != [1]:
            got = list(outputs[output].dims)
            raise ValueError(f"model {config.name!r}: {output} dims must be [1], got {got}")
    if config.max_batch_size < 1:
        raise ValueError(
            f"model {config.name!r}: max_batch_size must be >= 1, got {config.max_batch_size}"
        )
    return RankerSignature(
        name=config.name,
        embedding_dim=int(inputs[INPUT_EMBEDDINGS].dims[0]),
        dense_dim=int(inputs[INPUT_DENSE].dims[0]),
        max_batch_size=int(config.max_batch_size),
    )
