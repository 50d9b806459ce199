"""adrank: a ranking inference engine for short-video ads.

C++ kernels (feature hashing, embedding lookup, top-k selection) in :mod:`adrank.ops`, ranking
models served by NVIDIA Triton, and a thin orchestrator that joins them.
"""

from adrank import ops
from adrank._native import get_num_threads, set_num_threads
from adrank.embedding_table import EmbeddingTable, dequantize_rowwise, quantize_rowwise

__version__ = "0.1.0"

__all__ = [
    "EmbeddingTable",
    "__version__",
    "dequantize_rowwise",
    "get_num_threads",
    "ops",
    "quantize_rowwise",
    "set_num_threads",
]
