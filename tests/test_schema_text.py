"""Text fields: the tokenizer and its hashed n-gram bags (pinned, deterministic, against
``ops.hash_strings`` of the tokens), the schema's text kind and its errors, the pipeline, and
the content schema as the default schema plus content fields."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest

from adrank import ops
from adrank.features import (
    FeaturePipeline,
    SchemaError,
    content_schema_path,
    default_schema_path,
    load_schema,
    parse_schema,
)
from adrank.features.log_check import check_against_log, column_kinds, field_hashing
from adrank.features.text import text_bags, text_tokens

TEXTS = ["Hello, World! héllo", None, "", "one", "a b c", "  Spaced--out  "]


def test_tokens_are_lowercase_words_then_adjacent_pairs():
    tokens, offsets = text_tokens(pa.array(TEXTS))
    bags = [tokens.to_pylist()[a:b] for a, b in itertools.pairwise(offsets)]
    assert bags == [
        ["hello", "world", "héllo", "hello world", "world héllo"],
        [],
        [],
        ["one"],
        ["a", "b", "c", "a b", "b c"],
        ["spaced", "out", "spaced out"],
    ]
    unigrams, offsets = text_tokens(pa.array(TEXTS), ngrams=1)
    assert unigrams.to_pylist() == [
        "hello",
        "world",
        "héllo",
        "one",
        "a",
        "b",
        "c",
        "spaced",
        "out",
    ]
    assert offsets.tolist() == [0, 3, 3, 3, 4, 7, 9]


def test_bags_are_the_hashes_of_the_tokens_and_pinned():
    values, offsets = text_bags(TEXTS, 2, 5, 1000, 7)
    tokens, token_offsets = text_tokens(pa.array(TEXTS))
    np.testing.assert_array_equal(values, ops.hash_strings(tokens, 5, 1000, 7))
    np.testing.assert_array_equal(offsets, token_offsets)
    # Pinned: a change here changes every trained model's caption ids; it must fail on purpose.
    values, offsets = text_bags(["Hello, World"], 2, 3, 1 << 20, 0)
    assert values.tolist() == [575324, 668122, 948323]
    assert offsets.tolist() == [0, 3]


def test_every_input_form_gives_the_same_bytes():
    expected = text_bags(TEXTS, 2, 1, 4096, 0)
    plain = pa.array(TEXTS, pa.string())
    forms = [
        plain,
        plain.cast(pa.large_string()),
        plain.dictionary_encode(),
        pa.chunked_array([plain.slice(0, 2), plain.slice(2)]),
        pa.chunked_array(
            [plain.slice(0, 3).dictionary_encode(), plain.slice(3).dictionary_encode()]
        ),
        np.array(TEXTS, dtype=object),
        [t if t is not None else float("nan") for t in TEXTS],  # pandas' missing text
    ]
    for form in forms:
        values, offsets = text_bags(form, 2, 1, 4096, 0)
        assert values.tobytes() == expected[0].tobytes()
        assert offsets.tobytes() == expected[1].tobytes()


def test_repeated_texts_share_one_bag_and_order_follows_rows():
    values, offsets = text_bags(["b a", "a", "b a", None, "a"], 1, 0, 100, 0)
    a, b = ops.hash_strings(["a", "b"], 0, 100, 0).tolist()
    bags = [values[s:e].tolist() for s, e in itertools.pairwise(offsets)]
    assert bags == [[b, a], [a], [b, a], [], [a]]


@pytest.mark.parametrize(
    ("column", "error", "match"),
    [
        (pa.array([1, 2]), TypeError, "text column 'caption' must hold strings, got int64"),
        (["ok", 3], TypeError, "text column 'caption' must hold str or None, got int 3"),
        ("one text", TypeError, "text column 'caption' must be a column of texts"),
        (pa.array([1, 2]).dictionary_encode(), TypeError, "must hold strings"),
    ],
)
def test_bad_text_columns_name_the_column(column, error, match):
    with pytest.raises(error, match=match):
        text_bags(column, 2, 0, 10, 0, name="caption")


def test_ngrams_must_be_one_or_two():
    with pytest.raises(ValueError, match="ngrams must be 1 or 2, got 3"):
        text_tokens(pa.array(["x"]), ngrams=3)


# --- the schema --------------------------------------------------------------------------------

SCHEMA = """
name = "text"
[labels]
click = "click"
[fields.item]
kind = "categorical"
side = "creative"
num_buckets = 64
dim = 4
[fields.caption]
kind = "text"
side = "creative"
num_buckets = 1024
dim = 8
{extra}
"""


def test_text_fields_parse_with_their_defaults():
    schema = parse_schema(SCHEMA.format(extra=""))
    caption = schema.field("caption")
    assert (caption.kind, caption.pooling, caption.ngrams) == ("text", "mean", 2)
    assert caption.is_sparse
    assert caption.is_bag
    assert schema.embedding_dim == 12
    unigram = parse_schema(SCHEMA.format(extra='ngrams = 1\npooling = "sum"')).field("caption")
    assert (unigram.ngrams, unigram.pooling) == (1, "sum")


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("ngrams = 3", r"field 'caption': ngrams must be one of \[1, 2\], got 3"),
        ("ngrams = true", r"field 'caption': ngrams must be one of \[1, 2\], got True"),
        ('pooling = "max"', r"field 'caption': pooling must be one of \['mean', 'sum'\]"),
        ('value_type = "string"', r"field 'caption': unknown key 'value_type'"),
        ('separator = "^"', r"field 'caption': unknown key 'separator'"),
        (
            '[fields.x]\nkind = "cross"\nsources = ["item", "caption"]\nnum_buckets = 8\ndim = 2',
            r"field 'x': source 'caption' must be categorical, numeric_bucketized or "
            r"multi_valued, got text",
        ),
    ],
)
def test_text_schema_errors_name_the_field(extra, match):
    with pytest.raises(SchemaError, match=match):
        parse_schema(SCHEMA.format(extra=extra))


def test_a_text_field_needs_its_table():
    text = SCHEMA.format(extra="").replace("num_buckets = 1024\n", "")
    with pytest.raises(SchemaError, match="field 'caption': missing key 'num_buckets'"):
        parse_schema(text)


def test_the_pipeline_encodes_text_and_names_a_missing_column():
    schema = parse_schema(SCHEMA.format(extra=""))
    columns = {"item": pa.array([1, 2, 3]), "caption": pa.array(["red shoe", None, "shoe"])}
    batch = FeaturePipeline(schema)(columns, with_labels=False)
    table = schema.tables["caption"]
    values, _offsets = text_bags(columns["caption"], 2, table.slot, table.num_buckets, 0)
    np.testing.assert_array_equal(batch.sparse["caption"].values, values)
    np.testing.assert_array_equal(batch.sparse["caption"].offsets, [0, 3, 3, 4])
    with pytest.raises(KeyError, match="column 'caption' \\(field 'caption'\\) is missing"):
        FeaturePipeline(schema)({"item": pa.array([1])}, with_labels=False)
    with pytest.raises(TypeError, match="text column 'caption' must hold strings"):
        FeaturePipeline(schema)(
            {"item": pa.array([1]), "caption": pa.array([1.5])}, with_labels=False
        )


def test_the_content_schema_is_the_default_schema_plus_content_fields():
    default, content = load_schema(default_schema_path()), load_schema(content_schema_path())
    by_name = {f.name: f for f in content.fields}
    for spec in default.fields:  # every default field, unchanged (slots may move)
        assert by_name[spec.name] == spec
    assert [f.name for f in content.fields if f.name in {g.name for g in default.fields}] == [
        f.name for f in default.fields
    ]
    added = {f.name: f.kind for f in content.fields}.items() - {
        (f.name, f.kind) for f in default.fields
    }
    assert dict(added) == {
        "topic_interests": "multi_valued",
        "topic": "categorical",
        "caption": "text",
        "hashtags": "multi_valued",
        "visual_tags": "multi_valued",
        "audio_tags": "multi_valued",
        "topic_interests_x_topic": "cross",
    }
    assert content.field("topic_interests_x_topic").sources == ("topic_interests", "topic")


def test_a_log_reads_text_as_strings_and_a_table_shared_with_ids_is_refused():
    content = load_schema(content_schema_path())
    kinds = column_kinds(content)
    assert kinds["caption"] == "string"
    assert kinds["hashtags"] == "auto"  # a list column
    assert field_hashing(content.field("caption"), pa.int64()) == "string"
    shared = parse_schema(
        'name = "shared"\n[labels]\nclick = "click"\n[tables.words]\nnum_buckets = 64\ndim = 4\n'
        '[fields.item]\nkind = "categorical"\nside = "creative"\ntable = "words"\n'
        '[fields.caption]\nkind = "text"\nside = "creative"\ntable = "words"\n'
    )
    log_schema = pa.schema([("item", pa.int64()), ("caption", pa.string()), ("click", pa.int8())])
    with pytest.raises(SchemaError, match="'item' holds integer ids and 'caption' holds text"):
        check_against_log(shared, log_schema, "log.parquet")


def test_inference_reads_sentences_as_text_and_short_strings_as_categories(tmp_path):
    import pyarrow.csv as pacsv

    from adrank.data.readers import open_log
    from adrank.features.infer import infer_schema

    rng = np.random.default_rng(0)
    words = np.array(["red", "shoe", "sale", "run", "fast", "new", "blue", "coat"])
    rows = 300
    path = tmp_path / "log.csv"
    columns = {
        "click": rng.integers(0, 2, rows),
        "caption": [" ".join(rng.choice(words, rng.integers(3, 8))) for _ in range(rows)],
        "city": rng.choice(["lisbon", "new york", "paris"], rows),  # two words at most
    }
    pacsv.write_csv(pa.table(columns), path)
    text = infer_schema(open_log(path))
    schema = parse_schema(text)
    caption = schema.field("caption")
    assert (caption.kind, caption.side, caption.ngrams, caption.pooling) == (
        "text",
        "creative",
        2,
        "mean",
    )
    tokens, _ = text_tokens(pa.array(columns["caption"]))
    distinct = len(set(tokens.to_pylist()))
    assert schema.tables["caption"].num_buckets >= 4 * distinct  # room for words not seen yet
    assert f"{distinct:,} distinct words and pairs" in text
    assert schema.field("city").kind == "categorical"
    assert len(FeaturePipeline(schema)(open_log(path).read())) == rows
