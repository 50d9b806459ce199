"""A schema against a log: which kind each column must be read as, and whether the fields that
share a table hash their values the same way.

Glossary: a column's *kind* is what the reader converts it to (``adrank.data.column_types``);
a field's *hashing* is ``"int"`` (64-bit ids) or ``"string"`` (UTF-8 text): the id 170301 and
the text ``"170301"`` land in different rows, so two fields on one table must hash alike.
"""

from __future__ import annotations

from typing import Any

from adrank.features.schema import FeatureSchema, FieldSpec, SchemaError

__all__ = ["check_against_log", "column_kinds", "field_hashing"]


def column_kinds(schema: FeatureSchema) -> dict[str, str]:
    """Column -> kind for every column the schema reads: labels 0/1, numbers as floats,
    categorical values as their ``value_type`` says (or ids, floats being whole ids)."""
    kinds: dict[str, str] = {}
    for spec in schema.fields:
        if spec.kind == "cross":
            continue
        if spec.kind in ("numeric_dense", "numeric_bucketized"):
            kind = "float"
        elif spec.kind == "categorical":
            kind = spec.value_type or "id"
        elif spec.kind == "text" or spec.separator is not None:
            kind = "string"
        else:
            kind = "auto"  # a list column: its values are converted by the pipeline
        if kinds.get(spec.column) != "float":  # one column read as a number and an id: number
            kinds[spec.column] = kind
    for column in schema.labels.values():
        kinds[column] = "label"
    return kinds


def field_hashing(spec: FieldSpec, arrow_type: Any) -> str | None:
    """``"int"`` or ``"string"``: how ``spec``'s values hash in a column of ``arrow_type``;
    None for fields that hash no raw values (bucketized, crosses)."""
    import pyarrow as pa

    if spec.kind == "text":
        return "string"  # its words
    if spec.kind not in ("categorical", "multi_valued"):
        return None
    if spec.value_type is not None:
        return spec.value_type
    if spec.kind == "multi_valued":
        if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
            arrow_type = arrow_type.value_type
        elif spec.separator is not None:
            return "string"  # the pieces of split text
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    number = pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
    return "int" if number or pa.types.is_boolean(arrow_type) else "string"


def check_against_log(schema: FeatureSchema, log_schema: Any, source: str) -> None:
    """Raise :class:`SchemaError` when fields sharing a table hash differently in this log.

    ``log_schema`` is the ``pyarrow.Schema`` of the log's columns as read.
    """
    by_table: dict[str, list[tuple[FieldSpec, str]]] = {}
    for spec in schema.fields:
        if spec.kind == "cross" or spec.column not in log_schema.names:
            continue
        hashing = field_hashing(spec, log_schema.field(spec.column).type)
        if hashing is not None:
            by_table.setdefault(spec.table, []).append((spec, hashing))
    for table, members in by_table.items():
        ints = [s.name for s, h in members if h == "int"]
        texts = [s.name for s, h in members if h == "string"]
        if ints and texts:
            raise SchemaError(
                f"{source}: table {table!r} is shared by fields that hash differently: "
                f"{ints[0]!r} holds integer ids and {texts[0]!r} holds text, so one id would "
                f'get two rows; set value_type = "int" on {", ".join(repr(t) for t in texts)} '
                f'(its values are ids) or value_type = "string" on every field of the table'
            )
