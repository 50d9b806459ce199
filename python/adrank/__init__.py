"""adrank: a ranking inference engine for short-video ads.

C++ kernels (feature hashing, embedding lookup, top-k selection) in :mod:`adrank.ops`, ranking
models served by NVIDIA Triton, and a thin orchestrator that joins them (:class:`Ranker`).
"""

from typing import Any

from adrank import ops
from adrank._native import get_num_threads, get_simd, set_num_threads, set_simd
from adrank.embedding_table import EmbeddingTable, dequantize_rowwise, quantize_rowwise

__version__ = "0.1.0"

# The orchestrator's names, imported on first use: ``import adrank`` stays light for kernel users.
_ORCHESTRATOR = {
    "Catalog": "adrank.orchestrator.catalog",
    "Constraints": "adrank.orchestrator.request",
    "FallbackRates": "adrank.orchestrator.ranker",
    "RankRequest": "adrank.orchestrator.request",
    "RankResponse": "adrank.orchestrator.request",
    "Ranker": "adrank.orchestrator.ranker",
    "ScoringConfig": "adrank.orchestrator.scoring",
    "SelectionConfig": "adrank.orchestrator.ranker",
}


def __getattr__(name: str) -> Any:
    if name in _ORCHESTRATOR:
        import importlib

        return getattr(importlib.import_module(_ORCHESTRATOR[name]), name)
    raise AttributeError(f"module 'adrank' has no attribute {name!r}")


__all__ = [
    "Catalog",
    "Constraints",
    "EmbeddingTable",
    "FallbackRates",
    "RankRequest",
    "RankResponse",
    "Ranker",
    "ScoringConfig",
    "SelectionConfig",
    "__version__",
    "dequantize_rowwise",
    "get_num_threads",
    "get_simd",
    "ops",
    "quantize_rowwise",
    "set_num_threads",
    "set_simd",
]
