"""adrank's kernels as plain functions over numpy (and Arrow) arrays.

Like ``torch.nn.functional``: no state, no classes to learn first. Every function validates
its arguments and raises ``TypeError``/``ValueError``/``IndexError`` naming the argument.
One class, :class:`EmbeddingBagCollection`, is :func:`embedding_bag_collection` with its
tables and modes prepared once, for callers that pool the same tables on every request.
"""

from adrank.ops.auction import AuctionResult, auction, auction_catalog
from adrank.ops.embedding import EmbeddingBagCollection, embedding_bag, embedding_bag_collection
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
    "AuctionResult",
    "EmbeddingBagCollection",
    "auction",
    "auction_catalog",
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
