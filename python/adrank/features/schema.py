"""The feature schema: one file that training and serving both read.

A schema is a TOML file::

    name = "shortvideo"            # free text
    hash_seed = 0                  # the global seed of adrank's hashing kernels

    [labels]                       # task -> label column; click is required
    click = "click"
    conversion = "conversion"      # optional (ESMM: trained over all impressions)
    negative = "negative"          # optional

    [tables.creative]              # a table that several fields share
    num_buckets = 20000
    dim = 16

    [fields.user_id]               # one section per field, in the order of the file
    kind = "categorical"           # categorical | multi_valued | text | numeric_bucketized |
    side = "user"                  #   numeric_dense | cross;  side: user | context | creative
    num_buckets = 50000            # a table of its own ...
    dim = 8

    [fields.creative_id]
    kind = "categorical"
    side = "creative"
    table = "creative"             # ... or a shared one (then no num_buckets / dim here)

Kinds: ``categorical`` (one id or string per row, hashed), ``multi_valued`` (a list per row,
hashed and pooled with ``pooling = "mean" | "sum"``; a list column, or a string column split on
``separator = "^"``), ``text`` (free text, a bag of its hashed words and, with ``ngrams = 2``,
the default, adjacent word pairs, pooled with ``pooling``, default ``"mean"``; see
:mod:`adrank.features.text`), ``numeric_bucketized`` (a number,
``boundaries`` cut it into ``len(boundaries) + 2`` rows: one per interval plus one for NaN),
``numeric_dense`` (a number fed to the model as it is after ``transform = "identity" | "log1p" |
"signed_log1p"``, missing as ``fill``), ``cross`` (the hash of two or more other sparse fields'
ids, ``sources = [...]``; its side is the latest of its sources'). A cross with one
multi-valued source is a bag: each of its values crossed with the other sources' ids (a
sequence crossed with the candidate), pooled with ``pooling`` (default ``"sum"``).

``value_type = "int" | "string"`` (categorical and multi-valued fields) says how values are
hashed: ``"int"`` hashes 64-bit ids (text such as ``"170301"`` and whole floats such as ``3.0``
are read as ids; NaN is missing), ``"string"`` hashes UTF-8 text. Without it a value is hashed
as its column holds it. Ids and strings hash differently, so fields on one table must agree.

Fields sharing a table share its hash slot, so one value maps to one row whichever field it
comes from. Slots are the tables' positions in the file unless a table sets ``slot``.

Model order: the sparse fields' pooled embeddings are concatenated by side (user, context,
creative) and by file order within a side: that is the layout of the dense model's
``EMBEDDINGS`` input. Dense fields follow the same order in ``DENSE``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "KINDS",
    "SIDES",
    "TASKS",
    "FeatureSchema",
    "FieldSpec",
    "SchemaError",
    "TableSpec",
    "content_schema_path",
    "criteo_schema_path",
    "default_schema_path",
    "load_schema",
    "parse_schema",
]

KINDS = ("categorical", "multi_valued", "text", "numeric_bucketized", "numeric_dense", "cross")
SIDES = ("user", "context", "creative")
TASKS = ("click", "conversion", "negative")
SPARSE_KINDS = ("categorical", "multi_valued", "text", "numeric_bucketized", "cross")
BAG_KINDS = ("multi_valued", "text")  # a bag of ids per row, pooled
NGRAMS = (1, 2)
POOLINGS = ("mean", "sum")
VALUE_TYPES = ("int", "string")
TRANSFORMS = ("identity", "log1p", "signed_log1p")
_MAX_BUCKETS = 2**40


class SchemaError(ValueError):
    """A schema file that does not validate; the message names the field and the key."""


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """An embedding table: ``num_buckets`` rows of ``dim`` floats, hashed with ``slot``."""

    name: str
    num_buckets: int
    dim: int
    slot: int


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One feature field. ``table`` is None for ``numeric_dense`` fields."""

    name: str
    kind: str
    side: str
    column: str
    table: str | None = None
    pooling: str = "sum"
    boundaries: tuple[float, ...] = ()
    sources: tuple[str, ...] = ()
    transform: str = "identity"
    fill: float = 0.0
    value_type: str | None = None
    separator: str | None = None
    ngrams: int = 2  # text fields: 1 (words) or 2 (words and adjacent pairs)

    @property
    def is_sparse(self) -> bool:
        return self.kind in SPARSE_KINDS

    @property
    def is_bag(self) -> bool:
        """A bag of ids per row (multi-valued and text fields)."""
        return self.kind in BAG_KINDS


@dataclasses.dataclass(frozen=True)
class FeatureSchema:
    """A validated schema. Build it with :func:`load_schema` or :func:`parse_schema`."""

    name: str
    hash_seed: int
    labels: Mapping[str, str]
    tables: Mapping[str, TableSpec]
    fields: tuple[FieldSpec, ...]
    text: str = ""

    @property
    def sparse_fields(self) -> tuple[FieldSpec, ...]:
        """Sparse fields in model order: by side, then by file order."""
        return _by_side(f for f in self.fields if f.is_sparse)

    @property
    def dense_fields(self) -> tuple[FieldSpec, ...]:
        return _by_side(f for f in self.fields if not f.is_sparse)

    @property
    def embedding_dim(self) -> int:
        """E: the width of the concatenated pooled embeddings."""
        return sum(self.tables[f.table].dim for f in self.sparse_fields)

    @property
    def dense_dim(self) -> int:
        """N: the number of dense numeric features."""
        return len(self.dense_fields)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t for t in TASKS if t in self.labels)

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"schema {self.name!r} has no field {name!r}")


def _by_side(fields: Any) -> tuple[FieldSpec, ...]:
    return tuple(sorted(fields, key=lambda f: SIDES.index(f.side)))


def default_schema_path() -> Path:
    """The schema of the synthetic short-video ads log."""
    return Path(__file__).with_name("default_schema.toml")


def content_schema_path() -> Path:
    """The default schema plus the creative content fields of a synthetic log drawn with
    ``SyntheticConfig(content=True)`` (caption, tags, topic, their relevance cross)."""
    return default_schema_path().with_name("content_schema.toml")


def criteo_schema_path() -> Path:
    """The schema of the Criteo format (``adrank.data.read_criteo``)."""
    return default_schema_path().with_name("criteo_schema.toml")


def load_schema(path: str | Path | None = None) -> FeatureSchema:
    """Read and validate a schema file (the default schema when ``path`` is None)."""
    path = default_schema_path() if path is None else Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaError(f"schema file {str(path)!r} does not exist") from None
    return parse_schema(text, source=str(path))


def parse_schema(text: str, source: str = "<schema>") -> FeatureSchema:
    """Validate schema text; raises :class:`SchemaError` naming the field and key at fault."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SchemaError(f"{source}: not valid TOML: {error}") from None
    return _Parser(raw, source).schema(text)


class _Parser:
    def __init__(self, raw: dict[str, Any], source: str) -> None:
        self.raw = raw
        self.source = source

    def fail(self, where: str, message: str) -> SchemaError:
        return SchemaError(f"{self.source}: {where}: {message}")

    def check_keys(self, where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.fail(where, f"unknown key {unknown[0]!r} (allowed: {sorted(allowed)})")

    def integer(
        self,
        where: str,
        table: Mapping[str, Any],
        key: str,
        minimum: int,
        maximum: int = _MAX_BUCKETS,
    ) -> int:
        if key not in table:
            raise self.fail(where, f"missing key {key!r}")
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"{key} must be an integer, got {value!r}")
        if value < minimum:
            raise self.fail(where, f"{key} must be >= {minimum}, got {value}")
        if value > maximum:
            raise self.fail(where, f"{key} must be <= {maximum}, got {value}")
        return value

    def choice(
        self, where: str, table: Mapping[str, Any], key: str, options: tuple, default: Any = None
    ) -> str:
        if key not in table:
            if default is None:
                raise self.fail(where, f"missing key {key!r} (one of {list(options)})")
            return default
        value = table[key]
        if value not in options:
            raise self.fail(where, f"{key} must be one of {list(options)}, got {value!r}")
        return value

    def string(self, where: str, table: Mapping[str, Any], key: str, default: str) -> str:
        value = table.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"{key} must be a non-empty string, got {value!r}")
        return value

    def schema(self, text: str) -> FeatureSchema:
        raw = self.raw
        self.check_keys("top level", raw, {"name", "hash_seed", "labels", "tables", "fields"})
        name = self.string("top level", raw, "name", "schema")
        seed_entry = {"hash_seed": raw.get("hash_seed", 0)}
        seed = self.integer("top level", seed_entry, "hash_seed", 0, maximum=2**64 - 1)
        labels = self.labels(raw.get("labels"))
        tables = self.shared_tables(raw.get("tables", {}))
        fields_raw = raw.get("fields")
        if not isinstance(fields_raw, dict) or not fields_raw:
            raise self.fail("fields", "the schema must define at least one [fields.NAME] section")
        fields: list[FieldSpec] = []
        for field_name, entry in fields_raw.items():
            fields.append(self.field(field_name, entry, tables, fields))
        self.check_whole(fields, tables)
        tables = self.assign_slots(tables, fields)
        return FeatureSchema(name, seed, labels, tables, tuple(fields), text)

    def labels(self, raw: Any) -> dict[str, str]:
        if not isinstance(raw, dict):
            raise self.fail("labels", "missing [labels] section (click = COLUMN at least)")
        self.check_keys("labels", raw, set(TASKS))
        if "click" not in raw:
            raise self.fail("labels", "missing key 'click'")
        return {task: self.string("labels", raw, task, "") for task in TASKS if task in raw}

    def shared_tables(self, raw: Any) -> dict[str, dict[str, int]]:
        if not isinstance(raw, dict):
            raise self.fail("tables", "must be a section of [tables.NAME] tables")
        tables = {}
        for table_name, entry in raw.items():
            where = f"table {table_name!r}"
            if not isinstance(entry, dict):
                raise self.fail(where, "must be a [tables.NAME] section")
            self.check_keys(where, entry, {"num_buckets", "dim", "slot"})
            tables[table_name] = {
                "num_buckets": self.integer(where, entry, "num_buckets", 1),
                "dim": self.integer(where, entry, "dim", 1),
            }
            if "slot" in entry:
                tables[table_name]["slot"] = self.integer(where, entry, "slot", 0)
        return tables

    def field(
        self, name: str, entry: Any, tables: dict[str, dict[str, int]], earlier: list[FieldSpec]
    ) -> FieldSpec:
        where = f"field {name!r}"
        if not isinstance(entry, dict):
            raise self.fail(where, "must be a [fields.NAME] section")
        kind = self.choice(where, entry, "kind", KINDS)
        common = {"kind", "side", "column"}
        column = self.string(where, entry, "column", name)
        if kind == "numeric_dense":
            self.check_keys(where, entry, common | {"transform", "fill"})
            fill = entry.get("fill", 0.0)
            if isinstance(fill, bool) or not isinstance(fill, (int, float)) or math.isnan(fill):
                raise self.fail(where, f"fill must be a number, got {fill!r}")
            return FieldSpec(
                name,
                kind,
                self.choice(where, entry, "side", SIDES),
                column,
                transform=self.choice(where, entry, "transform", TRANSFORMS, "identity"),
                fill=float(fill),
            )
        table_keys = {"table", "num_buckets", "dim"}
        extra = {
            "categorical": {"value_type"},
            "multi_valued": {"pooling", "value_type", "separator"},
            "text": {"pooling", "ngrams"},
            "numeric_bucketized": {"boundaries"},
            "cross": {"sources", "pooling"},
        }[kind]
        self.check_keys(where, entry, common | table_keys | extra)
        boundaries: tuple[float, ...] = ()
        sources: tuple[str, ...] = ()
        if kind == "numeric_bucketized":
            boundaries = self.boundaries(where, entry)
        if kind == "cross":
            sources = self.sources(where, entry, earlier)
            side = max((s.side for s in earlier if s.name in sources), key=SIDES.index)
            if "side" in entry and entry["side"] != side:
                raise self.fail(
                    where,
                    f"side of a cross is its latest source's ({side!r}), got {entry['side']!r}",
                )
        else:
            side = self.choice(where, entry, "side", SIDES)
        table = self.table_of(where, name, entry, tables, boundaries)
        pooling = "sum"  # one id per row: sum and mean agree
        if kind in BAG_KINDS or (kind == "cross" and self.is_bag(sources, earlier)):
            pooling = self.choice(
                where, entry, "pooling", POOLINGS, "mean" if kind in BAG_KINDS else "sum"
            )
        elif "pooling" in entry:
            raise self.fail(where, "pooling applies to multi-valued fields and their crosses only")
        value_type = entry.get("value_type")
        if value_type is not None:
            value_type = self.choice(where, entry, "value_type", VALUE_TYPES)
        separator = entry.get("separator")
        if separator is not None and (not isinstance(separator, str) or len(separator) != 1):
            raise self.fail(where, f"separator must be one character, got {separator!r}")
        ngrams = entry.get("ngrams", 2)
        if isinstance(ngrams, bool) or ngrams not in NGRAMS:
            raise self.fail(where, f"ngrams must be one of {list(NGRAMS)}, got {ngrams!r}")
        return FieldSpec(
            name,
            kind,
            side,
            column,
            table,
            pooling,
            boundaries=boundaries,
            sources=sources,
            value_type=value_type,
            separator=separator,
            ngrams=ngrams,
        )

    def boundaries(self, where: str, entry: Mapping[str, Any]) -> tuple[float, ...]:
        values = entry.get("boundaries")
        if not isinstance(values, list) or not values:
            raise self.fail(where, "boundaries must be a non-empty list of numbers")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise self.fail(where, f"boundaries must be numbers, got {values!r}")
        if any(math.isnan(v) for v in values) or any(b <= a for a, b in itertools.pairwise(values)):
            raise self.fail(where, f"boundaries must be strictly increasing, got {values!r}")
        return tuple(float(v) for v in values)

    def sources(self, where: str, entry: Mapping[str, Any], earlier: list[FieldSpec]) -> tuple:
        sources = entry.get("sources")
        if not isinstance(sources, list) or len(sources) < 2:
            raise self.fail(where, "sources must list at least 2 fields")
        known = {f.name: f for f in earlier}
        for source in sources:
            if source not in known:
                raise self.fail(where, f"source {source!r} is not a field defined above it")
            if known[source].kind not in ("categorical", "numeric_bucketized", "multi_valued"):
                raise self.fail(
                    where,
                    f"source {source!r} must be categorical, numeric_bucketized or "
                    f"multi_valued, got {known[source].kind}",
                )
        if sum(known[s].kind == "multi_valued" for s in sources) > 1:
            raise self.fail(where, "at most one source may be multi_valued")
        return tuple(sources)

    @staticmethod
    def is_bag(sources: tuple[str, ...], earlier: list[FieldSpec]) -> bool:
        return any(f.kind == "multi_valued" for f in earlier if f.name in sources)

    def table_of(
        self,
        where: str,
        name: str,
        entry: Mapping[str, Any],
        tables: dict[str, dict[str, int]],
        boundaries: tuple[float, ...],
    ) -> str:
        if "table" in entry:
            table = entry["table"]
            if table not in tables:
                raise self.fail(where, f"table {table!r} is not defined in [tables]")
            if "num_buckets" in entry or "dim" in entry:
                raise self.fail(where, "a field on a shared table takes no num_buckets or dim")
            if boundaries and tables[table]["num_buckets"] < len(boundaries) + 2:
                raise self.fail(
                    where, f"table {table!r} needs >= {len(boundaries) + 2} rows for its buckets"
                )
            return table
        if name in tables:
            raise self.fail(where, f"a table named {name!r} already exists: use table = ...")
        if boundaries:
            if "num_buckets" in entry:
                raise self.fail(where, "num_buckets of a bucketized field is len(boundaries) + 2")
            rows = len(boundaries) + 2
        else:
            rows = self.integer(where, entry, "num_buckets", 1)
        tables[name] = {"num_buckets": rows, "dim": self.integer(where, entry, "dim", 1)}
        return name

    def check_whole(self, fields: list[FieldSpec], tables: dict[str, dict[str, int]]) -> None:
        if not any(f.is_sparse for f in fields):
            raise self.fail("fields", "the schema needs at least one sparse field")
        columns = {f.column for f in fields if f.kind != "cross"}
        clash = sorted(set(self.raw["labels"].values()) & columns)
        if clash:
            raise self.fail("labels", f"label column {clash[0]!r} is also a feature column")
        used = {f.table for f in fields if f.table}
        unused = sorted(set(tables) - used)
        if unused:
            raise self.fail(f"table {unused[0]!r}", "no field uses it")

    def assign_slots(
        self, tables: dict[str, dict[str, int]], fields: list[FieldSpec]
    ) -> dict[str, TableSpec]:
        order = list(dict.fromkeys(f.table for f in fields if f.table))
        taken = {t["slot"] for t in tables.values() if "slot" in t}
        free = (s for s in range(len(order) + len(taken)) if s not in taken)
        specs = {}
        seen_slots: dict[int, str] = {}
        for name in order:
            entry = tables[name]
            slot = entry["slot"] if "slot" in entry else next(free)
            if slot in seen_slots:
                raise self.fail(f"table {name!r}", f"slot {slot} is taken by {seen_slots[slot]!r}")
            seen_slots[slot] = name
            specs[name] = TableSpec(name, entry["num_buckets"], entry["dim"], slot)
        return specs
