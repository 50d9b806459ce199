"""A reader for the Criteo display-ads format: ``label, I1..I13, C1..C26``.

The format most CTR users already have: 13 integer counts (empty when missing, and ``-1`` or
other negative values do occur; some exports write them as ``260.0``) and 26 categorical ids
(8 hex digits, empty when missing). Criteo's own files are TSV without a header; many copies
are CSV with the header line. Both are read, the delimiter and the header found from the first
line. ``criteo_schema.toml`` (beside the default schema) is the matching feature schema.
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
    import pyarrow.csv as pacsv

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no Criteo file at {str(path)!r}")
    first = _first_line(path)
    if delimiter is None:
        delimiter = "\t" if "\t" in first else ","
    if max_rows is not None and (
        isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1
    ):
        raise ValueError(f"max_rows must be a positive integer or None, got {max_rows!r}")
    if delimiter not in (",", "\t"):
        raise ValueError(f"delimiter must be ',' or '\\t', got {delimiter!r}")
    fields = first.rstrip("\r\n").split(delimiter)
    if len(fields) != len(CRITEO_COLUMNS):
        raise ValueError(
            f"{path}: expected {len(CRITEO_COLUMNS)} columns (label, I1..I13, C1..C26), "
            f"got {len(fields)} in the first line"
        )
    has_header = fields[0].strip().lower() == "label"
    types = {"label": pa.int8()}
    types.update({name: pa.float64() for name in INTEGER_COLUMNS})
    types.update({name: pa.string() for name in CATEGORICAL_COLUMNS})
    read_options = pacsv.ReadOptions(
        column_names=list(CRITEO_COLUMNS), skip_rows=1 if has_header else 0
    )
    parse_options = pacsv.ParseOptions(delimiter=delimiter)
    convert_options = pacsv.ConvertOptions(
        column_types=types, null_values=[""], strings_can_be_null=True
    )
    try:
        if max_rows is None:
            table = pacsv.read_csv(
                path,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
        else:  # stream, and stop reading once enough rows have come
            reader = pacsv.open_csv(
                path,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
            batches, rows = [], 0
            for batch in reader:
                batches.append(batch)
                rows += batch.num_rows
                if rows >= max_rows:
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema).slice(0, max_rows)
    except pa.ArrowInvalid as error:
        raise ValueError(f"{path}: not a valid Criteo file: {error}") from None
    labels = table.column("label")
    if labels.null_count or not set(labels.unique().to_pylist()) <= {0, 1}:
        raise ValueError(f"{path}: label must be 0 or 1 on every row")
    return table


def _first_line(path: Path) -> str:
    if path.suffix == ".gz":
        import gzip

        opener: Any = gzip.open
    elif path.suffix == ".bz2":
        import bz2

        opener = bz2.open
    else:
        opener = open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        line = handle.readline()
    if not line:
        raise ValueError(f"{path}: the file is empty")
    return line
