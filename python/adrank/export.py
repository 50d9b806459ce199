"""Export: split a trained ranker into embedding-table files and the dense model's served forms.

It writes the layout of :mod:`adrank.artifacts` (the format, named there once) plus the Triton
side of the version (:mod:`adrank.triton.model_config` names each file)::

    <repository>/NAME/config.pbtxt          the default deployment (Python backend, ONNX int8)
    <repository>/NAME/configs/*.pbtxt       every deployment (--model-config-name=...)
    <repository>/NAME/V/model.pt            TorchScript fp32 (Python or libtorch backend)
    <repository>/NAME/V/model.bf16.pt       TorchScript with bf16 matmuls (Python backend)
    <repository>/NAME/V/model.onnx          ONNX fp32, opset ONNX_OPSET (ONNX Runtime, TensorRT)
    <repository>/NAME/V/model.int8.onnx     ONNX with int8 dynamic quantization (ONNX Runtime)
    <repository>/NAME/V/model.py            the Python-backend model, self-contained
    <repository>/NAME/V/requirements.txt    what model.py's environment needs

Every form returns the trained heads only (``manifest["tasks"]``, ``manifest["outputs"]``),
calibrated when the model is (``manifest["calibration"]``): the post-hoc maps of
:mod:`adrank.models.calibration` are traced into every form after the sigmoid, so Triton's
answers are the calibrated rates. Every dense architecture (DCN-v2, FM, DeepFM) exports alike.

An uplift model (:mod:`adrank.uplift.serving`; ``adrank train --uplift`` writes one beside the
checkpoint as ``<checkpoint>.uplift/``) is copied into the artifacts as ``NAME/V/uplift/``,
where :meth:`adrank.Ranker.from_export` finds it (``manifest["uplift"]`` names its learner), for
``ScoringConfig(value="incremental")``.

Each version directory is written under a temporary name and renamed into place, so a Triton
polling the repository never loads a half-written version; a new version loads without a
restart.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from adrank.artifacts import (
    FORMAT,
    MANIFEST_FILE,
    MODEL_FILE,
    SCHEMA_FILE,
    TABLES_DIR,
    save_tables,
    table_path,
)
from adrank.models.calibration import CalibratedHeads
from adrank.models.checkpoint import load_checkpoint
from adrank.models.ranker import DenseArch, FactorizationArch, MultiTaskRanker
from adrank.triton.model_config import (
    DEFAULT_DEPLOYMENT,
    DEPLOYMENTS,
    INPUT_DENSE,
    INPUT_EMBEDDINGS,
    ONNX_FILENAME,
    ONNX_INT8_FILENAME,
    ONNX_OPSET,
    TORCHSCRIPT_BF16_FILENAME,
    outputs_for_tasks,
    write_model_configs,
    write_python_backend_model,
)

__all__ = [
    "ExportResult",
    "bf16_dense_model",
    "export_model",
    "load_dense_model",
    "next_version",
    "onnx_dense_model",
    "quantize_onnx_int8",
    "script_dense_model",
]


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Where one export went."""

    version: int
    model_dir: Path
    version_dir: Path
    artifacts_dir: Path
    manifest: dict[str, Any]


def next_version(model_dir: str | Path) -> int:
    """One more than the highest numbered version in ``model_dir`` (1 when there is none)."""
    model_dir = Path(model_dir)
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def export_model(
    model: MultiTaskRanker | str | Path,
    *,
    repository: str | Path = "triton_models",
    name: str = "ranker",
    artifacts: str | Path = "artifacts",
    version: int | None = None,
    instances: int = 1,
    max_batch_size: int = 16384,
    default_deployment: str = DEFAULT_DEPLOYMENT,
    execution_env_path: str | None = None,
    uplift: str | Path | None = None,
) -> ExportResult:
    """Split ``model`` (a module or a checkpoint path) into its served parts.

    Parameters
    ----------
    model : MultiTaskRanker | path of a checkpoint from ``adrank train``
    repository : the Triton model repository
    name : the model's name in the repository
    artifacts : where the tables and the manifest go (memory-mapped by the orchestrator)
    version : int >= 1, or None for the next free version
    instances, max_batch_size : written into the Triton configs
    default_deployment : the deployment written as ``config.pbtxt`` (one of
        :data:`adrank.triton.model_config.DEPLOYMENTS`; every one is under ``configs/``)
    execution_env_path : Triton's ``EXECUTION_ENV_PATH`` for the Python-backend configs: a
        packed environment (``.tar.gz``) or a directory with ``bin/activate`` that holds
        ``requirements.txt``'s packages (``$$TRITON_MODEL_DIRECTORY`` = the model's folder)
    uplift : an uplift model's directory (:func:`adrank.uplift.save_uplift`) to export beside
        the version; None: ``<checkpoint>.uplift`` when ``model`` is a checkpoint path that has
        one, else none

    Returns
    -------
    ExportResult
    """
    if uplift is None and not isinstance(model, MultiTaskRanker):
        beside = Path(f"{model}.uplift")
        uplift = beside if beside.is_dir() else None
    uplift_model = None
    if uplift is not None:
        from adrank.uplift.serving import load_uplift

        uplift_model = load_uplift(uplift)
    if not isinstance(model, MultiTaskRanker):
        model, _, _ = load_checkpoint(model)
    if default_deployment not in DEPLOYMENTS:
        raise ValueError(
            f"default_deployment must be one of {sorted(DEPLOYMENTS)}, got {default_deployment!r}"
        )
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a plain directory name, got {name!r}")
    model_dir = Path(repository) / name
    if version is None:  # free on both sides: either may hold versions the other lost
        version = max(next_version(model_dir), next_version(Path(artifacts) / name))
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be an integer >= 1, got {version!r}")
    version_dir = model_dir / str(version)
    artifacts_dir = Path(artifacts) / name / str(version)
    for existing in (version_dir, artifacts_dir):
        if existing.exists():
            raise FileExistsError(f"{existing} already exists: versions are never overwritten")
    schema = model.schema
    model.eval()

    manifest = _manifest(model, name, version)
    manifest["uplift"] = None if uplift_model is None else uplift_model.learner
    with _staged(artifacts_dir) as staging:
        (staging / SCHEMA_FILE).write_text(schema.text)
        tables_dir = staging / TABLES_DIR
        tables_dir.mkdir()
        save_tables(
            tables_dir,
            {name: w.detach().cpu().numpy() for name, w in model.sparse.tables.items()},
        )
        if uplift_model is not None:
            from adrank.uplift.serving import UPLIFT_DIR, save_uplift

            save_uplift(staging / UPLIFT_DIR, uplift_model)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")

    write_model_configs(
        model_dir,
        embedding_dim=schema.embedding_dim,
        dense_dim=schema.dense_dim,
        max_batch_size=max_batch_size,
        instances=instances,
        outputs=manifest["outputs"],
        default=default_deployment,
        execution_env_path=execution_env_path,
    )
    with _staged(version_dir) as staging:
        with _torchscript_allowed():
            torch.jit.save(script_dense_model(model), str(staging / MODEL_FILE))
            torch.jit.save(bf16_dense_model(model), str(staging / TORCHSCRIPT_BF16_FILENAME))
        onnx_dense_model(model, staging / ONNX_FILENAME)
        quantize_onnx_int8(staging / ONNX_FILENAME, staging / ONNX_INT8_FILENAME)
        write_python_backend_model(staging)
    return ExportResult(version, model_dir, version_dir, artifacts_dir, manifest)


@contextlib.contextmanager
def _torchscript_allowed():
    # torch 2.13 marks the TorchScript API deprecated in favour of torch.export, whose files
    # Triton's libtorch backend does not load: TorchScript stays the served format.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        yield


class _Served(nn.Module):
    """The dense part with a fixed tuple of outputs (one per trained task), the form every
    backend reads; ``bf16`` runs the matmuls in bfloat16 between fp32 inputs and outputs."""

    def __init__(
        self,
        dense: DenseArch | FactorizationArch,
        bf16: bool = False,
        calibration: dict | None = None,
    ) -> None:
        super().__init__()
        self.bf16 = bf16
        self.dense = copy.deepcopy(dense)
        self.calibrated = CalibratedHeads(self.dense.tasks, calibration)
        if bf16:  # standardize in fp32 (raw dense values can be large), the rest in bf16
            self.register_buffer("dense_mean", self.dense.dense_mean.clone())
            self.register_buffer("dense_scale", self.dense.dense_scale.clone())
            self.dense.dense_mean.zero_()
            self.dense.dense_scale.fill_(1.0)
            self.dense.to(torch.bfloat16)

    def forward(self, embeddings: Tensor, dense: Tensor) -> tuple[Tensor, ...]:
        if not self.bf16:
            return tuple(self.calibrated(self.dense(embeddings, dense)))
        dense = (dense - self.dense_mean) * self.dense_scale
        logits = self.dense.logits(embeddings.to(torch.bfloat16), dense.to(torch.bfloat16))
        return tuple(self.calibrated([torch.sigmoid(logit.to(torch.float32)) for logit in logits]))


class _SideBySideTowers(nn.Module):
    """The dense part with its towers run as one stack of matmuls: the towers' first layers
    side by side, their later layers block-diagonal. The same function with fewer, larger
    matmuls (and, int8, fewer activation quantizations): the ONNX files' graph."""

    def __init__(self, dense: DenseArch | FactorizationArch, calibration: dict | None) -> None:
        super().__init__()
        self.dense = copy.deepcopy(dense)
        self.calibrated = CalibratedHeads(self.dense.tasks, calibration)
        towers = [[m for m in t.modules() if isinstance(m, nn.Linear)] for t in self.dense.towers]
        layers = []
        for depth, parts in enumerate(zip(*towers, strict=True)):
            weights = [part.weight.detach() for part in parts]
            weight = torch.cat(weights) if depth == 0 else torch.block_diag(*weights)
            layer = nn.Linear(weight.shape[1], weight.shape[0])
            with torch.no_grad():
                layer.weight.copy_(weight)
                layer.bias.copy_(torch.cat([part.bias.detach() for part in parts]))
            layers.append(layer)
        self.layers = nn.ModuleList(layers)
        del self.dense.towers

    def forward(self, embeddings: Tensor, dense: Tensor) -> tuple[Tensor, ...]:
        hidden = self.dense.joined(embeddings, dense)
        for depth, layer in enumerate(self.layers):
            hidden = layer(hidden)
            if depth < len(self.layers) - 1:
                hidden = torch.relu(hidden)
        return tuple(self.calibrated(list(torch.sigmoid(hidden).split(1, dim=1))))


def _example_inputs(dense: DenseArch | FactorizationArch) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (
        torch.randn(4, dense.embedding_dim, generator=generator),
        torch.randn(4, dense.dense_dim, generator=generator),
    )


def _traced(module: nn.Module, dense: DenseArch | FactorizationArch) -> torch.jit.ScriptModule:
    # Traced, not scripted: the outputs become a tuple of as many tensors as trained tasks,
    # which the libtorch backend maps to the config's outputs. The graph has no branch.
    with _torchscript_allowed(), torch.no_grad():
        return torch.jit.trace(module.eval(), _example_inputs(dense))


def script_dense_model(model: MultiTaskRanker) -> torch.jit.ScriptModule:
    """The dense part as TorchScript fp32 (what the Python and libtorch backends load): returns
    a tuple ``(p_ctr, ...)`` of the trained tasks, each ``[B, 1]``."""
    return _traced(_Served(model.dense, calibration=model.calibration), model.dense)


def bf16_dense_model(model: MultiTaskRanker) -> torch.jit.ScriptModule:
    """The dense part as TorchScript with bf16 weights and matmuls, fp32 inputs and outputs."""
    return _traced(_Served(model.dense, True, model.calibration), model.dense)


def onnx_dense_model(model: MultiTaskRanker, path: str | Path) -> Path:
    """Write the dense part as ONNX (opset ``ONNX_OPSET``, batch dimension dynamic), inputs
    ``EMBEDDINGS``, ``DENSE`` and outputs named as in the Triton config, the towers side by
    side (:class:`_SideBySideTowers`); returns ``path``."""
    path = Path(path)
    outputs = list(outputs_for_tasks(model.tasks))
    batch = {0: "B"}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript-based exporter: the dynamo one needs onnxscript and gives the same
        # graph for this module. torch 2.13 warns that it is deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            _SideBySideTowers(model.dense, model.calibration).eval(),
            _example_inputs(model.dense),
            str(path),
            input_names=[INPUT_EMBEDDINGS, INPUT_DENSE],
            output_names=outputs,
            dynamic_axes={name: batch for name in [INPUT_EMBEDDINGS, INPUT_DENSE, *outputs]},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return path


def quantize_onnx_int8(source: str | Path, target: str | Path) -> Path:
    """Quantize the matmuls of an ONNX model to int8, dynamically (ONNX Runtime: weights int8
    per output channel, activations quantized per call); returns ``target``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it logs a hint about pre-processing meant for CNNs
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    finally:
        root.setLevel(level)
    return Path(target)


def load_dense_model(version_dir: str | Path, filename: str = MODEL_FILE) -> torch.jit.ScriptModule:
    """A TorchScript dense model of one exported version (``model.pt`` unless told)."""
    with _torchscript_allowed():
        return torch.jit.load(str(Path(version_dir) / filename), map_location="cpu")


def _manifest(model: MultiTaskRanker, name: str, version: int) -> dict[str, Any]:
    schema = model.schema
    return {
        "format": FORMAT,
        "model": name,
        "version": version,
        "schema": SCHEMA_FILE,
        "embedding_dim": schema.embedding_dim,
        "dense_dim": schema.dense_dim,
        "tables": {
            t.name: {
                "rows": t.num_buckets,
                "dim": t.dim,
                "slot": t.slot,
                "fp32": table_path(TABLES_DIR, t.name, "fp32").as_posix(),
                "int8": table_path(TABLES_DIR, t.name, "int8").as_posix(),
            }
            for t in schema.tables.values()
        },
        "sparse_fields": [
            {"name": f.name, "table": f.table, "pooling": f.pooling, "side": f.side}
            for f in schema.sparse_fields
        ],
        "dense_fields": [f.name for f in schema.dense_fields],
        # The tasks the model was trained on and the Triton outputs of their heads (the same
        # order); a rate of another task is not predicted.
        "tasks": list(model.tasks),
        "outputs": list(outputs_for_tasks(model.tasks)),
        # The dense architecture and the post-hoc calibration folded into the served forms.
        "architecture": model.config.model,
        "calibration": model.calibration,
    }


class _staged:
    """Write into a hidden sibling directory; rename it to ``target`` only on success."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.staging = target.with_name(f".{target.name}.partial-{os.getpid()}")

    def __enter__(self) -> Path:
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        return self.staging

    def __exit__(self, error_type: Any, *_: Any) -> None:
        if error_type is None:
            os.replace(self.staging, self.target)
        else:
            shutil.rmtree(self.staging, ignore_errors=True)
