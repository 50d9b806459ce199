"""The export format: what ``adrank export`` writes and what serving reads, named once.

Glossary: ``R`` rows of a table; ``D`` its dim; ``V`` an exported version.

One exported version of model ``NAME`` is two directories, written by :mod:`adrank.export`::

    <repository>/NAME/V/model.pt                    the dense part (TorchScript), for Triton
    <artifacts>/NAME/V/manifest.json                what the orchestrator needs (MANIFEST_FILE)
    <artifacts>/NAME/V/schema.toml                  the feature schema of the training run
    <artifacts>/NAME/V/tables/T.fp32.safetensors    each table, float32 [R, D]
    <artifacts>/NAME/V/tables/T.int8.safetensors    each table, int8 row-wise [R, D + 8] (FBGEMM)

Table files are :class:`adrank.EmbeddingTable` safetensors, memory-mapped when served. They are
immutable once written: export writes a new version each time and never rewrites a file.

This module imports neither torch nor the training code: a serving process reads its model
through it without loading either.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from adrank.embedding_table import EmbeddingTable, quantize_rowwise
from adrank.features.schema import FeatureSchema, load_schema

__all__ = [
    "FORMAT",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "PRECISIONS",
    "SCHEMA_FILE",
    "TABLES_DIR",
    "ExportedVersion",
    "load_manifest",
    "load_tables",
    "open_version",
    "save_tables",
    "table_path",
]

FORMAT = "adrank-export-1"
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.pt"
SCHEMA_FILE = "schema.toml"
TABLES_DIR = "tables"
PRECISIONS = ("fp32", "int8")


def table_path(directory: str | Path, table: str, precision: str) -> Path:
    """The file of one table in one precision under ``directory``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return Path(directory) / f"{table}.{precision}.safetensors"


def save_tables(directory: str | Path, weights: Mapping[str, np.ndarray]) -> None:
    """Writes every table in both precisions (float32 ``[R, D]`` weights in)."""
    for name, weight in weights.items():
        weight = np.asarray(weight, dtype=np.float32)
        EmbeddingTable(weight).save(table_path(directory, name, "fp32"))
        quantize_rowwise(weight).save(table_path(directory, name, "int8"))


def load_tables(
    directory: str | Path, schema: FeatureSchema, precision: str = "fp32", *, mmap: bool = True
) -> dict[str, EmbeddingTable]:
    """The schema's tables from ``directory`` (memory-mapped when ``mmap``), shapes checked."""
    tables = {}
    for name, spec in schema.tables.items():
        path = table_path(directory, name, precision)
        if not path.exists():
            raise FileNotFoundError(f"table {name!r} has no {precision} file at {str(path)!r}")
        table = EmbeddingTable.load(path, mmap_mode=mmap)
        if (table.num_rows, table.dim) != (spec.num_buckets, spec.dim):
            raise ValueError(
                f"table {name!r}: expected shape {(spec.num_buckets, spec.dim)}, "
                f"got {(table.num_rows, table.dim)}"
            )
        tables[name] = table
    return tables


def load_manifest(artifacts_dir: str | Path) -> dict[str, Any]:
    """The manifest of one exported version's artifacts."""
    path = Path(artifacts_dir) / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {MANIFEST_FILE} in {str(artifacts_dir)!r}")
    manifest = json.loads(path.read_text())
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not an adrank export manifest (format {FORMAT!r})")
    return manifest


@dataclasses.dataclass(frozen=True)
class ExportedVersion:
    """What serving needs of one exported version: its manifest, schema and tables."""

    directory: Path
    manifest: dict[str, Any]
    schema: FeatureSchema
    tables: dict[str, EmbeddingTable]
    precision: str


def open_version(artifacts_dir: str | Path, precision: str = "fp32") -> ExportedVersion:
    """Reads one exported version's artifacts; the tables are memory-mapped."""
    directory = Path(artifacts_dir)
    manifest = load_manifest(directory)
    schema = load_schema(directory / SCHEMA_FILE)
    tables = load_tables(directory / TABLES_DIR, schema, precision)
    return ExportedVersion(directory, manifest, schema, tables, precision)
