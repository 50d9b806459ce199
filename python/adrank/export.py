"""Export: split a trained ranker into embedding-table files and a TorchScript dense model.

It writes the layout of :mod:`adrank.artifacts` (the format, named there once) plus the Triton
side of the version::

    <repository>/NAME/config.pbtxt          Triton config, Python backend on CPU
    <repository>/NAME/configs/gpu.pbtxt     the GPU-host variant (--model-config-name=gpu)
    <repository>/NAME/V/model.py            the thin Python-backend entry point

Each version directory is written under a temporary name and renamed into place, so a Triton
polling the repository never loads a half-written version; a new version loads without a
restart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from adrank.artifacts import (
    FORMAT,
    MANIFEST_FILE,
    MODEL_FILE,
    SCHEMA_FILE,
    TABLES_DIR,
    save_tables,
    table_path,
)
from adrank.models.checkpoint import load_checkpoint
from adrank.models.ranker import MultiTaskRanker
from adrank.triton.model_config import write_model_configs, write_python_backend_model

__all__ = ["ExportResult", "export_model", "load_dense_model", "next_version", "script_dense_model"]


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

    Returns
    -------
    ExportResult
    """
    if not isinstance(model, MultiTaskRanker):
        model, _, _ = load_checkpoint(model)
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
    with _staged(artifacts_dir) as staging:
        (staging / SCHEMA_FILE).write_text(schema.text)
        tables_dir = staging / TABLES_DIR
        tables_dir.mkdir()
        save_tables(
            tables_dir,
            {name: w.detach().cpu().numpy() for name, w in model.sparse.tables.items()},
        )
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")

    write_model_configs(
        model_dir,
        embedding_dim=schema.embedding_dim,
        dense_dim=schema.dense_dim,
        max_batch_size=max_batch_size,
        instances=instances,
    )
    with _staged(version_dir) as staging:
        scripted = script_dense_model(model)
        with _torchscript_allowed():
            torch.jit.save(scripted, str(staging / MODEL_FILE))
        write_python_backend_model(staging)
    return ExportResult(version, model_dir, version_dir, artifacts_dir, manifest)


@contextlib.contextmanager
def _torchscript_allowed():
    # torch 2.13 marks the TorchScript API deprecated in favour of torch.export, whose files
    # Triton's libtorch backend does not load: TorchScript stays the served format.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        yield


def script_dense_model(model: MultiTaskRanker) -> torch.jit.ScriptModule:
    """The dense part as TorchScript, the format Triton's PyTorch (libtorch) backend loads."""
    with _torchscript_allowed():
        return torch.jit.script(model.dense)


def load_dense_model(version_dir: str | Path) -> torch.jit.ScriptModule:
    """The TorchScript dense model of one exported version."""
    with _torchscript_allowed():
        return torch.jit.load(str(Path(version_dir) / MODEL_FILE), map_location="cpu")


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
        "outputs": ["P_CTR", "P_CVR", "P_NEG"],
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
