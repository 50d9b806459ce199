"""TEMPORARY SHIM, to be replaced at merge by ``adrank.triton.model_config``.

The triton helper's branch owns the real writers (``write_model_config`` and the Python-backend
``model.py`` writer). Until both branches meet, ``adrank.export`` calls these minimal
stand-ins, which follow the agreed contract: tensors ``EMBEDDINGS [E]`` and ``DENSE [N]`` in,
``P_CTR``, ``P_CVR``, ``P_NEG`` ``[1]`` out, all TYPE_FP32; dynamic batching; the config is
built with ``tritonclient.grpc.model_config_pb2``, never by hand.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_model_config", "write_python_backend_model"]

_MODEL_PY = '''"""Triton Python backend entry point; the implementation lives in adrank."""

from adrank.triton.python_backend import TritonPythonModel

__all__ = ["TritonPythonModel"]
'''


def write_model_config(
    model_dir: str | Path,
    *,
    embedding_dim: int,
    dense_dim: int,
    max_batch_size: int = 16384,
    instances: int = 1,
    kind: str = "cpu",
) -> Path:
    """Write ``config.pbtxt`` (cpu) or ``configs/gpu.pbtxt`` (gpu) into ``model_dir``."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    model_dir = Path(model_dir)
    config = mc.ModelConfig(name=model_dir.name, max_batch_size=max_batch_size)
    if kind == "cpu":
        config.backend = "python"
        group_kind = mc.ModelInstanceGroup.KIND_CPU
        path = model_dir / "config.pbtxt"
    elif kind == "gpu":
        config.platform = "pytorch_libtorch"
        group_kind = mc.ModelInstanceGroup.KIND_GPU
        path = model_dir / "configs" / "gpu.pbtxt"
    else:
        raise ValueError(f"kind must be 'cpu' or 'gpu', got {kind!r}")
    for name, dim in (("EMBEDDINGS", embedding_dim), ("DENSE", dense_dim)):
        config.input.append(mc.ModelInput(name=name, data_type=mc.TYPE_FP32, dims=[dim]))
    for name in ("P_CTR", "P_CVR", "P_NEG"):
        config.output.append(mc.ModelOutput(name=name, data_type=mc.TYPE_FP32, dims=[1]))
    config.dynamic_batching.SetInParent()
    config.instance_group.append(mc.ModelInstanceGroup(count=instances, kind=group_kind))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text_format.MessageToString(config))
    return path


def write_python_backend_model(version_dir: str | Path) -> Path:
    """Write the thin ``model.py`` that imports adrank's Triton Python model."""
    path = Path(version_dir) / "model.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_MODEL_PY)
    return path
