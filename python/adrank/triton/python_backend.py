"""The ranker's Triton Python-backend model: runs the TorchScript dense part with torch.

Every version folder's ``model.py`` re-exports :class:`TritonPythonModel` from here, so the
serving logic lives in one place. This module runs inside Triton's Python stub process, where
``triton_python_backend_utils`` is importable; it is imported lazily so that the module itself
can be imported (and its helpers tested) anywhere.

The Python backend hands ``execute`` all the requests that dynamic batching gathered, one
entry per client request. They run as one torch call (concatenated along the batch dimension)
and the outputs are split back; if that call fails, each request is retried alone so that a
failure becomes an error on the request that caused it only.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adrank.triton.model_config import (
    INPUT_DENSE,
    INPUT_EMBEDDINGS,
    OUTPUT_NAMES,
    TORCH_THREADS_PARAMETER,
    TORCHSCRIPT_FILENAME,
)


def _pb_utils() -> Any:
    import triton_python_backend_utils  # only inside Triton's Python stub

    return triton_python_backend_utils


def torch_threads_from_config(model_config: dict) -> int:
    """The ``TORCH_NUM_THREADS`` parameter of a model config (JSON form), 1 if absent."""
    parameter = model_config.get("parameters", {}).get(TORCH_THREADS_PARAMETER)
    if parameter is None:
        return 1
    value = parameter.get("string_value", "")
    try:
        threads = int(value)
    except ValueError:
        raise ValueError(f"{TORCH_THREADS_PARAMETER} must be an integer, got {value!r}") from None
    if threads < 1:
        raise ValueError(f"{TORCH_THREADS_PARAMETER} must be >= 1, got {threads}")
    return threads


def run_dense(
    module: torch.jit.ScriptModule, embeddings: np.ndarray, dense: np.ndarray
) -> list[np.ndarray]:
    """Run the dense part on one batch; returns ``[P_CTR, P_CVR, P_NEG]`` as fp32 ``[B, 1]``."""
    batch = embeddings.shape[0]
    with torch.inference_mode():
        outputs = module(torch.from_numpy(embeddings), torch.from_numpy(dense))
    if not isinstance(outputs, (tuple, list)) or len(outputs) != len(OUTPUT_NAMES):
        raise RuntimeError(
            f"the TorchScript model must return {len(OUTPUT_NAMES)} tensors "
            f"({', '.join(OUTPUT_NAMES)}), got {type(outputs).__name__}"
        )
    arrays = []
    for name, output in zip(OUTPUT_NAMES, outputs, strict=True):
        if not isinstance(output, torch.Tensor) or tuple(output.shape) != (batch, 1):
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            raise RuntimeError(f"{name}: expected shape ({batch}, 1), got {shape}")
        arrays.append(output.detach().to(torch.float32).numpy())
    return arrays


class TritonPythonModel:
    """Python-backend model: ``initialize`` loads ``<version>/model.pt``, ``execute`` runs it."""

    def initialize(self, args: dict) -> None:
        model_config = json.loads(args["model_config"])
        threads = torch_threads_from_config(model_config)
        torch.set_num_threads(threads)
        path = Path(args["model_repository"]) / args["model_version"] / TORCHSCRIPT_FILENAME
        if not path.is_file():
            raise FileNotFoundError(f"TorchScript file not found: {path} (run `adrank export`)")
        try:
            with warnings.catch_warnings():
                # TorchScript is what the libtorch backend serves too; torch 2.13 deprecates jit.
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(str(path), map_location="cpu").eval()
        except RuntimeError as error:
            raise RuntimeError(f"{path} is not a loadable TorchScript file: {error}") from None
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
        joined = run_dense(self.module, np.concatenate(embeddings), np.concatenate(dense))
        splits = np.cumsum([e.shape[0] for e in embeddings])[:-1]
        per_request = zip(*(np.split(out, splits) for out in joined), strict=True)
        return [self._response(pb_utils, list(outputs)) for outputs in per_request]

    def _execute_one(self, pb_utils: Any, request: Any) -> Any:
        try:
            embeddings, dense = self._inputs(pb_utils, request)
            return self._response(pb_utils, run_dense(self.module, embeddings, dense))
        except Exception as error:  # becomes this request's error only
            message = f"model {self.name!r}: {type(error).__name__}: {error}"
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))

    @staticmethod
    def _inputs(pb_utils: Any, request: Any) -> tuple[np.ndarray, np.ndarray]:
        # Writable fp32 views of the stub's shared memory (Triton checked dtype and dims).
        embeddings = pb_utils.get_input_tensor_by_name(request, INPUT_EMBEDDINGS).as_numpy()
        dense = pb_utils.get_input_tensor_by_name(request, INPUT_DENSE).as_numpy()
        return embeddings, dense

    @staticmethod
    def _response(pb_utils: Any, outputs: list[np.ndarray]) -> Any:
        tensors = [
            pb_utils.Tensor(name, np.ascontiguousarray(out))
            for name, out in zip(OUTPUT_NAMES, outputs, strict=True)
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        self.module = None
