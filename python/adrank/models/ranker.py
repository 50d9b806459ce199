"""The multi-task ranker: embedding bags, then DCN-v2, FM or DeepFM, one head per task.

Glossary: ``B`` rows (candidates); ``E`` the width of the concatenated pooled embeddings;
``N`` dense features; ``D`` the interaction width ``E + N``; ``F`` sparse fields; ``k`` the
FM's common width (``RankerConfig.fm_dim``); model: ``RankerConfig.model``, one of
:data:`MODELS`.

The module is built in two parts so that export can split it without rewriting anything:

* :class:`SparseArch` holds the embedding tables and pools each field's bag
  (``embedding_bag``), concatenating the fields in the schema's model order: ``[B, E]``.
* :class:`DenseArch` (DCN-v2) or :class:`FactorizationArch` (FM, DeepFM) is everything after
  the lookup, ``forward(embeddings [B, E], dense [B, N])
  -> [p_task for task in tasks]``, each ``[B, 1]``; it is what Triton serves.

Tasks: click (pCTR), conversion given a click (pCVR) and negative feedback (pNEG). A model has a
tower for each task its log has labels for (``schema.tasks``, in the order of
:data:`~adrank.features.schema.TASKS`; click always): a head that never saw a label is never
built, so it can never be served. Conversion is trained the ESMM way, on
``pCTCVR = pCTR * pCVR`` against the conversion label over all impressions, so pCVR is never
fitted on the click-biased sample alone.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adrank.features.schema import TASKS, FeatureSchema
from adrank.models.calibration import CalibratedHeads, check_calibration

__all__ = [
    "MODELS",
    "DenseArch",
    "FactorizationArch",
    "MultiTaskRanker",
    "RankerConfig",
    "SparseArch",
    "build_dense_arch",
    "check_tasks",
    "esmm_loss",
]

_EPS = 1e-7

# The dense architectures: DCN-v2 (cross layers beside a deep MLP), a factorization machine
# over the fields projected to one width, and DeepFM (that FM beside a deep MLP).
MODELS = ("dcn", "fm", "deepfm")


@dataclasses.dataclass(frozen=True)
class RankerConfig:
    """Sizes of the dense part. ``cross_rank = 0`` makes the cross layers full rank."""

    cross_layers: int = 2
    cross_rank: int = 0
    deep_layers: tuple[int, ...] = (128, 64)
    tower_layers: tuple[int, ...] = (32,)
    embedding_init_std: float = 0.1
    model: str = "dcn"
    fm_dim: int = 16

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {self.model!r}")
        if self.fm_dim < 1:
            raise ValueError(f"fm_dim must be >= 1, got {self.fm_dim}")
        if self.cross_layers < 0:
            raise ValueError(f"cross_layers must be >= 0, got {self.cross_layers}")
        if self.cross_rank < 0:
            raise ValueError(f"cross_rank must be >= 0, got {self.cross_rank}")
        for name in ("deep_layers", "tower_layers"):
            sizes = getattr(self, name)
            if any(not isinstance(s, int) or s < 1 for s in sizes):
                raise ValueError(f"{name} must be positive integers, got {sizes!r}")
        if self.embedding_init_std <= 0:
            raise ValueError(f"embedding_init_std must be > 0, got {self.embedding_init_std}")
        object.__setattr__(self, "deep_layers", tuple(self.deep_layers))
        object.__setattr__(self, "tower_layers", tuple(self.tower_layers))


class SparseArch(nn.Module):
    """One table per schema table; fields on a shared table read the same rows."""

    def __init__(self, schema: FeatureSchema, init_std: float = 0.1) -> None:
        super().__init__()
        self.tables = nn.ParameterDict(
            {
                name: nn.Parameter(torch.randn(spec.num_buckets, spec.dim) * init_std)
                for name, spec in schema.tables.items()
            }
        )
        self.fields = [(f.name, f.table, f.pooling) for f in schema.sparse_fields]

    def forward(self, sparse: dict[str, tuple[Tensor, Tensor]]) -> Tensor:
        """``sparse[field] = (values [nnz], offsets [B + 1])`` -> pooled ``[B, E]``."""
        pooled = [
            F.embedding_bag(
                sparse[name][0],
                self.tables[table],
                sparse[name][1],
                mode=pooling,
                include_last_offset=True,
            )
            for name, table, pooling in self.fields
        ]
        return torch.cat(pooled, dim=1)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers)


class CrossLayer(nn.Module):
    """DCN-v2: ``x_next = x0 * (W x + b) + x``, W full or ``U V`` of rank r."""

    def __init__(self, width: int, rank: int) -> None:
        super().__init__()
        if rank:
            self.project = nn.Sequential(nn.Linear(width, rank, bias=False), nn.Linear(rank, width))
        else:
            self.project = nn.Sequential(nn.Linear(width, width))
        nn.init.zeros_(self.project[-1].bias)

    def forward(self, x0: Tensor, x: Tensor) -> Tensor:
        return x0 * self.project(x) + x


def check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    """``tasks`` as a tuple, checked: known names, click first, no repeats, ``TASKS`` order."""
    if isinstance(tasks, str) or not all(isinstance(t, str) for t in tasks):
        raise TypeError(f"tasks must be a sequence of task names, got {tasks!r}")
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"tasks: unknown task {unknown[0]!r} (known: {list(TASKS)})")
    if "click" not in tasks:
        raise ValueError(f"tasks must include 'click' (the base task), got {list(tasks)}")
    ordered = tuple(t for t in TASKS if t in tasks)
    if tasks != ordered:
        raise ValueError(
            f"tasks must be distinct and in the order {list(TASKS)}, got {list(tasks)}"
        )
    return tasks


class TaskTowers(nn.Module):
    """What the dense architectures share: one tower per trained task over what the subclass's
    ``joined(embeddings, dense)`` builds (``self.towers``: an ``nn.ModuleList`` the subclass
    sets); ``forward`` returns the tasks' probabilities."""

    def logits(self, embeddings: Tensor, dense: Tensor) -> list[Tensor]:
        """One logit ``[B, 1]`` per task, in ``tasks`` order."""
        joined = self.joined(embeddings, dense)
        outputs: list[Tensor] = []
        for tower in self.towers:
            outputs.append(tower(joined))
        return outputs

    def forward(self, embeddings: Tensor, dense: Tensor) -> list[Tensor]:
        """The trained rates, each ``[B, 1]``, in ``tasks`` order (p_cvr is given a click)."""
        return [torch.sigmoid(logit) for logit in self.logits(embeddings, dense)]


class DenseArch(TaskTowers):
    """Everything after the lookup; TorchScript-able, the model Triton serves.

    One tower per task of ``tasks``; ``forward`` returns their probabilities in that order.
    """

    def __init__(
        self,
        embedding_dim: int,
        dense_dim: int,
        config: RankerConfig,
        tasks: Sequence[str] = TASKS,
    ) -> None:
        super().__init__()
        width = embedding_dim + dense_dim
        self.embedding_dim = embedding_dim
        self.dense_dim = dense_dim
        self.tasks: list[str] = list(check_tasks(tasks))
        # Dense inputs are standardized with training-set statistics kept in the module,
        # so serving feeds the raw transformed numbers.
        self.register_buffer("dense_mean", torch.zeros(dense_dim))
        self.register_buffer("dense_scale", torch.ones(dense_dim))
        self.cross = nn.ModuleList(
            [CrossLayer(width, config.cross_rank) for _ in range(config.cross_layers)]
        )
        self.deep = _mlp([width, *config.deep_layers])
        joined = width + (config.deep_layers[-1] if config.deep_layers else width)
        self.towers = nn.ModuleList(
            [
                nn.Sequential(
                    _mlp([joined, *config.tower_layers]),
                    nn.Linear(config.tower_layers[-1] if config.tower_layers else joined, 1),
                )
                for _ in self.tasks
            ]
        )

    def set_dense_statistics(self, dense: Tensor) -> None:
        """Standardize dense inputs with the mean and deviation of ``dense [rows, N]``."""
        if dense.shape[1] == 0:  # a schema without dense fields: nothing to standardize
            return
        with torch.no_grad():
            self.dense_mean.copy_(dense.mean(dim=0))
            self.dense_scale.copy_(1.0 / dense.std(dim=0).clamp_min(1e-6))

    def joined(self, embeddings: Tensor, dense: Tensor) -> Tensor:
        """What every tower reads: the cross layers' output beside the deep MLP's."""
        x0 = torch.cat([embeddings, (dense - self.dense_mean) * self.dense_scale], dim=1)
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return torch.cat([x, self.deep(x0)], dim=1)


class FactorizationArch(TaskTowers):
    """FM (``deep=False``) or DeepFM (``deep=True``) after the lookup, the contract of
    :class:`DenseArch`: ``forward(embeddings [B, E], dense [B, N]) -> [p_task]``.

    The schema's fields have different widths (``field_dims``), and an FM needs one width
    ``k`` for every field: each field's pooled embedding is projected to ``k`` by its own
    matrix (one block-diagonal matmul), each standardized dense value scales a learned
    ``k``-vector. ``V [B, F + N, k]`` holds them all. The pairwise part is
    ``0.5 * ((sum V)^2 - sum V^2)`` per dimension, ``[B, k]``; the first-order part is the
    standardized input itself. Each task's head is one linear map over
    ``[first order, pairwise (, deep MLP over flattened V)]``: a field-shared FM whose
    ``k`` pairwise sums each task weighs (DeepFM adds the deep part's last layer).
    """

    def __init__(
        self,
        field_dims: Sequence[int],
        dense_dim: int,
        config: RankerConfig,
        tasks: Sequence[str] = TASKS,
        deep: bool = False,
    ) -> None:
        super().__init__()
        field_dims = [int(d) for d in field_dims]
        if not field_dims and dense_dim == 0:
            raise ValueError("field_dims: an FM needs at least one field")
        k = config.fm_dim
        self.embedding_dim = sum(field_dims)
        self.dense_dim = dense_dim
        self.tasks: list[str] = list(check_tasks(tasks))
        self.register_buffer("dense_mean", torch.zeros(dense_dim))
        self.register_buffer("dense_scale", torch.ones(dense_dim))
        self.num_vectors = len(field_dims) + dense_dim
        self.fm_dim = k
        mask = torch.zeros(len(field_dims) * k, self.embedding_dim)
        start = 0
        for i, dim in enumerate(field_dims):
            mask[i * k : (i + 1) * k, start : start + dim] = 1.0
            start += dim
        self.register_buffer("projection_mask", mask)
        self.projection = nn.Parameter(torch.randn(len(field_dims) * k, self.embedding_dim) * 0.1)
        self.dense_vectors = nn.Parameter(torch.randn(dense_dim, k) * 0.1)
        width = self.embedding_dim + dense_dim + k
        self.deep = _mlp([self.num_vectors * k, *config.deep_layers]) if deep else None
        if deep:
            width += config.deep_layers[-1] if config.deep_layers else self.num_vectors * k
        self.towers = nn.ModuleList([nn.Sequential(nn.Linear(width, 1)) for _ in self.tasks])

    def set_dense_statistics(self, dense: Tensor) -> None:
        """Standardize dense inputs with the mean and deviation of ``dense [rows, N]``."""
        if dense.shape[1] == 0:
            return
        with torch.no_grad():
            self.dense_mean.copy_(dense.mean(dim=0))
            self.dense_scale.copy_(1.0 / dense.std(dim=0).clamp_min(1e-6))

    def joined(self, embeddings: Tensor, dense: Tensor) -> Tensor:
        """What every head reads: first order, the pairwise sums (and the deep part)."""
        scaled = (dense - self.dense_mean) * self.dense_scale
        rows = embeddings.shape[0]
        fields = F.linear(embeddings, self.projection * self.projection_mask)
        vectors = torch.cat(
            [fields.reshape(rows, -1, self.fm_dim), scaled.unsqueeze(2) * self.dense_vectors],
            dim=1,
        )  # [B, F + N, k]
        pairwise = 0.5 * (vectors.sum(dim=1).square() - vectors.square().sum(dim=1))
        parts = [embeddings, scaled, pairwise]
        if self.deep is not None:
            parts.append(self.deep(vectors.reshape(rows, -1)))
        return torch.cat(parts, dim=1)


def build_dense_arch(
    schema: FeatureSchema, config: RankerConfig, tasks: Sequence[str]
) -> DenseArch | FactorizationArch:
    """The dense part ``config.model`` names, for ``schema``'s fields."""
    if config.model == "dcn":
        return DenseArch(schema.embedding_dim, schema.dense_dim, config, tasks)
    field_dims = [schema.tables[f.table].dim for f in schema.sparse_fields]
    return FactorizationArch(
        field_dims, schema.dense_dim, config, tasks, deep=config.model == "deepfm"
    )


class MultiTaskRanker(nn.Module):
    """The unsplit module: ``SparseArch`` then ``DenseArch``, with a tower per ``schema.tasks``.

    ``logits`` and ``forward`` return ``{task: [B, 1]}`` for the trained tasks only;
    ``forward``'s rates pass through the calibration (``set_calibration``), when it has one.
    The calibration is kept out of the state dict: the checkpoint holds it as plain numbers.
    """

    def __init__(self, schema: FeatureSchema, config: RankerConfig | None = None) -> None:
        super().__init__()
        self.config = config or RankerConfig()
        self.schema = schema
        self.tasks = check_tasks(schema.tasks)
        self.sparse = SparseArch(schema, self.config.embedding_init_std)
        self.dense = build_dense_arch(schema, self.config, self.tasks)
        self.calibration: dict[str, dict] | None = None
        self._calibrated: CalibratedHeads | None = None

    def set_calibration(self, calibration: Mapping[str, Any] | None) -> None:
        """Calibrate ``forward``'s rates with ``{task: entry}`` (see
        :mod:`adrank.models.calibration`); None removes it."""
        self.calibration = check_calibration(calibration, self.tasks)
        # A plain attribute, not a submodule: its buffers stay out of the state dict.
        calibrated = CalibratedHeads(self.tasks, self.calibration) if self.calibration else None
        self.__dict__["_calibrated"] = calibrated

    def logits(self, sparse: dict[str, tuple[Tensor, Tensor]], dense: Tensor) -> dict[str, Tensor]:
        return dict(zip(self.tasks, self.dense.logits(self.sparse(sparse), dense), strict=True))

    def forward(self, sparse: dict[str, tuple[Tensor, Tensor]], dense: Tensor) -> dict[str, Tensor]:
        rates = self.dense(self.sparse(sparse), dense)
        if self._calibrated is not None:
            rates = self._calibrated(rates)
        return dict(zip(self.tasks, rates, strict=True))


def esmm_loss(
    logits: Mapping[str, Tensor], labels: Mapping[str, Tensor]
) -> tuple[Tensor, dict[str, float]]:
    """The summed loss of the tasks that have labels, and each task's part.

    ``logits`` is ``{task: [B, 1]}`` (what :meth:`MultiTaskRanker.logits` returns); every task
    of ``labels`` needs its logit. click: BCE(pCTR, click); conversion: BCE(pCTR * pCVR,
    conversion) over all impressions (ESMM); negative: BCE(pNEG, negative).
    """
    if not isinstance(logits, Mapping):
        raise TypeError(f"logits must be a mapping task -> tensor, got {type(logits).__name__}")
    if "click" not in labels:
        raise ValueError(f"labels must hold the 'click' task, got {list(labels)}")
    for task in labels:
        if task not in logits:
            raise ValueError(f"logits has no {task!r} task: the model has {list(logits)}")
    flat = {task: logit.reshape(-1) for task, logit in logits.items()}
    ctr = flat["click"]
    parts: dict[str, Tensor] = {"click": F.binary_cross_entropy_with_logits(ctr, labels["click"])}
    if "conversion" in labels:
        log_ctcvr = F.logsigmoid(ctr) + F.logsigmoid(flat["conversion"])
        p_ctcvr = log_ctcvr.exp().clamp(max=1.0 - _EPS)
        target = labels["conversion"]
        parts["conversion"] = -(target * log_ctcvr + (1.0 - target) * torch.log1p(-p_ctcvr)).mean()
    if "negative" in labels:
        parts["negative"] = F.binary_cross_entropy_with_logits(flat["negative"], labels["negative"])
    total = torch.stack(list(parts.values())).sum()
    return total, {task: float(value.detach()) for task, value in parts.items()}
