"""Errors in a log a person can act on: the file, the line, the column, expected and found.

Glossary: *line* is the file's physical line (1-based, the header is line 1) for text logs;
*row* is the 0-based row of a Parquet log; *budget* is ``--skip-bad-rows N``, the number of
bad rows a run may skip (each reported) before the next one stops it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["BadRowBudget", "LogError", "shorten"]


def shorten(value: Any, limit: int = 60) -> str:
    """``repr`` of a found value (bytes shown as text), cut to ``limit`` characters so one
    line stays one line."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="backslashreplace")
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class LogError(ValueError):
    """A log that cannot be read as asked. ``str`` is one line:

    ``day.csv: line 12: column 'I3': expected a number, found 'abc'``
    """

    def __init__(
        self,
        path: Any,
        message: str | None = None,
        *,
        line: int | None = None,
        row: int | None = None,
        column: str | None = None,
        expected: str | None = None,
        found: Any = None,
        found_text: str | None = None,
    ) -> None:
        self.path, self.line, self.row, self.column = str(path), line, row, column
        parts = [self.path]
        if line is not None:
            parts.append(f"line {line}")
        elif row is not None:
            parts.append(f"row {row}")
        if column is not None:
            parts.append(f"column {column!r}")
        if expected is not None:
            shown = shorten(found) if found_text is None else found_text
            detail = f"expected {expected}, found {shown}"
            parts.append(detail if message is None else f"{message}: {detail}")
        elif message is not None:
            parts.append(message)
        super().__init__(": ".join(parts))

    @property
    def location(self) -> tuple[str, int]:
        """(path, line or row) to order and deduplicate reports."""
        return self.path, self.line if self.line is not None else (self.row or 0)


class BadRowBudget:
    """Skips up to ``limit`` bad rows, reporting each through ``report``; raises past that."""

    def __init__(self, limit: int = 0, report: Callable[[str], None] | None = None) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"skip_bad_rows must be an integer >= 0, got {limit!r}")
        self.limit = limit
        self.skipped: list[LogError] = []
        self._report = report or (lambda text: print(text, file=sys.stderr))

    def skip(self, error: LogError) -> None:
        """Count ``error`` as a skipped row, or raise it when the budget is spent."""
        if len(self.skipped) >= self.limit:
            if self.limit:
                error.args = (f"{error} (more than --skip-bad-rows {self.limit} bad rows)",)
            raise error
        self.skipped.append(error)
        self._report(f"skipped bad row: {error}")
