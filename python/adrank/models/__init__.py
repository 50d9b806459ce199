"""Ranking models in PyTorch: the multi-task ranker and its split into sparse and dense parts."""

from adrank.models.checkpoint import load_checkpoint, save_checkpoint
from adrank.models.ranker import (
    MODELS,
    DenseArch,
    FactorizationArch,
    MultiTaskRanker,
    RankerConfig,
    SparseArch,
    esmm_loss,
)

__all__ = [
    "MODELS",
    "DenseArch",
    "FactorizationArch",
    "MultiTaskRanker",
    "RankerConfig",
    "SparseArch",
    "esmm_loss",
    "load_checkpoint",
    "save_checkpoint",
]
