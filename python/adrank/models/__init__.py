"""Ranking models in PyTorch: the multi-task ranker and its split into sparse and dense parts."""

from adrank.models.checkpoint import load_checkpoint, save_checkpoint
from adrank.models.ranker import DenseArch, MultiTaskRanker, RankerConfig, SparseArch, esmm_loss

__all__ = [
    "DenseArch",
    "MultiTaskRanker",
    "RankerConfig",
    "SparseArch",
    "esmm_loss",
    "load_checkpoint",
    "save_checkpoint",
]
