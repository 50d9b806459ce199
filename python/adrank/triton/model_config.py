"""The ranker's Triton contract: tensor names, a config per deployment, the Python-backend files.

Glossary: deployment: one way to serve the model (a backend, a device, a model file), named
by its config (Triton's ``--model-config-name``); variant: a Python-backend deployment's
runtime and precision (``onnx_int8``, ``onnx_fp32``, ``torch_fp32``, ``torch_bf16``).

Configs are built from ``tritonclient.grpc.model_config_pb2`` (never written by hand), so a
field name or enum that Triton does not know fails here, at export, not when the server loads.

Layout of one model in the repository::

    triton_models/<model>/config.pbtxt              the default deployment (Python backend)
    triton_models/<model>/configs/<name>.pbtxt      every deployment (--model-config-name=<name>)
    triton_models/<model>/<version>/model.pt        TorchScript fp32 (adrank export)
    triton_models/<model>/<version>/model.bf16.pt   TorchScript, bf16 matmuls, fp32 in and out
    triton_models/<model>/<version>/model.onnx      ONNX fp32 (opset ONNX_OPSET)
    triton_models/<model>/<version>/model.int8.onnx ONNX, int8 dynamic quantization of matmuls
    triton_models/<model>/<version>/model.py        the Python-backend model (self-contained)
    triton_models/<model>/<version>/requirements.txt  what model.py's environment needs

Deployments (:data:`DEPLOYMENTS`): ``python_<variant>`` (the Python backend, CPU: the embedded
server has no other backend); ``onnxruntime_cpu`` and ``onnxruntime_gpu`` (Triton's ONNX
Runtime backend); ``libtorch_gpu`` (the PyTorch backend on ``model.pt``); ``tensorrt_gpu`` (the
ONNX Runtime backend with its TensorRT execution accelerator, which builds the engine for the
GPU it finds at load, so the repository holds no GPU-specific plan file).

Tensors (``B`` = candidates of one request; ``dims`` leave it out since ``max_batch_size > 0``):
``EMBEDDINGS`` fp32 ``[B, E]``, ``DENSE`` fp32 ``[B, N]`` in (a schema without dense fields has
``N = 0``: Triton refuses a 0 dim, so ``DENSE`` is declared ``[-1]`` and requests send
``[B, 0]``); one fp32 ``[B, 1]`` output per
trained task (``P_CTR`` always: click is the base task; ``P_CVR`` if conversion was trained,
``P_NEG`` if negative feedback was), in the order of :data:`OUTPUT_NAMES`. A model file returns
them in that order.

The Python backend's packed-environment route: ``execution_env_path`` adds Triton's
``EXECUTION_ENV_PATH`` parameter (see ``python_backend.py``, copied as ``model.py``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from adrank.artifacts import MODEL_FILE
from adrank.triton import python_backend
from adrank.triton.python_backend import (
    INPUT_DENSE,
    INPUT_EMBEDDINGS,
    MODEL_FILE_PARAMETER,
    RUNTIME_PARAMETER,
    THREADS_PARAMETER,
)

__all__ = [
    "DEFAULT_DEPLOYMENT",
    "DEPLOYMENTS",
    "INPUT_DENSE",
    "INPUT_EMBEDDINGS",
    "OUTPUT_NAMES",
    "OUTPUT_OF_TASK",
    "Deployment",
    "RankerSignature",
    "build_model_config",
    "model_config_path",
    "outputs_for_tasks",
    "ranker_signature",
    "read_model_config",
    "write_model_config",
    "write_model_configs",
    "write_python_backend_model",
]

OUTPUT_NAMES = ("P_CTR", "P_CVR", "P_NEG")
OUTPUT_OF_TASK = {"click": "P_CTR", "conversion": "P_CVR", "negative": "P_NEG"}
TORCHSCRIPT_FILENAME = MODEL_FILE  # the export format names it (adrank.artifacts)
TORCHSCRIPT_BF16_FILENAME = "model.bf16.pt"
ONNX_FILENAME = "model.onnx"
ONNX_INT8_FILENAME = "model.int8.onnx"
ONNX_OPSET = 17
PYTHON_MODEL_FILENAME = "model.py"
REQUIREMENTS_FILENAME = "requirements.txt"
# What model.py's environment needs (the server's Python, or EXECUTION_ENV_PATH's).
REQUIREMENTS = """\
# The environment of the Python-backend model.py, for the Python version of Triton's stub
# (`python3 --version` inside the server's container). Two routes:
#  - install these into the Python that is first on PATH when tritonserver starts; or
#  - pack an environment and name it in the config (Triton's EXECUTION_ENV_PATH):
#      python3 -m venv env && env/bin/pip install -r requirements.txt
#      (or conda create -p env python=3.X && conda run -p env pip install -r requirements.txt)
#      conda-pack -p env -o env.tar.gz     (or venv-pack -p env -o env.tar.gz)
#    and `adrank export --execution-env-path` / export_model(execution_env_path=...) writes
#      parameters { key: "EXECUTION_ENV_PATH"
#                   value { string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz" } }
#    into the Python-backend configs (a directory holding bin/activate works as well).
# numpy 1.x: Triton's Python stub is built against it (numpy 2 gives empty outputs).
numpy<2
# configs python_onnx_int8 (the default) and python_onnx_fp32:
onnxruntime>=1.20
# configs python_torch_fp32 and python_torch_bf16 (`pip install torch==2.13.0` gets the CPU build):
torch>=2.1
"""
# Kept for older configs: the backend reads it when NUM_THREADS is absent.
TORCH_THREADS_PARAMETER = python_backend.LEGACY_THREADS_PARAMETER

Device = Literal["cpu", "gpu"]


@dataclass(frozen=True)
class Deployment:
    """One way to serve the model: a Triton backend on a device, reading one model file."""

    name: str
    backend: Literal["python", "onnxruntime", "pytorch", "tensorrt_via_onnxruntime"]
    device: Device
    model_file: str
    runtime: str = ""  # the Python backend's runtime: "onnxruntime" or "torch"
    about: str = ""


DEPLOYMENTS: dict[str, Deployment] = {
    d.name: d
    for d in (
        Deployment("python_onnx_int8", "python", "cpu", ONNX_INT8_FILENAME, "onnxruntime",
                   "ONNX Runtime, int8 dynamic quantization of the matmuls"),
        Deployment("python_onnx_fp32", "python", "cpu", ONNX_FILENAME, "onnxruntime",
                   "ONNX Runtime, fp32"),
        Deployment("python_torch_fp32", "python", "cpu", TORCHSCRIPT_FILENAME, "torch",
                   "TorchScript with torch, fp32 (the model as trained)"),
        Deployment("python_torch_bf16", "python", "cpu", TORCHSCRIPT_BF16_FILENAME, "torch",
                   "TorchScript with torch, bf16 matmuls (AVX-512 BF16)"),
        Deployment("onnxruntime_cpu", "onnxruntime", "cpu", ONNX_FILENAME,
                   about="Triton's ONNX Runtime backend, fp32"),
        Deployment("onnxruntime_gpu", "onnxruntime", "gpu", ONNX_FILENAME,
                   about="Triton's ONNX Runtime backend (CUDA), fp32"),
        Deployment("libtorch_gpu", "pytorch", "gpu", TORCHSCRIPT_FILENAME,
                   about="Triton's PyTorch (libtorch) backend, fp32"),
        Deployment("tensorrt_gpu", "tensorrt_via_onnxruntime", "gpu", ONNX_FILENAME,
                   about="ONNX Runtime backend with the TensorRT accelerator, fp32"),
    )
}  # fmt: skip
# The fastest variant within the click-AUC bound on the CPU (bench/bench_triton.py); what
# `adrank export` writes as config.pbtxt.
DEFAULT_DEPLOYMENT = "python_onnx_int8"
# What the repository helpers write as config.pbtxt unless told: the one file every test
# repository has (model.pt).
BASELINE_DEPLOYMENT = "python_torch_fp32"


def outputs_for_tasks(tasks: Any) -> tuple[str, ...]:
    """The output names of the trained ``tasks`` (click required), in :data:`OUTPUT_NAMES` order."""
    unknown = [t for t in tasks if t not in OUTPUT_OF_TASK]
    if unknown:
        raise ValueError(f"tasks: unknown task {unknown[0]!r} (known: {list(OUTPUT_OF_TASK)})")
    if "click" not in tasks:
        raise ValueError(f"tasks must include 'click' (the base task), got {list(tasks)}")
    return tuple(OUTPUT_OF_TASK[t] for t in OUTPUT_OF_TASK if t in tasks)


@dataclass(frozen=True)
class RankerSignature:
    """The shapes a ranker model accepts, as its ``config.pbtxt`` declares them, and the
    rates it answers (``outputs``: ``P_CTR`` and the other trained heads)."""

    name: str
    embedding_dim: int
    dense_dim: int
    max_batch_size: int
    outputs: tuple[str, ...] = OUTPUT_NAMES

    def __post_init__(self) -> None:
        _check_positive("embedding_dim", self.embedding_dim)
        _check_positive("dense_dim", self.dense_dim, minimum=0)  # 0: no dense field
        _check_positive("max_batch_size", self.max_batch_size)
        _check_outputs(self.outputs)


def _check_positive(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_outputs(outputs: Any) -> tuple[str, ...]:
    if isinstance(outputs, str) or not all(isinstance(o, str) for o in outputs):
        raise TypeError(f"outputs must be a sequence of output names, got {outputs!r}")
    outputs = tuple(outputs)
    ordered = tuple(o for o in OUTPUT_NAMES if o in outputs)
    if not outputs or outputs[0] != "P_CTR" or outputs != ordered:
        raise ValueError(
            f"outputs must be P_CTR and any of P_CVR, P_NEG, distinct and in the order "
            f"{list(OUTPUT_NAMES)}, got {list(outputs)}"
        )
    return outputs


def build_model_config(
    name: str,
    *,
    embedding_dim: int,
    dense_dim: int,
    deployment: str = BASELINE_DEPLOYMENT,
    outputs: Any = OUTPUT_NAMES,
    max_batch_size: int = 16384,
    instances: int = 1,
    threads: int = 1,
    max_queue_delay_us: int = 0,
    execution_env_path: str | None = None,
    torch_threads: int | None = None,
    dynamic_batching: bool = True,
) -> pb.ModelConfig:
    """Build the ranker's ``ModelConfig`` for one of :data:`DEPLOYMENTS`.

    ``outputs`` are the trained heads (:func:`outputs_for_tasks`). ``threads`` are each
    instance's intra-op threads (``torch_threads`` is its older name). The libtorch backend maps
    inputs and outputs by their order in the config when the names do not follow its
    ``<name>__<index>`` convention, so the order here is the model file's order.
    ``execution_env_path`` (Python backend only) is Triton's ``EXECUTION_ENV_PATH``.
    ``dynamic_batching=False`` leaves Triton's dynamic batcher out (each request runs alone;
    bench/bench_triton.py measures both).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if torch_threads is not None:
        threads = torch_threads
    outputs = _check_outputs(outputs)
    RankerSignature(name, embedding_dim, dense_dim, max_batch_size, outputs)
    _check_positive("instances", instances)
    _check_positive("threads", threads)
    if isinstance(max_queue_delay_us, bool) or not isinstance(max_queue_delay_us, int):
        raise TypeError(f"max_queue_delay_us must be an int, got {type(max_queue_delay_us)}")
    if max_queue_delay_us < 0:
        raise ValueError(f"max_queue_delay_us must be >= 0, got {max_queue_delay_us}")
    if deployment not in DEPLOYMENTS:
        raise ValueError(f"deployment must be one of {sorted(DEPLOYMENTS)}, got {deployment!r}")
    spec = DEPLOYMENTS[deployment]
    if execution_env_path is not None and spec.backend != "python":
        raise ValueError(f"execution_env_path is for the Python backend, not {deployment!r}")

    config = pb.ModelConfig(name=name, max_batch_size=max_batch_size)
    if spec.backend == "python":
        config.backend = "python"
        config.parameters[RUNTIME_PARAMETER].string_value = spec.runtime
        config.parameters[MODEL_FILE_PARAMETER].string_value = spec.model_file
        config.parameters[THREADS_PARAMETER].string_value = str(threads)
        if execution_env_path is not None:
            config.parameters["EXECUTION_ENV_PATH"].string_value = execution_env_path
    elif spec.backend == "pytorch":
        config.platform = "pytorch_libtorch"
        config.backend = "pytorch"
        config.default_model_filename = spec.model_file
    else:  # ONNX Runtime, with TensorRT or not
        config.platform = "onnxruntime_onnx"
        config.backend = "onnxruntime"
        config.default_model_filename = spec.model_file
        if spec.device == "cpu":
            config.parameters["intra_op_thread_count"].string_value = str(threads)
            config.parameters["inter_op_thread_count"].string_value = "1"
        if spec.backend == "tensorrt_via_onnxruntime":
            accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
                name="tensorrt"
            )
            # fp32 keeps parity with the trained model; FP16 is the faster setting to measure.
            accelerator.parameters["precision_mode"] = "FP32"
            accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
    config.input.add(name=INPUT_EMBEDDINGS, data_type=pb.TYPE_FP32, dims=[embedding_dim])
    # Triton refuses a 0 dim: a model without dense fields takes DENSE [B, 0] as variable width.
    config.input.add(name=INPUT_DENSE, data_type=pb.TYPE_FP32, dims=[dense_dim or -1])
    for output in outputs:
        config.output.add(name=output, data_type=pb.TYPE_FP32, dims=[1])
    if dynamic_batching:  # without it, each request runs alone (one thread hop fewer)
        config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    group_kind = (
        pb.ModelInstanceGroup.KIND_GPU if spec.device == "gpu" else pb.ModelInstanceGroup.KIND_CPU
    )
    config.instance_group.add(count=instances, kind=group_kind)
    # Two versions served at once: a fleet moves from one to the next without a gap.
    config.version_policy.latest.num_versions = 2
    return config


def model_config_path(model_dir: str | Path, deployment: str | None = None) -> Path:
    """``model_dir/config.pbtxt`` (``deployment`` None: the default) or
    ``model_dir/configs/<deployment>.pbtxt``."""
    model_dir = Path(model_dir)
    if deployment is None:
        return model_dir / "config.pbtxt"
    if deployment not in DEPLOYMENTS:
        raise ValueError(f"deployment must be one of {sorted(DEPLOYMENTS)}, got {deployment!r}")
    return model_dir / "configs" / f"{deployment}.pbtxt"


def write_model_config(
    model_dir: str | Path,
    *,
    embedding_dim: int,
    dense_dim: int,
    deployment: str = BASELINE_DEPLOYMENT,
    as_default: bool = True,
    **settings: Any,
) -> Path:
    """Write the config of ``deployment`` into ``model_dir`` (named after the folder).

    ``as_default``: as ``model_dir/config.pbtxt`` (what Triton loads without
    ``--model-config-name``), else as ``model_dir/configs/<deployment>.pbtxt``. ``settings``
    are those of :func:`build_model_config`. Returns the path written.
    """
    model_dir = Path(model_dir)
    config = build_model_config(
        model_dir.name,
        embedding_dim=embedding_dim,
        dense_dim=dense_dim,
        deployment=deployment,
        **settings,
    )
    path = model_config_path(model_dir, None if as_default else deployment)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text_format.MessageToString(config))
    return path


def write_model_configs(
    model_dir: str | Path, *, default: str = BASELINE_DEPLOYMENT, **settings: Any
) -> list[Path]:
    """Write ``config.pbtxt`` (the ``default`` deployment) and ``configs/<name>.pbtxt`` for
    every deployment of :data:`DEPLOYMENTS`, with the same ``settings`` (those of
    :func:`build_model_config` but ``deployment``); returns their paths, the default first."""

    def own(name: str) -> dict[str, Any]:  # EXECUTION_ENV_PATH is the Python backend's only
        if name in DEPLOYMENTS and DEPLOYMENTS[name].backend != "python":
            return {k: v for k, v in settings.items() if k != "execution_env_path"}
        return settings

    paths = [write_model_config(model_dir, deployment=default, **own(default))]
    for name in DEPLOYMENTS:
        paths.append(write_model_config(model_dir, deployment=name, as_default=False, **own(name)))
    return paths


def write_python_backend_model(version_dir: str | Path) -> Path:
    """Copy the Python-backend model (``adrank/triton/python_backend.py``, self-contained) into a
    version folder as ``model.py``, with ``requirements.txt`` beside it; returns model.py's path."""
    version_dir = Path(version_dir)
    version_dir.mkdir(parents=True, exist_ok=True)
    path = version_dir / PYTHON_MODEL_FILENAME
    shutil.copyfile(python_backend.__file__, path)
    (version_dir / REQUIREMENTS_FILENAME).write_text(REQUIREMENTS)
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
    try:
        declared = _check_outputs([t.name for t in config.output])
    except ValueError:
        raise ValueError(
            f"model {config.name!r}: outputs must be P_CTR and any of P_CVR, P_NEG in the "
            f"order {list(OUTPUT_NAMES)}, got {[t.name for t in config.output]}"
        ) from None
    for tensor in [*config.input, *config.output]:
        if tensor.data_type != pb.TYPE_FP32:
            got = pb.DataType.Name(tensor.data_type)
            raise ValueError(f"model {config.name!r}: {tensor.name} must be TYPE_FP32, got {got}")
        no_dense = tensor.name == INPUT_DENSE and list(tensor.dims) == [-1]
        if not no_dense and (len(tensor.dims) != 1 or tensor.dims[0] < 1):
            raise ValueError(
                f"model {config.name!r}: {tensor.name} dims must be one positive size "
                f"(batch dimension left out), got {list(tensor.dims)}"
            )
    for output in declared:
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
        dense_dim=max(int(inputs[INPUT_DENSE].dims[0]), 0),  # [-1]: no dense field
        max_batch_size=int(config.max_batch_size),
        outputs=declared,
    )
