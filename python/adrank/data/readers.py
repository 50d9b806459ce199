"""Readers for the formats ad logs come in, streamed through Arrow in bounded memory.

Glossary: a *log* is one file, or a directory of Parquet files (hive partitions such as
``day=2024-01-01/`` become columns); a *batch* is up to ``batch_rows`` rows of it as a
``pyarrow.Table``; a *kind* is what a column must become (see :mod:`adrank.data.column_types`);
*where* is a row's place in the file: the physical line of a text log (the header is line 1),
the 0-based row of a Parquet file.

Formats: ``csv`` and ``tsv`` (with a header line or without one, then named ``column_1`` ...;
quoted fields; CRLF; ``.gz``/``.bz2``), ``jsonl`` (one JSON object per line; lists become list
columns), ``parquet`` and ``criteo`` (``label, I1..I13, C1..C26``, TSV or CSV, with or without
the header). ``auto`` picks one from the path's suffix and first line (40 fields starting
with 0, 1 or ``label`` are the Criteo layout).

Every value that does not convert, every row with the wrong number of fields and every line
that is not JSON is a :class:`~adrank.data.log_errors.LogError` naming the file, the line or
row, the column, what was expected and what was found; a
:class:`~adrank.data.log_errors.BadRowBudget` decides whether it stops the read or is skipped.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adrank.data.column_types import EXPECTED, KINDS, convert_column, decide_kind
from adrank.data.criteo import CATEGORICAL_COLUMNS, CRITEO_COLUMNS, INTEGER_COLUMNS
from adrank.data.log_errors import BadRowBudget, LogError, shorten

__all__ = ["FORMATS", "LogBatch", "LogReader", "open_log"]

FORMATS = ("auto", "csv", "tsv", "jsonl", "parquet", "criteo")
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclasses.dataclass
class LogBatch:
    """Rows of a log: ``table`` and, per row, its file and line (text) or row (Parquet)."""

    table: Any
    path: str
    lines: np.ndarray | None = None
    rows: np.ndarray | None = None

    def where(self, index: int) -> dict[str, int]:
        """``{"line": n}`` or ``{"row": n}`` of the batch's row ``index``."""
        if self.lines is not None:
            return {"line": int(self.lines[index])}
        return {"row": int(self.rows[index])} if self.rows is not None else {}

    def keep(self, mask: np.ndarray) -> LogBatch:
        import pyarrow as pa

        return LogBatch(
            self.table.filter(pa.array(mask)),
            self.path,
            None if self.lines is None else self.lines[mask],
            None if self.rows is None else self.rows[mask],
        )


def open_log(
    path: str | Path,
    format: str = "auto",
    *,
    delimiter: str | None = None,
    header: bool | None = None,
    batch_rows: int = 65_536,
) -> LogReader:
    """A reader of the log at ``path``; nothing but its first line is read yet.

    ``delimiter`` and ``header`` apply to text formats (None: found from the first line).
    """
    path = Path(path)
    if format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"batch_rows must be a positive integer, got {batch_rows!r}")
    if delimiter is not None and (len(delimiter) != 1 or delimiter in "\r\n\"'"):
        raise ValueError(f"delimiter must be one character other than quotes, got {delimiter!r}")
    if not path.exists():
        raise LogError(path, "no such file or directory")
    if format == "auto":
        format = _detect_format(path)
    if format == "parquet":
        return _ParquetReader(path, batch_rows)
    if format == "jsonl":
        return _JsonLinesReader(path, batch_rows)
    return _TextReader(path, format, delimiter, header, batch_rows)


def _detect_format(path: Path) -> str:
    if path.is_dir():
        return "parquet"
    with path.open("rb") as handle:
        start = handle.read(4)
    if start == b"PAR1":
        return "parquet"
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2")]
    if suffixes and _SUFFIXES.get(suffixes[-1]) in ("parquet", "jsonl"):
        return _SUFFIXES[suffixes[-1]]
    first = _first_line(path)
    if first.lstrip().startswith("{"):
        return "jsonl"
    delimiter = "\t" if "\t" in first else ","
    fields = _split_first_line(first, delimiter)
    if len(fields) == len(CRITEO_COLUMNS) and fields[0].strip() in ("0", "1", "label"):
        return "criteo"  # label, I1..I13, C1..C26: Criteo's own layout
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    return "tsv" if delimiter == "\t" else "csv"


def _first_line(path: Path) -> str:
    import pyarrow as pa

    with pa.input_stream(str(path), compression="detect") as stream:
        raw = stream.read(1 << 16)
    if not raw.strip():
        raise LogError(path, "the file is empty")
    line = raw.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as error:
        found = line[max(0, error.start - 8) : error.start + 8]
        raise LogError(path, line=1, expected="UTF-8 text", found=found) from None


class LogReader:
    """Streams a log in batches; subclasses read one format each."""

    path: Path
    format: str
    batch_rows: int

    @property
    def column_names(self) -> list[str]:
        raise NotImplementedError

    def _raw_batches(self, columns: list[str], budget: BadRowBudget) -> Iterator[LogBatch]:
        raise NotImplementedError

    def batches(
        self,
        kinds: Mapping[str, str] | None = None,
        *,
        columns: Sequence[str] | None = None,
        budget: BadRowBudget | None = None,
    ) -> Iterator[LogBatch]:
        """Batches of ``columns`` (default: all), each converted to its kind in ``kinds``.

        Columns not in ``kinds`` are ``"auto"``. A text column's auto kind is decided on the
        first batch and kept; a later value that does not fit is a bad row.
        """
        budget = budget or BadRowBudget(0)
        kinds = dict(kinds or {})
        for name, kind in kinds.items():
            if kind not in KINDS:
                raise ValueError(f"kind of column {name!r} must be one of {list(KINDS)}")
        wanted = list(dict.fromkeys(columns if columns is not None else self.column_names))
        self.require(wanted)
        for batch in self._raw_batches(wanted, budget):
            if batch.table.num_rows == 0:
                continue
            if self.is_text:  # text columns: decided on the first batch, then kept
                for name in wanted:
                    kind = kinds.get(name, "auto")
                    if kind in ("auto", "id"):
                        decided = decide_kind(batch.table.column(name))
                        kinds[name] = "int" if kind == "id" and decided == "float" else decided
            batch = self._convert(batch, wanted, kinds, budget)
            if batch.table.num_rows:
                yield batch

    @property
    def is_text(self) -> bool:
        return self.format in ("csv", "tsv", "criteo")

    def count_rows(self) -> int | None:
        """The log's row count when it is known without reading the rows (Parquet)."""
        return None

    def require(self, columns: Sequence[str]) -> None:
        """Raise a :class:`LogError` naming the first of ``columns`` the log lacks."""
        have = self.column_names
        missing = [c for c in columns if c not in have]
        if missing:
            listed = ", ".join(have[:12]) + (", ..." if len(have) > 12 else "")
            raise LogError(self.path, f"has no column {missing[0]!r} (its columns: {listed})")

    def read(self, kinds: Mapping[str, str] | None = None, **options: Any) -> Any:
        """The whole log as one ``pyarrow.Table`` (for logs that fit in memory)."""
        import pyarrow as pa

        tables = [b.table for b in self.batches(kinds, **options)]
        if not tables:
            raise LogError(self.path, "has no rows")
        return pa.concat_tables(tables, promote_options="permissive")

    def _convert(
        self, batch: LogBatch, names: list[str], kinds: Mapping[str, str], budget: BadRowBudget
    ) -> LogBatch:
        import pyarrow as pa

        bad_rows: dict[int, LogError] = {}
        arrays = []
        for name in names:
            kind = kinds.get(name, "auto")
            column = batch.table.column(name)
            array, bad = convert_column(column, kind)
            arrays.append(array)
            for index in np.flatnonzero(bad):
                if int(index) not in bad_rows:
                    found = column[int(index)].as_py()
                    bad_rows[int(index)] = LogError(
                        batch.path,
                        **batch.where(int(index)),
                        column=name,
                        expected=EXPECTED.get(kind, "a single value"),
                        found="" if found is None else found,
                    )
        table = pa.table(dict(zip(names, arrays, strict=True)))
        converted = LogBatch(table, batch.path, batch.lines, batch.rows)
        if not bad_rows:
            return converted
        for index in sorted(bad_rows):
            budget.skip(bad_rows[index])
        keep = np.ones(table.num_rows, dtype=bool)
        keep[sorted(bad_rows)] = False
        return converted.keep(keep)


class _TextReader(LogReader):
    """CSV, TSV and the Criteo layout through ``pyarrow.csv.open_csv`` (one thread, so every
    invalid row comes with its line number)."""

    def __init__(
        self, path: Path, format: str, delimiter: str | None, header: bool | None, rows: int
    ):
        self.path, self.format, self.batch_rows = path, format, rows
        first = _first_line(path)
        if delimiter is None:
            delimiter = {"tsv": "\t", "csv": ","}.get(format, "\t" if "\t" in first else ",")
        self.delimiter = delimiter
        fields = _split_first_line(first, delimiter)
        # Arrow cuts text in blocks of bytes: about batch_rows lines of the first one's length.
        self.block_bytes = min(64 << 20, max(1 << 14, rows * (len(first.encode()) + 1)))
        if format == "criteo":
            if len(fields) != len(CRITEO_COLUMNS):
                raise LogError(
                    path,
                    line=1,
                    expected=f"{len(CRITEO_COLUMNS)} fields (label, I1..I13, C1..C26)",
                    found_text=f"{len(fields)}",
                )
            self.header = fields[0].strip().lower() == "label" if header is None else header
            self._names = list(CRITEO_COLUMNS)
            return
        self.header = _looks_like_header(fields) if header is None else header
        if self.header:
            names = [f.strip() for f in fields]
            duplicate = next((n for n in names if names.count(n) > 1 or not n), None)
            if duplicate is not None:
                raise LogError(
                    path,
                    line=1,
                    expected="unique, non-empty column names in the header",
                    found=duplicate,
                )
            self._names = names
        else:
            self._names = [f"column_{i + 1}" for i in range(len(fields))]

    @property
    def column_names(self) -> list[str]:
        return list(self._names)

    def criteo_kinds(self) -> dict[str, str]:
        kinds = {"label": "label"}
        kinds.update({name: "float" for name in INTEGER_COLUMNS})
        kinds.update({name: "string" for name in CATEGORICAL_COLUMNS})
        return kinds

    def batches(self, kinds: Mapping[str, str] | None = None, **options: Any):
        if self.format == "criteo":  # the layout fixes the kinds: hex ids stay text
            kinds = {**(kinds or {}), **self.criteo_kinds()}
        return super().batches(kinds, **options)

    def _raw_batches(self, columns: list[str], budget: BadRowBudget) -> Iterator[LogBatch]:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        invalid: list[Any] = []

        def on_invalid(row: Any) -> str:
            invalid.append(row)  # returning "error" aborts the process in pyarrow 25
            return "skip"

        read_options = pacsv.ReadOptions(
            column_names=self._names,
            skip_rows=1 if self.header else 0,
            use_threads=False,
            block_size=self.block_bytes,
        )
        parse_options = pacsv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=on_invalid)
        convert_options = pacsv.ConvertOptions(
            column_types={name: pa.binary() for name in self._names},
            include_columns=columns,
            null_values=[""],
            strings_can_be_null=True,
        )
        stream = pa.input_stream(str(self.path), compression="detect")
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
            next_line = 2 if self.header else 1
            skipped_lines: set[int] = set()
            while True:
                try:
                    record_batch = reader.read_next_batch()
                except StopIteration:
                    break
                for row in invalid:
                    found = f"{row.actual_columns}: {shorten(row.text, 40)}"
                    budget.skip(
                        LogError(
                            self.path,
                            line=row.number,
                            expected=f"{row.expected_columns} fields",
                            found_text=found,
                        )
                    )
                    skipped_lines.add(row.number)
                invalid.clear()
                lines, next_line = _line_numbers(next_line, record_batch.num_rows, skipped_lines)
                table = pa.Table.from_batches([record_batch])
                yield LogBatch(table, str(self.path), lines=lines)
        except pa.ArrowInvalid as error:
            raise LogError(self.path, f"not a valid {self.format.upper()} file: {error}") from None
        finally:
            stream.close()


def _line_numbers(start: int, count: int, skipped: set[int]) -> tuple[np.ndarray, int]:
    """Lines of ``count`` rows read from line ``start`` on, past the ``skipped`` ones."""
    lines = np.arange(start, start + count + len(skipped), dtype=np.int64)
    if skipped:
        lines = lines[~np.isin(lines, list(skipped))]
        skipped.difference_update(range(start, int(lines[count - 1]) + 1) if count else ())
    lines = lines[:count]
    return lines, (int(lines[-1]) + 1 if count else start)


def _split_first_line(line: str, delimiter: str) -> list[str]:
    import csv

    return next(csv.reader([line], delimiter=delimiter))


def _looks_like_header(fields: list[str]) -> bool:
    """A first line of names: every field non-empty, none a number."""

    def is_number(text: str) -> bool:
        try:
            float(text)
            return True
        except ValueError:
            return False

    return all(f.strip() and not is_number(f) for f in fields)


class _JsonLinesReader(LogReader):
    """One JSON object per line, parsed by Arrow in chunks of lines; the first chunk's types
    hold for the rest, and a line that breaks them is located by parsing its chunk line by
    line."""

    format = "jsonl"

    def __init__(self, path: Path, rows: int) -> None:
        self.path, self.batch_rows = path, rows
        self._schema = self._first_schema()

    def _first_schema(self) -> Any:
        """The columns and types of the first lines that are JSON objects: the first type
        seen (other than null) is a column's type."""
        import pyarrow as pa
        import pyarrow.json as pajson

        objects: list[bytes] = []
        with pa.input_stream(str(self.path), compression="detect") as stream:
            for line in io.BufferedReader(stream):
                try:
                    if isinstance(json.loads(line), dict):
                        objects.append(line)
                except (ValueError, UnicodeDecodeError):
                    continue
                if len(objects) >= self.batch_rows:
                    break
        if not objects:
            raise LogError(self.path, "has no line holding a JSON object")
        try:
            return pajson.read_json(io.BytesIO(b"".join(objects))).schema
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        fields: dict[str, Any] = {}
        for line in objects:
            for field in pajson.read_json(io.BytesIO(line)).schema:
                if field.name not in fields or pa.types.is_null(fields[field.name].type):
                    fields[field.name] = field
        return pa.schema(list(fields.values()))

    @property
    def column_names(self) -> list[str]:
        return list(self._schema.names)

    def _raw_batches(self, columns: list[str], budget: BadRowBudget) -> Iterator[LogBatch]:
        for batch in self._chunks(budget):
            table = batch.table
            for name in columns:
                if name not in table.column_names:
                    import pyarrow as pa

                    table = table.append_column(name, pa.nulls(table.num_rows))
            yield LogBatch(table.select(columns), batch.path, lines=batch.lines)

    def _chunks(self, budget: BadRowBudget) -> Iterator[LogBatch]:
        import pyarrow as pa

        lines: list[bytes] = []
        numbers: list[int] = []
        with pa.input_stream(str(self.path), compression="detect") as stream:
            handle = io.BufferedReader(stream)
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                lines.append(line)
                numbers.append(number)
                if len(lines) >= self.batch_rows:
                    yield self._parse(lines, numbers, budget)
                    lines, numbers = [], []
            if lines:
                yield self._parse(lines, numbers, budget)

    def _parse(self, lines: list[bytes], numbers: list[int], budget: BadRowBudget) -> LogBatch:
        import pyarrow as pa
        import pyarrow.json as pajson

        options = pajson.ParseOptions(
            explicit_schema=self._schema, unexpected_field_behavior="ignore"
        )
        try:
            table = pajson.read_json(io.BytesIO(b"".join(lines)), parse_options=options)
            return LogBatch(table, str(self.path), lines=np.asarray(numbers, dtype=np.int64))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        keep = []
        for line, number in zip(lines, numbers, strict=True):
            error = self._line_error(line, number, options)
            if error is None:
                keep.append((line, number))
            else:
                budget.skip(error)
        if not keep:
            return LogBatch(pa.table({}), str(self.path), lines=np.empty(0, np.int64))
        return self._parse([k[0] for k in keep], [k[1] for k in keep], budget)

    def _line_error(self, line: bytes, number: int, options: Any) -> LogError | None:
        import pyarrow as pa
        import pyarrow.json as pajson

        try:
            value = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            found = line.rstrip()[:40]
            return LogError(self.path, line=number, expected="a JSON object", found=found)
        if not isinstance(value, dict):
            return LogError(self.path, line=number, expected="a JSON object", found=value)
        try:
            pajson.read_json(io.BytesIO(line), parse_options=options)
            return None
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        for name, found in value.items():
            if name not in self._schema.names:
                continue
            expected_type = self._schema.field(name).type
            try:
                pa.array([found], type=expected_type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
                return LogError(
                    self.path,
                    line=number,
                    column=name,
                    expected=f"{expected_type} (as in the first lines)",
                    found=found,
                )
        return LogError(self.path, line=number, expected="a JSON object", found=line.rstrip()[:40])


class _ParquetReader(LogReader):
    """A Parquet file, or a directory of them with hive partitions, through
    ``pyarrow.dataset`` batch by batch."""

    format = "parquet"

    def __init__(self, path: Path, rows: int) -> None:
        import pyarrow as pa
        import pyarrow.dataset as ds

        self.path, self.batch_rows = path, rows
        try:
            self.dataset = ds.dataset(str(path), format="parquet", partitioning="hive")
        except (pa.ArrowInvalid, OSError) as error:
            raise LogError(path, f"not a Parquet file or directory: {error}") from None
        if not self.dataset.files:
            raise LogError(path, "holds no Parquet files")

    @property
    def column_names(self) -> list[str]:
        return list(self.dataset.schema.names)

    def count_rows(self) -> int | None:
        return self.dataset.count_rows()

    def _raw_batches(self, columns: list[str], budget: BadRowBudget) -> Iterator[LogBatch]:
        import pyarrow as pa

        rows_before: dict[str, int] = {}
        try:
            # No read-ahead: Arrow's default (16 batches, 4 files) would hold that many
            # batches of raw columns at once, which is the memory streaming is meant to bound.
            scanner = self.dataset.scanner(
                columns=columns,
                batch_size=self.batch_rows,
                batch_readahead=0,
                fragment_readahead=0,
                use_threads=False,
            )
            for tagged in scanner.scan_batches():
                path = tagged.fragment.path
                start = rows_before.get(path, 0)
                count = tagged.record_batch.num_rows
                rows_before[path] = start + count
                rows = np.arange(start, start + count, dtype=np.int64)
                yield LogBatch(pa.Table.from_batches([tagged.record_batch]), path, rows=rows)
        except (pa.ArrowInvalid, OSError) as error:
            raise LogError(self.path, f"not a valid Parquet log: {error}") from None
