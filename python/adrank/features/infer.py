"""A schema inferred from a sample of a log, written as TOML a person can read and edit.

Glossary: ``n`` sampled rows; ``d`` distinct values of a column in the sample; a *row id* is a
column unique on every sampled row (it names the impression, it predicts nothing).

Rules, in order, for each column that is not a label:

* a list column, or text where one of ``^ | ;`` separates values, is ``multi_valued``;
* text of three words or more per row on average is ``text`` (a bag of hashed words and word
  pairs, ``num_buckets`` from the distinct ones in the sample);
* times and row ids are skipped (a comment in the file says so); so are empty columns;
* text is ``categorical``; integers are ``categorical`` unless their name says they count or
  measure (``I3``, ``num_*``, ``*count*``, ``price`` ...) or their values do (zero occurs,
  over 50 distinct values, the largest over 10 times the median); floats are ``numeric_dense``
  unless every value is whole and the name says id (pandas' ints with missing values);
* two id columns whose values overlap (half of the smaller set or more, both with 20+ values,
  neither a dense range of small codes such as 1..30) share one table, with one
  ``value_type`` so that an id hashes to one row from either;
* ``num_buckets`` is a power of two >= 2 d (4 d when d grows with n; at most 2^20), ``dim``
  is about ``3 d^(1/4)`` rounded to a multiple of 4 in [4, 16]; numbers above 100 get
  ``transform = "signed_log1p"``.

Labels: found by name (``click``/``clk``/``label``, ``conversion``/``purchase``,
``negative``/``dislike``) or given; the log's 0/1 columns only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from adrank.data.log_errors import BadRowBudget, LogError
from adrank.data.readers import LogReader
from adrank.features.schema import TASKS

__all__ = ["LABEL_NAMES", "infer_schema"]

LABEL_NAMES = {
    "click": ("click", "clk", "label", "is_click", "clicked", "y"),
    "conversion": ("conversion", "conv", "is_conversion", "converted", "purchase", "buy"),
    "negative": ("negative", "neg", "dislike", "negative_feedback", "is_negative"),
}
_SEPARATORS = ("^", "|", ";")
_MEASURE = re.compile(
    r"^i\d+$|num|count|cnt|price|amount|score|ratio|rate$|duration|dwell|length|_len$|^len_",
    re.I,
)
_ID_NAME = re.compile(r"(^|_)(id|ids)$|^id_|_id_|^c\d+$|categor", re.I)
_TIME_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?")
_USER = re.compile(
    r"user|uid|gender|^age|occupation|segid|cms_|shopping|pvalue|sequence|histor", re.I
)
_CREATIVE = re.compile(
    r"^ad|creative|campaign|advertiser|brand|customer|cate|item|price|goods|caption|hashtag",
    re.I,
)
_MIN_SHARED = 20
_TEXT_WORDS = 3.0  # mean words per row from which text is free text, not a category


def infer_schema(
    reader: LogReader,
    *,
    labels: Mapping[str, str] | None = None,
    sample_rows: int = 100_000,
    name: str | None = None,
    budget: BadRowBudget | None = None,
) -> str:
    """The TOML text of a schema for ``reader``'s log, from its first ``sample_rows`` rows."""
    if isinstance(sample_rows, bool) or not isinstance(sample_rows, int) or sample_rows < 1:
        raise ValueError(f"sample_rows must be a positive integer, got {sample_rows!r}")
    sample = _sample(reader, sample_rows, budget)
    labels = _labels(reader, sample, labels)
    rows = sample.num_rows
    notes: list[str] = []
    fields: list[dict[str, Any]] = []
    for column in sample.column_names:
        if column in labels.values():
            continue
        field = _field(column, sample.column(column), rows)
        if isinstance(field, str):
            notes.append(f"# {column}: skipped, {field}")
        else:
            fields.append(field)
    if not fields:
        raise LogError(reader.path, "has no column to use as a feature besides its labels")
    tables = _share_tables(fields)
    return _toml(name or reader.path.stem, reader, rows, labels, tables, fields, notes)


def _sample(reader: LogReader, sample_rows: int, budget: BadRowBudget | None) -> Any:
    import pyarrow as pa

    tables, rows = [], 0
    for batch in reader.batches(budget=budget):
        tables.append(batch.table)
        rows += batch.table.num_rows
        if rows >= sample_rows:
            break
    if not tables:
        raise LogError(reader.path, "has no rows")
    return pa.concat_tables(tables, promote_options="permissive").slice(0, sample_rows)


def _labels(reader: LogReader, sample: Any, given: Mapping[str, str] | None) -> dict[str, str]:
    from adrank.data.column_types import convert_column

    columns = sample.column_names
    if given:
        unknown = sorted(set(given) - set(TASKS))
        if unknown:
            raise ValueError(f"labels: task must be one of {list(TASKS)}, got {unknown[0]!r}")
        labels = dict(given)
        for column in labels.values():
            reader.require([column])
    else:
        lowered = {c.lower(): c for c in columns}
        labels = {}
        for task, names in LABEL_NAMES.items():
            found = next((lowered[n] for n in names if n in lowered), None)
            if found is not None:
                labels[task] = found
    if "click" not in labels:
        raise LogError(
            reader.path,
            f"no click label column found (looked for {', '.join(LABEL_NAMES['click'])}): "
            "pass --label click=COLUMN",
        )
    for task, column in labels.items():
        _, bad = convert_column(sample.column(column), "label")
        if bad.any():
            found = sample.column(column)[int(np.flatnonzero(bad)[0])].as_py()
            raise LogError(
                reader.path, column=column, expected=f"0 or 1 (the {task} label)", found=found
            )
    return {task: labels[task] for task in TASKS if task in labels}


def _field(column: str, values: Any, rows: int) -> dict[str, Any] | str:
    import pyarrow as pa
    import pyarrow.compute as pc

    values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    kind = values.type
    present = values.drop_null()
    if len(present) == 0:
        return "it is empty in the sample"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_time(kind):
        return "a time (derive hour or weekday columns to use it)"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _multi_valued(column, present.flatten(), None)
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if text:
        if pc.all(pc.match_substring_regex(present, _TIME_TEXT.pattern)).as_py():
            return "a time (derive hour or weekday columns to use it)"
        for separator in _SEPARATORS:
            share = pc.mean(pc.cast(pc.match_substring(present, separator), pa.int8())).as_py()
            if share >= 0.05:
                pieces = pc.split_pattern(present, separator).flatten()
                return _multi_valued(column, pieces.filter(pc.not_equal(pieces, "")), separator)
        free_text = _free_text(column, present)
        if free_text is not None:
            return free_text
    distinct = pc.count_distinct(present).as_py()
    if distinct == rows and rows >= 100 and not pa.types.is_floating(kind):
        return "unique on every sampled row (a row id, not a feature)"
    if pa.types.is_floating(kind):
        numbers = present.to_numpy(zero_copy_only=False)
        known = numbers[~np.isnan(numbers)]  # NaN: a missing id, as pandas writes one
        whole = bool(np.all(known == np.floor(known)))
        if not (whole and _ID_NAME.search(column)):
            return _numeric(column, numbers, distinct)
        values_type = "int"
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        numbers = present.to_numpy(zero_copy_only=False).astype(np.float64)
        if not _ID_NAME.search(column) and (_MEASURE.search(column) or _counts(numbers)):
            return _numeric(column, numbers, distinct)
        values_type = "int"
    elif text:
        values_type = "string"
    else:
        return f"its type {kind} is not one adrank reads"
    return {
        "name": column,
        "kind": "categorical",
        "value_type": values_type,
        "distinct": distinct,
        "grows": distinct > 0.5 * len(present),
        "values": _value_set(present),
        "codes": values_type == "int" and _is_code_range(present),
        "note": f"{values_type} ids, {distinct:,} distinct in {rows:,} rows",
    }


def _free_text(column: str, present: Any) -> dict[str, Any] | None:
    """A ``text`` field when the rows hold sentences (``_TEXT_WORDS`` words or more on average)."""
    import pyarrow.compute as pc

    from adrank.features.text import text_tokens

    _, offsets = text_tokens(present, ngrams=1)
    words = offsets[-1] / max(len(present), 1)
    if words < _TEXT_WORDS:
        return None
    tokens, _ = text_tokens(present, ngrams=2)
    distinct = pc.count_distinct(tokens).as_py()
    return {
        "name": column,
        "kind": "text",
        "distinct": max(distinct, 1),
        "grows": True,
        "note": f"free text, {words:.1f} words per row, {distinct:,} distinct words and pairs",
    }


def _counts(numbers: np.ndarray) -> bool:
    """Integers that look like counts rather than ids: zero or below occurs, many distinct
    values, and a long tail (the largest over 10 times the median)."""
    if numbers.size == 0 or numbers.min() > 0:
        return False
    many = np.unique(numbers).size > 50
    return many and numbers.max() >= 10 * max(float(np.median(numbers)), 1.0)


def _multi_valued(column: str, pieces: Any, separator: str | None) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    value_type = "string"
    if pa.types.is_integer(pieces.type):
        value_type = "int"
    elif len(pieces) and pc.all(pc.match_substring_regex(pieces, r"^-?\d{1,18}$")).as_py():
        value_type = "int"  # "170301" in a sequence is the id 170301 of another column
    distinct = pc.count_distinct(pieces).as_py() if len(pieces) else 0
    how = f"split on {separator!r}" if separator else "a list column"
    return {
        "name": column,
        "kind": "multi_valued",
        "value_type": value_type,
        "separator": separator,
        "distinct": max(distinct, 1),
        "grows": True,
        "values": _value_set(pieces),
        "codes": value_type == "int" and _is_code_range(pieces.cast("int64")),
        "note": f"{value_type} ids, {how}, {distinct:,} distinct values",
    }


def _numeric(column: str, numbers: np.ndarray, distinct: int) -> dict[str, Any]:
    numbers = numbers.astype(np.float64)
    large = float(np.nanmax(np.abs(numbers))) > 100.0 if numbers.size else False
    return {
        "name": column,
        "kind": "numeric_dense",
        "transform": "signed_log1p" if large else "identity",
        "note": f"numbers in [{np.nanmin(numbers):g}, {np.nanmax(numbers):g}], "
        f"{distinct:,} distinct",
    }


def _is_code_range(values: Any) -> bool:
    """Whether integer values are small codes filling a dense range (1..30, all under 1,000),
    which two columns share by coincidence, unlike ids."""
    numbers = values.to_numpy(zero_copy_only=False).astype(np.float64)
    numbers = numbers[~np.isnan(numbers)]
    if numbers.size == 0:
        return True
    low, high = numbers.min(), numbers.max()
    return high < 1_000 and high - low + 1 <= 2 * np.unique(numbers).size


def _value_set(values: Any) -> set[str]:
    import pyarrow.compute as pc

    return set(pc.unique(values.cast("string")).to_pylist())


def _share_tables(fields: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Union the id fields whose values overlap into shared tables (name -> members)."""
    candidates = [
        f
        for f in fields
        if "values" in f and len(f["values"]) >= _MIN_SHARED and not f.get("codes")
    ]
    parent = {f["name"]: f["name"] for f in candidates}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    for i, a in enumerate(candidates):
        for b in candidates[i + 1 :]:
            common = len(a["values"] & b["values"])
            if common >= 0.5 * min(len(a["values"]), len(b["values"])):
                parent[root(b["name"])] = root(a["name"])
    groups: dict[str, list[dict[str, Any]]] = {}
    for field in candidates:
        groups.setdefault(root(field["name"]), []).append(field)
    tables = {}
    for first, members in groups.items():
        if len(members) < 2:
            continue
        union = set().union(*(m["values"] for m in members))
        value_type = "int" if all(m["value_type"] == "int" for m in members) else "string"
        table = f"{first}_table"
        for member in members:
            member["table"], member["value_type"] = table, value_type
        tables[table] = {
            "num_buckets": _buckets(len(union), any(m["grows"] for m in members)),
            "dim": _dim(len(union)),
            "members": [m["name"] for m in members],
        }
    return tables


def _buckets(distinct: int, grows: bool) -> int:
    wanted = max(16, 2 * distinct * (2 if grows else 1))
    return min(1 << 20, 1 << math.ceil(math.log2(wanted)))


def _dim(distinct: int) -> int:
    return int(min(16, max(4, 4 * round(3 * max(distinct, 1) ** 0.25 / 4))))


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _side(name: str) -> str:
    if _USER.search(name):
        return "user"
    return "creative" if _CREATIVE.search(name) else "context"


def _toml(
    name: str,
    reader: LogReader,
    rows: int,
    labels: dict[str, str],
    tables: dict[str, dict[str, Any]],
    fields: list[dict[str, Any]],
    notes: list[str],
) -> str:
    out = [
        f"# A schema inferred by `adrank schema infer` from {rows:,} rows of {reader.path.name}"
        f" ({reader.format}).",
        "# Edit freely: kinds (categorical | multi_valued | text | numeric_bucketized |",
        "# numeric_dense | cross), sides (user | context | creative), num_buckets, dim, shared",
        "# tables. Check it with `adrank schema check SCHEMA DATA`; the module",
        "# adrank.features.schema documents every key.",
        *notes,
        "",
        f"name = {json.dumps(name)}",
        "hash_seed = 0",
        "",
        "[labels]",
        *(f"{task} = {json.dumps(column)}" for task, column in labels.items()),
    ]
    for table, spec in tables.items():
        out += [
            "",
            f"# shared by {', '.join(spec['members'])}: their values overlap, so one id is",
            "# one row whichever column it comes from",
            f"[tables.{_key(table)}]",
            f"num_buckets = {spec['num_buckets']}",
            f"dim = {spec['dim']}",
        ]
    for field in fields:
        out += ["", f"# {field['note']}", f"[fields.{_key(field['name'])}]"]
        out.append(f'kind = "{field["kind"]}"')
        out.append(f'side = "{_side(field["name"])}"')
        if field["kind"] == "numeric_dense":
            out.append(f'transform = "{field["transform"]}"')
            continue
        if field["kind"] == "text":
            out.append(f"num_buckets = {_buckets(field['distinct'], field['grows'])}")
            out.append("dim = 16")
            continue
        out.append(f'value_type = "{field["value_type"]}"')
        if field.get("separator"):
            out.append(f"separator = {json.dumps(field['separator'])}")
        if "table" in field:
            out.append(f"table = {json.dumps(field['table'])}")
        else:
            out.append(f"num_buckets = {_buckets(field['distinct'], field['grows'])}")
            out.append(f"dim = {_dim(field['distinct'])}")
    return "\n".join(out) + "\n"
