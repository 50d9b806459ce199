"""New Parquet files of a growing directory, oldest name first.

Glossary: ``complete`` a file whose name ends in ``.parquet`` and does not start with ``.``;
writers create ``.name.parquet`` (or ``name.parquet.tmp``) and rename it when done, so a file
is read only once it is whole. A file pyarrow cannot read yet is retried on the next poll.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class ParquetDirectory:
    """Hands out each complete Parquet file of ``path`` once, in name order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"data directory {self.path} does not exist")
        self._done: set[str] = set()

    def new_files(self) -> list[Path]:
        return sorted(
            p
            for p in self.path.glob("*.parquet")
            if not p.name.startswith(".") and p.name not in self._done
        )

    def read(self, path: Path, columns: list[str]) -> pa.Table | None:
        """The file's columns, or None if it cannot be read yet (it is retried later)."""
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowInvalid, OSError):
            return None
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise ValueError(f"{path} has no column {missing[0]!r} (it has {schema.names})")
        table = pq.read_table(path, columns=columns)
        self._done.add(path.name)
        return table
