"""A reader for the Criteo display-ads format: ``label, I1..I13, C1..C26``.

The format most CTR users already have: 13 integer counts (empty when missing, and ``-1`` or
other negative values do occur; some exports write them as ``260.0``) and 26 categorical ids
(8 hex digits, empty when missing). Criteo's own files are TSV without a header; many copies
are CSV with the header line. Both are read (through :func:`adrank.data.readers.open_log`, so
a bad row is named by file, line and column), the delimiter and the header found from the
first line. ``criteo_schema.toml`` (beside the default schema) is the matching feature schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["CATEGORICAL_COLUMNS", "CRITEO_COLUMNS", "INTEGER_COLUMNS", "read_criteo"]

INTEGER_COLUMNS = tuple(f"I{i}" for i in range(1, 14))
CATEGORICAL_COLUMNS = tuple(f"C{i}" for i in range(1, 27))
CRITEO_COLUMNS = ("label", *INTEGER_COLUMNS, *CATEGORICAL_COLUMNS)


def read_criteo(
    path: str | Path, *, delimiter: str | None = None, max_rows: int | None = None
) -> Any:
    """Read a Criteo file into a ``pyarrow.Table``.

    Parameters
    ----------
    path : str | Path
        A ``.txt``/``.csv``/``.tsv`` file (``.gz`` and ``.bz2`` are decompressed).
    delimiter : str | None
        ``","`` or ``"\\t"``; None finds it from the first line.
    max_rows : int | None
        Read at most this many rows.

    Returns
    -------
    pyarrow.Table [rows]
        ``label`` int8, ``I1..I13`` float64 (missing as null), ``C1..C26`` string (missing as
        null).
    """
    import pyarrow as pa

    from adrank.data.readers import open_log

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no Criteo file at {str(path)!r}")
    if max_rows is not None and (
        isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1
    ):
        raise ValueError(f"max_rows must be a positive integer or None, got {max_rows!r}")
    if delimiter not in (None, ",", "\t"):
        raise ValueError(f"delimiter must be ',' or '\\t', got {delimiter!r}")
    reader = open_log(path, "criteo", delimiter=delimiter)
    batches, rows = [], 0
    for batch in reader.batches():  # stream, and stop reading once enough rows have come
        batches.append(batch.table)
        rows += batch.table.num_rows
        if max_rows is not None and rows >= max_rows:
            break
    if not batches:
        raise ValueError(f"{path}: the file has no rows")
    table = pa.concat_tables(batches)
    if max_rows is not None:
        table = table.slice(0, max_rows)
    return table.set_column(0, "label", table.column("label").cast(pa.int8()))
