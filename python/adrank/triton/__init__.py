"""Serving the ranking model on NVIDIA Triton.

- :mod:`adrank.triton.model_config`: the ranker's tensor contract, ``config.pbtxt`` written from
  ``model_config_pb2`` (CPU and GPU variants), and the Python-backend ``model.py``;
- :mod:`adrank.triton.python_backend`: the ``TritonPythonModel`` that runs the TorchScript file;
- :mod:`adrank.triton.server`: :class:`EmbeddedTriton`, the real ``tritonserver`` from the
  ``nvidia-pytriton`` wheel, started on loopback ports;
- :mod:`adrank.triton.supervisor`: :class:`TritonSupervisor`, which restarts a server that dies
  (reaped, its stubs and shared memory cleaned up, the same ports), by a :class:`RestartPolicy`;
- :mod:`adrank.triton.kill_drill`: kill the server under HTTP load, count answers, time recovery;
- :mod:`adrank.triton.client`: :class:`RankerClient`, the gRPC client (deadlines, retries,
  system shared memory);
- :mod:`adrank.triton.testing`: a model repository and a server from a torch module in one call.

Names are imported on first use, so ``import adrank.triton`` pulls in neither gRPC nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EmbeddedTriton": "server",
    "TritonError": "server",
    "TritonNotFoundError": "server",
    "TritonStartError": "server",
    "PortInUseError": "server",
    "RestartPolicy": "supervisor",
    "TritonSupervisor": "supervisor",
    "RankerClient": "client",
    "RankerClientError": "client",
    "RankerOutputs": "client",
    "RankerTimeoutError": "client",
    "RankerUnavailableError": "client",
    "RankerSignature": "model_config",
    "build_model_config": "model_config",
    "read_model_config": "model_config",
    "ranker_signature": "model_config",
    "write_model_config": "model_config",
    "write_model_configs": "model_config",
    "write_python_backend_model": "model_config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'adrank.triton' has no attribute {name!r}")
    return getattr(importlib.import_module(f"adrank.triton.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
