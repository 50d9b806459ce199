"""adrank's kernels as plain functions over numpy (and Arrow) arrays.

Like ``torch.nn.functional``: no state, no classes to learn first. Every function validates
its arguments and raises ``TypeError``/``ValueError``/``IndexError`` naming the argument.
"""

from adrank.ops.embedding import embedding_bag, embedding_bag_collection
from adrank.ops.hashing import (
    bucketize,
    hash_cross,
    hash_ids,
    hash_jagged,
    hash_sklearn,
    hash_strings,
    missing_bucket,
)
from adrank.ops.topk import select, topk

__all__ = [
    "bucketize",
    "embedding_bag",
    "embedding_bag_collection",
    "hash_cross",
    "hash_ids",
    "hash_jagged",
    "hash_sklearn",
    "hash_strings",
    "missing_bucket",
    "select",
    "topk",
]
