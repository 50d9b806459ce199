"""The ranker's Triton Python-backend model: runs the dense part with ONNX Runtime or torch.

Glossary: ``B`` candidates of one request; ``E`` embedding width; ``N`` dense features;
runtime: ``onnxruntime`` (an ``.onnx`` file) or ``torch`` (a TorchScript ``.pt`` file).

This file is self-contained: ``adrank export`` copies it verbatim into every version folder as
``model.py``, so a stock Triton runs it without adrank. It imports only numpy, Triton's
``triton_python_backend_utils`` (inside the stub; imported lazily, so the helpers here can be
tested anywhere) and the runtime its config names, imported when the model loads. The
environment it needs is in ``requirements.txt`` beside it.

Config parameters (``parameters { key: ... value { string_value: ... } }``):

* ``RUNTIME``: ``onnxruntime`` or ``torch`` (default ``torch``);
* ``MODEL_FILE``: the file in the version folder, e.g. ``model.int8.onnx`` (default ``model.pt``);
* ``NUM_THREADS``: intra-op threads per instance (default 1; ``TORCH_NUM_THREADS`` is read too);
* ``EXECUTION_ENV_PATH``: read by the Python backend itself, not here: a packed environment
  (``conda-pack`` / ``venv-pack`` ``.tar.gz``) or a directory holding ``bin/activate`` (a
  virtual environment with the requirements and the Python version of the stub). Triton
  sources its ``bin/activate`` before it starts the stub, so the stub finds numpy and the
  runtime there. ``$$TRITON_MODEL_DIRECTORY`` in the value stands for the model's folder.

Outputs: the config's outputs, in their order (``P_CTR`` and the other trained heads); the model
file returns one ``[B, 1]`` tensor per output, in that order.

The Python backend hands ``execute`` all the requests that dynamic batching gathered, one
entry per client request. They run as one call (concatenated along the batch dimension) and the
outputs are split back; if that call fails, each request is retried alone so that a failure
becomes an error on the request that caused it only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

INPUT_EMBEDDINGS = "EMBEDDINGS"
INPUT_DENSE = "DENSE"
RUNTIME_PARAMETER = "RUNTIME"
MODEL_FILE_PARAMETER = "MODEL_FILE"
THREADS_PARAMETER = "NUM_THREADS"
LEGACY_THREADS_PARAMETER = "TORCH_NUM_THREADS"
RUNTIMES = ("onnxruntime", "torch")
DEFAULT_RUNTIME = "torch"
DEFAULT_MODEL_FILE = "model.pt"


def _pb_utils() -> Any:
    import triton_python_backend_utils  # only inside Triton's Python stub

    return triton_python_backend_utils


def _parameter(model_config: dict, key: str) -> str | None:
    parameter = model_config.get("parameters", {}).get(key)
    return None if parameter is None else str(parameter.get("string_value", ""))


def threads_from_config(model_config: dict) -> int:
    """The ``NUM_THREADS`` (or ``TORCH_NUM_THREADS``) parameter of a config (JSON form), 1 if
    absent."""
    for key in (THREADS_PARAMETER, LEGACY_THREADS_PARAMETER):
        value = _parameter(model_config, key)
        if value is None:
            continue
        try:
            threads = int(value)
        except ValueError:
            raise ValueError(f"{key} must be an integer, got {value!r}") from None
        if threads < 1:
            raise ValueError(f"{key} must be >= 1, got {threads}")
        return threads
    return 1


def runtime_from_config(model_config: dict) -> tuple[str, str]:
    """``(runtime, model file name)`` from a config's ``RUNTIME`` and ``MODEL_FILE``."""
    runtime = _parameter(model_config, RUNTIME_PARAMETER) or DEFAULT_RUNTIME
    if runtime not in RUNTIMES:
        raise ValueError(f"{RUNTIME_PARAMETER} must be one of {list(RUNTIMES)}, got {runtime!r}")
    filename = _parameter(model_config, MODEL_FILE_PARAMETER) or DEFAULT_MODEL_FILE
    if "/" in filename or filename.startswith("."):
        raise ValueError(f"{MODEL_FILE_PARAMETER} must be a file name, got {filename!r}")
    return runtime, filename


def output_names_from_config(model_config: dict) -> list[str]:
    """The config's output names, in order."""
    names = [output["name"] for output in model_config.get("output", [])]
    if not names:
        raise ValueError("the model config declares no outputs")
    return names


class TorchRunner:
    """A TorchScript file run with torch: ``run(embeddings, dense) -> [array [B, 1], ...]``."""

    def __init__(self, path: Path, threads: int) -> None:
        import warnings

        import torch

        self._torch = torch
        torch.set_num_threads(threads)
        try:
            with warnings.catch_warnings():
                # TorchScript is what the libtorch backend serves too; torch 2.13 deprecates jit.
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(str(path), map_location="cpu").eval()
        except RuntimeError as error:
            raise RuntimeError(f"{path} is not a loadable TorchScript file: {error}") from None

    def run(self, embeddings: np.ndarray, dense: np.ndarray) -> list:
        torch = self._torch
        with torch.inference_mode():
            outputs = self.module(torch.from_numpy(embeddings), torch.from_numpy(dense))
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        if not isinstance(outputs, (tuple, list)):
            raise RuntimeError(f"the model must return tensors, got {type(outputs).__name__}")
        return [
            o.detach().to(torch.float32).numpy() if isinstance(o, torch.Tensor) else o
            for o in outputs
        ]


class OnnxRunner:
    """An ONNX file run with ONNX Runtime on the CPU, ``threads`` intra-op threads."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Worker threads sleep between calls instead of spinning: instances share the CPU with
        # Triton, the other instances and the caller.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # ORT raises its own types for a bad file
            raise RuntimeError(f"{path} is not a loadable ONNX file: {error}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, embeddings: np.ndarray, dense: np.ndarray) -> list:
        feeds = dict(zip(self.input_names, (embeddings, dense), strict=True))
        return self.session.run(None, feeds)


def load_runner(path: Path, runtime: str, threads: int) -> TorchRunner | OnnxRunner:
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path} (run `adrank export`)")
    if runtime == "onnxruntime":
        return OnnxRunner(path, threads)
    return TorchRunner(path, threads)


def run_dense(
    runner: TorchRunner | OnnxRunner,
    embeddings: np.ndarray,
    dense: np.ndarray,
    output_names: list[str],
) -> list[np.ndarray]:
    """Run the dense part on one batch; one fp32 ``[B, 1]`` array per output name."""
    batch = embeddings.shape[0]
    outputs = runner.run(embeddings, dense)
    if len(outputs) != len(output_names):
        raise RuntimeError(
            f"the model must return {len(output_names)} tensors ({', '.join(output_names)}), "
            f"got {len(outputs)}"
        )
    arrays = []
    for name, output in zip(output_names, outputs, strict=True):
        shape = getattr(output, "shape", type(output).__name__)
        if not isinstance(output, np.ndarray) or output.shape != (batch, 1):
            raise RuntimeError(f"{name}: expected shape ({batch}, 1), got {shape}")
        arrays.append(output.astype(np.float32, copy=False))
    return arrays


class TritonPythonModel:
    """Python-backend model: ``initialize`` loads the config's model file, ``execute`` runs it."""

    def initialize(self, args: dict) -> None:
        model_config = json.loads(args["model_config"])
        threads = threads_from_config(model_config)
        runtime, filename = runtime_from_config(model_config)
        self.output_names = output_names_from_config(model_config)
        path = Path(args["model_repository"]) / args["model_version"] / filename
        self.runner = load_runner(path, runtime, threads)
        self.name = model_config["name"]

    def execute(self, requests: list) -> list:
        pb_utils = _pb_utils()
        if len(requests) > 1:
            try:
                return self._execute_batched(pb_utils, requests)
            except Exception:  # one request is bad: run each alone, so only it gets the error
                pass
        return [self._execute_one(pb_utils, r) for r in requests]

    def _execute_batched(self, pb_utils: Any, requests: list) -> list:
        embeddings, dense = zip(*(self._inputs(pb_utils, r) for r in requests), strict=True)
        joined = run_dense(
            self.runner, np.concatenate(embeddings), np.concatenate(dense), self.output_names
        )
        splits = np.cumsum([e.shape[0] for e in embeddings])[:-1]
        per_request = zip(*(np.split(out, splits) for out in joined), strict=True)
        return [self._response(pb_utils, list(outputs)) for outputs in per_request]

    def _execute_one(self, pb_utils: Any, request: Any) -> Any:
        try:
            embeddings, dense = self._inputs(pb_utils, request)
            outputs = run_dense(self.runner, embeddings, dense, self.output_names)
            return self._response(pb_utils, outputs)
        except Exception as error:  # becomes this request's error only
            message = f"model {self.name!r}: {type(error).__name__}: {error}"
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))

    @staticmethod
    def _inputs(pb_utils: Any, request: Any) -> tuple[np.ndarray, np.ndarray]:
        # fp32 views of the stub's shared memory (Triton checked dtype and dims): no copy here.
        embeddings = pb_utils.get_input_tensor_by_name(request, INPUT_EMBEDDINGS).as_numpy()
        dense = pb_utils.get_input_tensor_by_name(request, INPUT_DENSE).as_numpy()
        return embeddings, dense

    def _response(self, pb_utils: Any, outputs: list[np.ndarray]) -> Any:
        tensors = [
            pb_utils.Tensor(name, np.ascontiguousarray(out))
            for name, out in zip(self.output_names, outputs, strict=True)
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        self.runner = None
