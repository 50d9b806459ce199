"""Uplift at serving: each candidate's incremental conversion rate, computed without torch.

Glossary: ``C`` candidates; ``F`` sparse fields; ``N`` dense fields; ``M`` = 2 linear models of
an exported learner: the T-learner's outcome models ``(mu1, mu0)`` (logistic: rates) or the
X-learner's effect models ``(tau1, tau0)`` (squared: effects); ``e`` the treated share the
X-learner blends with; *uplift* ``tau = P(converted | x, shown) - P(converted | x, withheld)``,
incremental conversions per impression.

Each linear model is one weight per bucket of every table plus a linear map of the standardized
dense fields (:class:`adrank.uplift.learners.LinearLearner`). Laid side by side, the ``M``
weights of a table are an embedding table of width ``M``: the serving encoder
(:class:`adrank.orchestrator.encoder.RequestEncoder`, adrank's hashing and pooling kernels, as
the ranking model's inputs) pools them per field into ``[C, F * M]``, and

    logit[:, m] = sum over fields of pooled[:, f, m] + ((dense - mean) * scale) @ W[:, m] + b[m]
    T-learner:  tau = sigmoid(logit[:, 0]) - sigmoid(logit[:, 1])
    X-learner:  tau = e * logit[:, 1] + (1 - e) * logit[:, 0]

Export layout (a directory, :data:`UPLIFT_DIR` beside a checkpoint or inside an exported
version's artifacts)::

    uplift.json    {"format", "learner": "t" | "x", "propensity": e, "models": [names]}
    schema.toml    the feature schema the learner hashed with
    weights.npz    table.<T> float32 [buckets, M]; dense float32 [N, M]; bias, mean, scale
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from adrank.features.pipeline import FeatureBatch
from adrank.features.schema import FeatureSchema, parse_schema

__all__ = [
    "LEARNERS",
    "UPLIFT_DIR",
    "UPLIFT_FORMAT",
    "LinearWeights",
    "UpliftModel",
    "UpliftScorer",
    "load_uplift",
    "save_uplift",
]

UPLIFT_FORMAT = "adrank-uplift-1"
UPLIFT_DIR = "uplift"
LEARNERS = {"t": ("mu1", "mu0"), "x": ("tau1", "tau0")}
_META, _SCHEMA, _WEIGHTS = "uplift.json", "schema.toml", "weights.npz"


@dataclasses.dataclass(frozen=True)
class LinearWeights:
    """One linear model: ``tables`` name -> float32 [buckets]; ``dense`` float32 [N] applied to
    ``(x - mean) * scale``; ``bias`` a number."""

    tables: dict[str, np.ndarray]
    dense: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray


@dataclasses.dataclass(frozen=True)
class UpliftModel:
    """An exported uplift learner: its kind (``"t"`` or ``"x"``), schema and two linear models
    (:data:`LEARNERS` names them), and the X-learner's treated share."""

    learner: str
    schema: FeatureSchema
    models: tuple[LinearWeights, LinearWeights]
    propensity: float = 0.5

    def __post_init__(self) -> None:
        if self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {sorted(LEARNERS)}, got {self.learner!r}")
        if len(self.models) != 2:
            raise ValueError(f"models must hold 2 linear models, got {len(self.models)}")
        if not 0.0 < self.propensity < 1.0:
            raise ValueError(f"propensity must be in (0, 1), got {self.propensity}")
        missing = set(self.schema.tables) - set(self.models[0].tables)
        if missing:
            raise ValueError(f"models lack weights for tables {sorted(missing)}")

    def stacked_tables(self) -> dict[str, np.ndarray]:
        """Each table's weights of both models side by side: float32 [buckets, 2]."""
        first, second = self.models
        return {
            name: np.ascontiguousarray(
                np.stack([first.tables[name], second.tables[name]], axis=1), dtype=np.float32
            )
            for name in self.schema.tables
        }

    def dense_logits(self, dense: np.ndarray) -> np.ndarray:
        """The dense part and bias of both models' logits, float64 [C, 2]."""
        out = np.empty((len(dense), 2), dtype=np.float64)
        for m, weights in enumerate(self.models):
            standardized = (np.asarray(dense, dtype=np.float64) - weights.mean) * weights.scale
            out[:, m] = standardized @ weights.dense.astype(np.float64) + weights.bias
        return out

    def uplift(self, logits: np.ndarray) -> np.ndarray:
        """``tau`` float64 [C] from both models' logits [C, 2] (see the module docstring)."""
        if self.learner == "t":
            rates = 1.0 / (1.0 + np.exp(-logits))
            return rates[:, 0] - rates[:, 1]
        e = self.propensity
        return e * logits[:, 1] + (1.0 - e) * logits[:, 0]

    def predict(self, batch: FeatureBatch) -> np.ndarray:
        """``tau`` float64 [B] of a batch hashed with ``schema`` (numpy only; the learner's
        ``predict`` in torch gives the same numbers)."""
        logits = self.dense_logits(batch.dense)
        tables = self.stacked_tables()
        for field in self.schema.sparse_fields:
            f = batch.sparse[field.name]
            rows = tables[field.table][f.values].astype(np.float64)
            pooled = _bag_sums(rows, f.offsets)
            if field.pooling == "mean":
                pooled /= np.maximum(np.diff(f.offsets), 1)[:, None]
            logits += pooled
        return self.uplift(logits)


def _bag_sums(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The sum of each bag's rows ([B, 2]); an empty bag sums to 0."""
    cumulative = np.concatenate([np.zeros((1, rows.shape[1])), np.cumsum(rows, axis=0)])
    return cumulative[offsets[1:]] - cumulative[offsets[:-1]]


def save_uplift(directory: str | Path, model: UpliftModel) -> Path:
    """Writes ``model`` to ``directory`` (created; see the module docstring for the layout)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    first, second = model.models
    arrays: dict[str, np.ndarray] = {
        f"table.{name}": weights for name, weights in model.stacked_tables().items()
    }
    arrays["dense"] = np.stack([first.dense, second.dense], axis=1).astype(np.float32)
    arrays["bias"] = np.array([first.bias, second.bias], dtype=np.float64)
    arrays["mean"] = np.stack([first.mean, second.mean], axis=1).astype(np.float64)
    arrays["scale"] = np.stack([first.scale, second.scale], axis=1).astype(np.float64)
    np.savez(directory / _WEIGHTS, **arrays)
    (directory / _SCHEMA).write_text(model.schema.text)
    meta = {
        "format": UPLIFT_FORMAT,
        "learner": model.learner,
        "propensity": model.propensity,
        "models": list(LEARNERS[model.learner]),
    }
    (directory / _META).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def load_uplift(directory: str | Path) -> UpliftModel:
    """The :class:`UpliftModel` :func:`save_uplift` wrote to ``directory``."""
    directory = Path(directory)
    meta_path = directory / _META
    if not meta_path.exists():
        raise FileNotFoundError(f"no uplift model at {str(directory)!r} (no {_META})")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != UPLIFT_FORMAT:
        raise ValueError(
            f"{meta_path}: format must be {UPLIFT_FORMAT!r}, got {meta.get('format')!r}"
        )
    schema = parse_schema((directory / _SCHEMA).read_text(), source=str(directory / _SCHEMA))
    with np.load(directory / _WEIGHTS, allow_pickle=False) as arrays:
        models = tuple(
            LinearWeights(
                tables={name: arrays[f"table.{name}"][:, m] for name in schema.tables},
                dense=arrays["dense"][:, m],
                bias=float(arrays["bias"][m]),
                mean=arrays["mean"][:, m],
                scale=arrays["scale"][:, m],
            )
            for m in range(2)
        )
    return UpliftModel(meta["learner"], schema, models, float(meta["propensity"]))


class UpliftScorer:
    """Incremental conversion rates of a request's candidates, through the serving encoder.

    The catalog's creative side is encoded once per catalog snapshot (on first use after a
    swap) and kept beside the snapshot it was encoded from.
    """

    def __init__(self, model: UpliftModel) -> None:
        from adrank.orchestrator.encoder import RequestEncoder

        if not isinstance(model, UpliftModel):
            raise TypeError(f"model must be an UpliftModel, got {type(model).__name__}")
        self.model = model
        widened = dataclasses.replace(
            model.schema,
            tables={n: dataclasses.replace(t, dim=2) for n, t in model.schema.tables.items()},
        )
        self.encoder = RequestEncoder(widened, model.stacked_tables())
        self._lock = threading.Lock()
        self._encoded: tuple[Any, Any] | None = None  # (catalog, its encoding)

    @classmethod
    def load(cls, directory: str | Path) -> UpliftScorer:
        return cls(load_uplift(directory))

    def uplift(self, request: Any, catalog: Any, rows: np.ndarray) -> np.ndarray:
        """``tau`` float64 [C] of ``request``'s candidates at ``catalog`` ``rows``; candidates
        given in the request (``request.candidate_rows``) are encoded from their own rows."""
        from adrank.orchestrator.timing import StageTimer

        timer = StageTimer()  # the caller times the whole call as its own stage
        if request.candidate_rows is not None:
            inputs = self.encoder.encode_rows(request, catalog.table, timer)
        else:
            inputs = self.encoder.encode(request, self._encoding(catalog), rows, timer)
        count = len(inputs.dense)
        pooled = inputs.embeddings.reshape(count, -1, 2).sum(axis=1, dtype=np.float64)
        return self.model.uplift(pooled + self.model.dense_logits(inputs.dense))

    def _encoding(self, catalog: Any) -> Any:
        encoded = self._encoded
        if encoded is not None and encoded[0] is catalog:
            return encoded[1]
        with self._lock:
            if self._encoded is None or self._encoded[0] is not catalog:
                self._encoded = (catalog, self.encoder.encode_catalog(catalog))
            return self._encoded[1]
