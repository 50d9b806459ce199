"""A partitioned Parquet directory in, the same partitions out, each output written once.

Glossary: *partition* and *output*: see :mod:`adrank.batch`. An output is written to a
temporary name beside it and linked into place only if no output is there yet (``os.link``
fails on an existing name), so a task that Ray retries, or a second run over the same
directory, never writes a partition twice nor leaves a half-written file under the final name.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any


def list_partitions(input_dir: str | Path) -> list[Path]:
    """The ``*.parquet`` files under ``input_dir``, sorted by relative path."""
    root = Path(input_dir)
    if not root.is_dir():
        raise ValueError(f"input_dir must be a directory of Parquet files, got {str(root)!r}")
    parts = sorted(p for p in root.rglob("*.parquet") if p.is_file())
    if not parts:
        raise ValueError(f"input_dir {str(root)!r} holds no *.parquet partitions")
    return parts


def output_paths(input_dir: str | Path, output_dir: str | Path, parts: list[Path]) -> list[Path]:
    """Each partition's output: the same relative path under ``output_dir``."""
    source, target = Path(input_dir).resolve(), Path(output_dir).resolve()
    if target == source or source in target.parents:
        raise ValueError("output_dir must not be input_dir or inside it")
    return [target / p.resolve().relative_to(source) for p in parts]


def write_once(table: Any, path: str | Path) -> bool:
    """Writes ``table`` to ``path`` unless a file is there already; True if it wrote."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, temporary)
        os.link(temporary, path)  # atomic, and refuses an existing name
    except FileExistsError:
        return False  # another try of this partition finished first
    finally:
        temporary.unlink(missing_ok=True)
    return True
