"""Schema inference from a log sample, and the schema checked against a log's columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from adrank.data.log_errors import LogError
from adrank.data.readers import open_log
from adrank.features import FeaturePipeline, SchemaError, parse_schema
from adrank.features.infer import infer_schema
from adrank.features.log_check import check_against_log, column_kinds


def _log(tmp_path, columns: dict, name: str = "log.csv"):
    path = tmp_path / name
    pacsv.write_csv(pa.table(columns), path)
    return open_log(path)


def _sample(rows: int = 400, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ads = np.arange(500_000, 500_060)
    ad = ads[rng.integers(0, 60, rows)]
    sequences = ["^".join(str(a) for a in rng.choice(ads, rng.integers(0, 4))) for _ in range(rows)]
    return {
        "row_id": [f"r{i}" for i in range(rows)],
        "clk": rng.integers(0, 2, rows),
        "ts": ["2017-05-06 10:00:00"] * rows,
        "adgroup_id": ad,
        "pid": rng.choice(["430548_1007", "430539_1007"], rows),
        "I3": rng.integers(0, 5000, rows),
        "price": np.round(rng.random(rows) * 500, 2),
        "brand_id": np.where(rng.random(rows) < 0.2, np.nan, rng.integers(1, 40, rows)),
        "empty": pa.nulls(rows, pa.string()),
        "click_sequence": sequences,
    }


def test_inferred_schema_loads_with_kinds_labels_and_a_shared_table(tmp_path):
    text = infer_schema(_log(tmp_path, _sample()))
    schema = parse_schema(text)
    assert dict(schema.labels) == {"click": "clk"}
    kinds = {f.name: (f.kind, f.value_type) for f in schema.fields}
    assert kinds == {
        "adgroup_id": ("categorical", "int"),
        "pid": ("categorical", "string"),
        "I3": ("numeric_dense", None),
        "price": ("numeric_dense", None),
        "brand_id": ("categorical", "int"),  # whole floats with NaN named as an id
        "click_sequence": ("multi_valued", "int"),
    }
    assert schema.field("click_sequence").separator == "^"
    assert schema.field("click_sequence").table == schema.field("adgroup_id").table
    assert schema.field("price").transform == "signed_log1p"
    for note in ("# row_id: skipped, unique on every sampled row", "# ts: skipped, a time"):
        assert note in text
    assert "# empty: skipped, it is empty in the sample" in text


def test_a_shared_table_hashes_the_sequence_and_the_id_to_one_row(tmp_path):
    reader = _log(tmp_path, _sample())
    schema = parse_schema(infer_schema(reader))
    batch = FeaturePipeline(schema)(reader.read({"brand_id": "id"}))
    table = reader.read()
    first_id = table.column("adgroup_id")[0].as_py()
    sequences = table.column("click_sequence").to_pylist()
    row = next(i for i, s in enumerate(sequences) if s and str(first_id) in s.split("^"))
    position = sequences[row].split("^").index(str(first_id))
    sequence = batch.sparse["click_sequence"]
    assert sequence.values[sequence.offsets[row] + position] == batch.sparse["adgroup_id"].values[0]


def test_labels_given_found_or_refused(tmp_path):
    columns = {"y2": [0, 1, 1, 0], "buy": [0, 0, 1, 0], "site": ["a", "b", "a", "c"]}
    reader = _log(tmp_path, columns)
    with pytest.raises(LogError) as error:
        infer_schema(reader)
    assert str(error.value) == (
        f"{reader.path}: no click label column found (looked for click, clk, label, is_click, "
        "clicked, y): pass --label click=COLUMN"
    )
    schema = parse_schema(infer_schema(reader, labels={"click": "y2"}))
    assert dict(schema.labels) == {"click": "y2"}  # given labels replace the ones found by name
    schema = parse_schema(infer_schema(reader, labels={"click": "y2", "conversion": "buy"}))
    assert schema.tasks == ("click", "conversion")
    with pytest.raises(ValueError, match="labels: task must be one of"):
        infer_schema(reader, labels={"like": "y2"})
    with pytest.raises(LogError, match="has no column 'nope'"):
        infer_schema(reader, labels={"click": "nope"})
    counts = _log(tmp_path, {"click": [0, 3], "site": ["a", "b"]}, "counts.csv")
    with pytest.raises(LogError) as error:
        infer_schema(counts)
    assert str(error.value) == (
        f"{counts.path}: column 'click': expected 0 or 1 (the click label), found 3"
    )


def test_a_log_of_labels_only_and_bad_sample_rows(tmp_path):
    reader = _log(tmp_path, {"click": [0, 1]})
    with pytest.raises(LogError, match="has no column to use as a feature besides its labels"):
        infer_schema(reader)
    with pytest.raises(ValueError, match="sample_rows must be a positive integer, got 0"):
        infer_schema(reader, sample_rows=0)


def test_categorical_only_schema_is_accepted():
    schema = parse_schema(
        '[labels]\nclick = "click"\n[fields.site]\nkind = "categorical"\nside = "context"\n'
        "num_buckets = 8\ndim = 4\n"
    )
    assert (schema.dense_dim, schema.embedding_dim) == (0, 4)
    batch = FeaturePipeline(schema)({"site": ["a", "b"], "click": [0, 1]})
    assert batch.dense.shape == (2, 0)


SHARED = """
[labels]
click = "click"
[tables.ads]
num_buckets = 64
dim = 4
[fields.ad]
kind = "categorical"
side = "creative"
table = "ads"
[fields.history]
kind = "multi_valued"
side = "user"
table = "ads"
separator = "^"
"""


def test_check_catches_a_table_shared_by_ids_and_text_with_the_fix():
    schema = parse_schema(SHARED)
    log_schema = pa.schema([("click", pa.int64()), ("ad", pa.int64()), ("history", pa.string())])
    with pytest.raises(SchemaError) as error:
        check_against_log(schema, log_schema, "log.csv")
    assert str(error.value) == (
        "log.csv: table 'ads' is shared by fields that hash differently: 'ad' holds integer ids "
        "and 'history' holds text, so one id would get two rows; set value_type = \"int\" on "
        "'history' (its values are ids) or value_type = \"string\" on every field of the table"
    )
    fixed = parse_schema(SHARED.replace('separator = "^"', 'separator = "^"\nvalue_type = "int"'))
    check_against_log(fixed, log_schema, "log.csv")
    batch = FeaturePipeline(fixed)(
        {"click": [0, 1], "ad": np.array([170301, 5]), "history": ["170301^9", ""]}
    )
    assert batch.sparse["history"].values[0] == batch.sparse["ad"].values[0]
    np.testing.assert_array_equal(batch.sparse["history"].offsets, [0, 2, 2])


def test_column_kinds_follow_the_schema():
    schema = parse_schema(
        SHARED.replace(
            "[fields.ad]", '[fields.price]\nkind = "numeric_dense"\nside = "creative"\n[fields.ad]'
        )
    )
    assert column_kinds(schema) == {
        "price": "float",
        "ad": "id",
        "history": "string",
        "click": "label",
    }


def test_text_values_that_are_not_ids_name_the_column():
    schema = parse_schema(SHARED.replace('separator = "^"', 'separator = "^"\nvalue_type = "int"'))
    with pytest.raises(TypeError) as error:
        FeaturePipeline(schema)({"click": [0], "ad": np.array([1]), "history": ["7^x"]})
    assert str(error.value).startswith(
        "column 'history' (field 'history'): expected integer ids, found 'x' at row 1 of a text "
        "column"
    )


def test_schema_check_command(tmp_path, capsys):
    from adrank.cli import main

    log = tmp_path / "log.csv"
    log.write_text("click,ad,history\n1,170301,170301^9\n0,5,\n")
    schema = tmp_path / "schema.toml"
    schema.write_text(SHARED)
    assert main(["schema", "check", str(schema), str(log)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"adrank schema: error: {log}: table 'ads' is shared by fields that hash differently"
    )
    assert err.count("\n") == 1
    schema.write_text(SHARED.replace('separator = "^"', 'separator = "^"\nvalue_type = "int"'))
    assert main(["schema", "check", str(schema), str(log)]) == 0
    assert capsys.readouterr().out == f"{log}: 2 rows fit schema 'schema' (0 bad rows skipped)\n"


def test_dense_ranges_of_codes_do_not_share_a_table(tmp_path):
    rng = np.random.default_rng(0)
    columns = {"click": rng.integers(0, 2, 500)}
    columns["level"] = rng.integers(1, 31, 500)  # 1..30
    columns["grade"] = rng.integers(1, 101, 500)  # 1..100: holds every level by coincidence
    schema = parse_schema(infer_schema(_log(tmp_path, columns)))
    assert schema.field("level").table != schema.field("grade").table


def test_a_list_column_of_id_text_shares_the_id_table(tmp_path):
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    ads = rng.choice(np.arange(100_000, 900_000), 40, replace=False)
    ad = ads[rng.integers(0, 40, 300)]
    seqs = [[str(a) for a in rng.choice(ads, rng.integers(0, 4))] for _ in range(300)]
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"click": rng.integers(0, 2, 300), "ad": ad, "seq": seqs}), path)
    reader = open_log(path)
    schema = parse_schema(infer_schema(reader))
    seq = schema.field("seq")
    assert (seq.kind, seq.value_type, seq.separator) == ("multi_valued", "int", None)
    assert seq.table == schema.field("ad").table
    batch = FeaturePipeline(schema)(reader.read())
    first = next(i for i, s in enumerate(seqs) if s)
    row = int(np.flatnonzero(ad == int(seqs[first][0]))[0])
    values = batch.sparse["seq"]
    assert values.values[values.offsets[first]] == batch.sparse["ad"].values[row]


def test_integers_are_ids_or_counts_by_name_and_by_their_values(tmp_path):
    rng = np.random.default_rng(2)
    columns = {
        "click": rng.integers(0, 2, 2000),
        "views": rng.geometric(0.02, 2000) - 1,  # counts: zeros, a long tail
        "shop": rng.integers(10_000, 90_000, 2000),  # ids from a wide range
        "user_id": rng.geometric(0.02, 2000) - 1,  # named an id: an id whatever its values
        "num_items": rng.integers(1, 5, 2000),  # named a count
    }
    schema = parse_schema(infer_schema(_log(tmp_path, columns)))
    kinds = {f.name: f.kind for f in schema.fields}
    assert kinds == {
        "views": "numeric_dense",
        "shop": "categorical",
        "user_id": "categorical",
        "num_items": "numeric_dense",
    }
