"""The feature schema: the default files load, model order, shared tables, every error."""

from __future__ import annotations

import pytest

from adrank.features import (
    SchemaError,
    criteo_schema_path,
    default_schema_path,
    load_schema,
    parse_schema,
)

MINIMAL = """
name = "mini"
[labels]
click = "click"
[tables.shared]
num_buckets = 100
dim = 4
[fields.item]
kind = "categorical"
side = "creative"
table = "shared"
[fields.user]
kind = "categorical"
side = "user"
num_buckets = 12
dim = 2
[fields.history]
kind = "multi_valued"
side = "user"
table = "shared"
[fields.hour]
kind = "numeric_bucketized"
side = "context"
boundaries = [6.0, 12.0, 18.0]
dim = 3
[fields.price]
kind = "numeric_dense"
side = "creative"
transform = "log1p"
"""


def test_default_schema_loads_with_its_dimensions():
    schema = load_schema()
    assert schema.name == "shortvideo"
    assert schema.tasks == ("click", "conversion", "negative")
    assert schema.embedding_dim == sum(schema.tables[f.table].dim for f in schema.sparse_fields)
    assert schema.dense_dim == 2
    sides = [f.side for f in schema.sparse_fields]
    assert sides == sorted(sides, key=("user", "context", "creative").index)
    assert schema.text == default_schema_path().read_text()


def test_criteo_schema_loads():
    schema = load_schema(criteo_schema_path())
    assert schema.tasks == ("click",)
    assert schema.dense_dim == 13
    assert len(schema.sparse_fields) == 13 + 26


def test_model_order_shared_tables_and_slots():
    schema = parse_schema(MINIMAL)
    assert [f.name for f in schema.sparse_fields] == ["user", "history", "hour", "item"]
    assert schema.field("history").table == schema.field("item").table == "shared"
    assert schema.field("history").pooling == "mean"
    assert schema.tables["hour"].num_buckets == 3 + 2
    assert schema.embedding_dim == 2 + 4 + 3 + 4
    slots = [t.slot for t in schema.tables.values()]
    assert sorted(slots) == list(range(len(slots)))
    assert schema.field("price").transform == "log1p"
    with pytest.raises(KeyError, match="no field 'nope'"):
        schema.field("nope")


def test_cross_side_is_its_latest_source():
    text = MINIMAL + (
        '[fields.user_x_item]\nkind = "cross"\nsources = ["user", "item"]\n'
        "num_buckets = 64\ndim = 2\n"
    )
    assert parse_schema(text).field("user_x_item").side == "creative"


def test_cross_with_a_sequence_is_a_bag():
    text = MINIMAL + (
        '[fields.history_x_item]\nkind = "cross"\nsources = ["history", "item"]\n'
        "num_buckets = 64\ndim = 2\n"
    )
    spec = parse_schema(text).field("history_x_item")
    assert spec.pooling == "sum"
    assert spec.side == "creative"


def test_explicit_slots_are_kept():
    text = MINIMAL.replace("num_buckets = 100\ndim = 4", "num_buckets = 100\ndim = 4\nslot = 7")
    assert parse_schema(text).tables["shared"].slot == 7


def _edit(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name = [", "not valid TOML"),
        (MINIMAL.replace("[labels]\nclick", "[labels]\nclik"), "labels: unknown key 'clik'"),
        (MINIMAL.replace('[labels]\nclick = "click"\n', ""), "missing \\[labels\\]"),
        (_edit('kind = "categorical"', 'kind = "graph"'), "field 'item': kind must be one of"),
        (_edit('side = "creative"', 'side = "server"'), "field 'item': side must be one of"),
        (_edit('table = "shared"', 'table = "other"'), "table 'other' is not defined"),
        (_edit('table = "shared"', 'table = "shared"\ndim = 3'), "takes no num_buckets or dim"),
        (_edit("num_buckets = 12", "num_buckets = 0"), "num_buckets must be >= 1, got 0"),
        (
            _edit("num_buckets = 12", "num_buckets = 2000000000000"),
            "num_buckets must be <= 1099511627776",
        ),
        ("hash_seed = -1\n" + MINIMAL, "hash_seed must be >= 0"),
        ("extra = 1\n" + MINIMAL, "top level: unknown key 'extra'"),
        (_edit("dim = 2", 'dim = "two"'), "dim must be an integer"),
        (_edit("num_buckets = 12\n", ""), "field 'user': missing key 'num_buckets'"),
        (_edit("[6.0, 12.0, 18.0]", "[6.0, 6.0]"), "strictly increasing"),
        (_edit("[6.0, 12.0, 18.0]", "[]"), "non-empty list"),
        (_edit('transform = "log1p"', 'transform = "sqrt"'), "transform must be one of"),
        (_edit('transform = "log1p"', 'fill = "zero"'), "fill must be a number"),
        (_edit('side = "user"\nnum_buckets', 'side = "user"\ncolour = 1\nnum_buckets'), "'colour'"),
        (
            _edit('side = "creative"', 'side = "creative"\nvalue_type = 1'),
            "field 'item': value_type must be one of \\['int', 'string'\\], got 1",
        ),
        (
            _edit('side = "creative"', 'side = "creative"\nseparator = "^"'),
            "field 'item': unknown key 'separator'",
        ),
        (
            _edit('kind = "multi_valued"', 'kind = "multi_valued"\nseparator = "^^"'),
            "field 'history': separator must be one character, got '\\^\\^'",
        ),
        (
            MINIMAL + "[tables.lonely]\nnum_buckets = 3\ndim = 1\n",
            "table 'lonely': no field uses it",
        ),
        (
            MINIMAL.replace('[labels]\nclick = "click"', '[labels]\nclick = "price"'),
            "also a feature column",
        ),
        (
            MINIMAL
            + '[fields.bad]\nkind = "cross"\nsources = ["user"]\nnum_buckets = 4\ndim = 1\n',
            "at least 2 fields",
        ),
        (
            MINIMAL + '[fields.bad]\nkind = "cross"\nsources = ["user", "ghost"]\n'
            "num_buckets = 4\ndim = 1\n",
            "source 'ghost' is not a field defined above",
        ),
        (
            MINIMAL + '[fields.bad]\nkind = "cross"\nsources = ["user", "price"]\n'
            "num_buckets = 4\ndim = 1\n",
            "must be categorical, numeric_bucketized or multi_valued",
        ),
        (
            MINIMAL + '[fields.more]\nkind = "multi_valued"\nside = "user"\ntable = "shared"\n'
            '[fields.bad]\nkind = "cross"\nsources = ["history", "more"]\n'
            "num_buckets = 4\ndim = 1\n",
            "at most one source may be multi_valued",
        ),
        (
            _edit(
                'kind = "categorical"\nside = "creative"',
                'kind = "categorical"\npooling = "sum"\nside = "creative"',
            ),
            "unknown key 'pooling'",
        ),
        (
            MINIMAL + '[fields.bad]\nkind = "cross"\nsources = ["user", "item"]\npooling = "mean"\n'
            "num_buckets = 4\ndim = 1\n",
            "pooling applies to multi-valued fields and their crosses only",
        ),
        (
            MINIMAL + '[fields.bad]\nkind = "cross"\nside = "user"\nsources = ["user", "item"]\n'
            "num_buckets = 4\ndim = 1\n",
            "side of a cross is its latest source's",
        ),
        (
            MINIMAL + '[fields.shared]\nkind = "categorical"\nside = "user"\nnum_buckets = 4\n'
            "dim = 1\n",
            "a table named 'shared' already exists",
        ),
        (_edit("dim = 3\n", "dim = 3\nnum_buckets = 9\n"), "len\\(boundaries\\) \\+ 2"),
    ],
)
def test_errors_name_the_field(text, match):
    with pytest.raises(SchemaError, match=match):
        parse_schema(text)


def test_slot_collision_between_explicit_slots():
    text = MINIMAL.replace("num_buckets = 100\ndim = 4", "num_buckets = 100\ndim = 4\nslot = 3")
    text += "[tables.other]\nnum_buckets = 5\ndim = 1\nslot = 3\n"
    text += '[fields.more]\nkind = "categorical"\nside = "user"\ntable = "other"\n'
    with pytest.raises(SchemaError, match="slot 3 is taken by 'shared'"):
        parse_schema(text)


def test_missing_file():
    with pytest.raises(SchemaError, match="does not exist"):
        load_schema("/nonexistent/schema.toml")
