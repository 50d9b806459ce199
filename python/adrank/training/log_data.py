"""A log read through a schema into model inputs, batch by batch: only hashed ids and numbers
are kept, never the raw text, so memory grows with rows times fields, not with the log's bytes.

Glossary: ``B`` rows kept (bad rows skipped); *extra* columns are read beside the features
(``adrank evaluate --by COLUMN``) as text, one value per kept row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from adrank.data.log_errors import BadRowBudget, LogError
from adrank.data.readers import LogReader
from adrank.features.log_check import check_against_log, column_kinds
from adrank.features.pipeline import FeatureBatch, FeaturePipeline, concat_batches
from adrank.features.schema import FeatureSchema

__all__ = ["EncodedLog", "encode_log", "schema_for_log"]


@dataclasses.dataclass
class EncodedLog:
    """Model inputs of every kept row, the extra columns and the bad rows that were skipped."""

    batch: FeatureBatch
    extra: dict[str, np.ndarray]
    skipped: list[LogError]

    def __len__(self) -> int:
        return len(self.batch)


def schema_for_log(schema: FeatureSchema, reader: LogReader, *, need_labels: bool) -> FeatureSchema:
    """``schema`` with only the labels the log has (all required when ``need_labels``); raises
    a :class:`LogError` naming the first feature column the log lacks."""
    have = set(reader.column_names)
    for spec in schema.fields:
        if spec.kind != "cross" and spec.column not in have:
            raise LogError(
                reader.path,
                f"has no column {spec.column!r}, which field {spec.name!r} of schema "
                f"{schema.name!r} reads",
            )
    labels = {task: column for task, column in schema.labels.items() if column in have}
    if need_labels and labels != dict(schema.labels):
        task, column = next((t, c) for t, c in schema.labels.items() if c not in have)
        raise LogError(reader.path, f"has no label column {column!r} (task {task})")
    if not labels:
        raise LogError(reader.path, "has none of the schema's label columns: nothing to score")
    return dataclasses.replace(schema, labels=labels)


def encode_log(
    reader: LogReader,
    schema: FeatureSchema,
    *,
    budget: BadRowBudget | None = None,
    extra_columns: Sequence[str] = (),
    need_labels: bool = True,
) -> EncodedLog:
    """Read ``reader``'s log batch by batch and hash it with ``schema``."""
    budget = budget or BadRowBudget(0)
    schema = schema_for_log(schema, reader, need_labels=need_labels)
    reader.require(list(extra_columns))
    kinds = {c: k for c, k in column_kinds(schema).items() if c in reader.column_names}
    for column in extra_columns:
        kinds.setdefault(column, "string")
    pipeline = FeaturePipeline(schema)
    parts: list[FeatureBatch] = []
    extra: dict[str, list[np.ndarray]] = {c: [] for c in extra_columns}
    checked = False
    for batch in reader.batches(kinds, columns=list(kinds), budget=budget):
        if not checked:
            check_against_log(schema, batch.table.schema, str(reader.path))
            checked = True
        try:
            parts.append(pipeline(batch.table))
        except (TypeError, ValueError, KeyError) as error:
            message = error.args[0] if error.args else str(error)
            raise LogError(batch.path, str(message)) from None
        for column in extra_columns:
            values = batch.table.column(column).cast("string").to_pylist()
            extra[column].append(np.array(values, dtype=object))
    if not parts:
        raise LogError(reader.path, "has no rows")
    return EncodedLog(
        concat_batches(parts),
        {c: np.concatenate(v) for c, v in extra.items()},
        list(budget.skipped),
    )
