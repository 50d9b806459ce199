"""The text encoder: a text column to bags of hashed word n-grams, offline and deterministic.

Glossary: ``B`` rows; ``T`` distinct texts among them; a *word* is a run of letters and digits
(Unicode), lowercased; a *token* is a word (a unigram) or, with ``ngrams = 2``, two adjacent
words joined by one space (a bigram, so never equal to a unigram); ``nnz`` tokens of the batch.

A text field's bag for a row is its tokens' bucket ids, ``ops.hash_strings`` of each token
with the field table's slot, in text order (unigrams, then bigrams). The model pools the bag
(mean by default) with the same embedding bag path as a multi-valued field, so a text field is
a bag of words and word pairs with learnt rows: no model file, nothing downloaded, the same ids
for the same text on every machine. A missing or empty text is an empty bag (a zero row).

Each distinct text is tokenized and hashed once (a log repeats each creative's caption on all
its impressions; a catalog snapshot encodes each creative once), all of it in Arrow compute
and adrank's hashing kernel: no Python loop over rows or tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adrank import ops
from adrank.ops._checks import is_arrow

__all__ = ["WORD_SEPARATOR", "text_bags", "text_tokens"]

WORD_SEPARATOR = r"[^\p{L}\p{N}]+"  # RE2: anything but letters and digits splits words


def text_tokens(texts: Any, ngrams: int = 2) -> tuple[Any, np.ndarray]:
    """The tokens of each text: ``(tokens pyarrow.StringArray [nnz], offsets int64 [T + 1])``.

    ``texts`` is a pyarrow string array (nulls give no tokens); ``ngrams`` is 1 or 2.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if ngrams not in (1, 2):
        raise ValueError(f"ngrams must be 1 or 2, got {ngrams!r}")
    lists = pc.split_pattern_regex(pc.utf8_lower(texts), WORD_SEPARATOR)
    words = lists.flatten()
    owner = np.asarray(pc.list_parent_indices(lists), dtype=np.int64)
    keep = np.asarray(pc.not_equal(words, "").fill_null(False), dtype=bool)
    words, owner = words.filter(pa.array(keep)), owner[keep]
    tokens, owners = [words], [owner]
    if ngrams == 2 and len(owner) > 1:
        pairs = np.flatnonzero(owner[1:] == owner[:-1])  # adjacent words of one text
        left, right = words.take(pa.array(pairs)), words.take(pa.array(pairs + 1))
        tokens.append(pc.binary_join_element_wise(left, right, " "))
        owners.append(owner[pairs])
    owner = np.concatenate(owners)
    order = np.argsort(owner, kind="stable")  # by text; unigrams before bigrams within one
    joined = pa.concat_arrays([t.cast(pa.string()) for t in tokens]).take(pa.array(order))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=len(texts)), out=offsets[1:])
    return joined, offsets


def text_bags(
    column: Any, ngrams: int, slot: int, num_buckets: int, seed: int, name: str = "text"
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's bag of token ids: ``(values int64 [nnz], offsets int64 [B + 1])``.

    ``column``: a pyarrow string, large string or dictionary-of-string array (chunked or
    not), or a list / numpy array of ``str`` and ``None``. ``name`` names the column in errors.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    array = _arrow_text(column, name)
    if pa.types.is_dictionary(array.type):
        indices, texts = array.indices, array.dictionary
    else:
        encoded = pc.dictionary_encode(array)
        indices, texts = encoded.indices, encoded.dictionary
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise TypeError(f"text column {name!r} must hold strings, got {texts.type}")
    tokens, token_offsets = text_tokens(texts, ngrams)
    ids = ops.hash_strings(tokens, slot, num_buckets, seed)
    # Row -> its text's bag; a null row points past the texts, at an empty bag.
    rows = np.asarray(indices.fill_null(len(texts)), dtype=np.int64)
    token_offsets = np.append(token_offsets, token_offsets[-1])
    lengths = np.diff(token_offsets)[rows]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    starts = np.repeat(token_offsets[rows] - offsets[:-1], lengths)
    return ids[starts + np.arange(offsets[-1])], offsets


def _arrow_text(column: Any, name: str) -> Any:
    """``column`` as one pyarrow array of text (strings or a dictionary of strings)."""
    import pyarrow as pa

    if not is_arrow(column):
        values = list(column) if not isinstance(column, (str, bytes)) else None
        if values is None:
            raise TypeError(f"text column {name!r} must be a column of texts, got a single str")
        values = [None if isinstance(v, float) and v != v else v for v in values]  # NaN
        bad = next((v for v in values if v is not None and not isinstance(v, str)), None)
        if bad is not None:
            raise TypeError(
                f"text column {name!r} must hold str or None, got {type(bad).__name__} {bad!r}"
            )
        return pa.array(values, pa.string())
    if isinstance(column, pa.ChunkedArray):
        if not column.num_chunks:
            column = pa.array([], column.type)
        elif pa.types.is_dictionary(column.type):  # one dictionary, so indices concatenate
            column = column.unify_dictionaries().combine_chunks()
        else:
            column = column.combine_chunks()
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if pa.types.is_null(kind):
        return column.cast(pa.string())
    if pa.types.is_large_string(kind) and not pa.types.is_dictionary(column.type):
        return column.cast(pa.string())
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise TypeError(f"text column {name!r} must hold strings, got {column.type}")
    return column
