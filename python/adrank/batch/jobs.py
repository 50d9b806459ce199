"""What a worker does to one partition: rank logged requests, score feature rows, or prepare
training data.

Glossary: a *request log* row has ``request_id``, ``user`` and ``context`` (JSON text or
structs, as :mod:`adrank.experiments.request_log` writes them) and ``candidates`` (creative
ids); ``k`` (int) and ``region`` columns are optional (default ``--k``, and the user's
``country``). A *feature row* has the feature schema's columns (a training log's rows).
A :class:`JobSpec` is what travels to the workers (paths and settings, picklable); each
worker builds its job from it once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("rank", "score", "prepare")
RANK_CHUNK = 32  # requests per model call
SCORE_CHUNK = 4096  # rows per model call


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """``kind``: rank | score | prepare. ``artifacts_dir``: an exported version's artifacts;
    ``model_dir``: its TorchScript model's version folder (in process), or ``triton_url`` with
    ``model_name`` (the model on Triton); ``catalog``: the serving catalog (rank);
    ``schema``: the feature schema (prepare; default: the export's); ``k``: ads per request."""

    kind: str
    artifacts_dir: str | None = None
    model_dir: str | None = None
    triton_url: str | None = None
    model_name: str | None = None
    catalog: str | None = None
    schema: str | None = None
    k: int = 10

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")
        if self.kind in ("rank", "score"):
            if self.artifacts_dir is None:
                raise ValueError(f"{self.kind} needs artifacts_dir (an exported version)")
            if (self.model_dir is None) == (self.triton_url is None):
                raise ValueError("give model_dir (in process) or triton_url (Triton), not both")
        if self.kind == "rank" and self.catalog is None:
            raise ValueError("rank needs catalog (the serving catalog)")
        if self.kind == "prepare" and self.schema is None and self.artifacts_dir is None:
            raise ValueError("prepare needs schema or artifacts_dir")


def build_job(spec: JobSpec) -> Callable[[Any], Any]:
    """The function from a partition's table to its output table."""
    if spec.kind == "prepare":
        return _prepare_job(spec)
    from adrank.orchestrator.ranker import Ranker

    ranker = Ranker.from_export(spec.artifacts_dir, spec.catalog, _model(spec))
    if spec.kind == "rank":
        return lambda table: rank_table(ranker, table, spec.k)
    return lambda table: score_table(ranker, table)


def _model(spec: JobSpec) -> Any:
    if spec.triton_url is not None:
        from adrank.artifacts import load_manifest
        from adrank.orchestrator.model import TritonModel

        manifest = load_manifest(spec.artifacts_dir)
        return TritonModel(
            spec.triton_url,
            model=spec.model_name or manifest["model"],
            version=str(manifest["version"]),
            timeout_s=30.0,
        )
    from adrank.orchestrator.model import TorchScriptModel

    return TorchScriptModel(spec.model_dir)


# -- rank ---------------------------------------------------------------------------------------


def requests_of(table: Any, k: int) -> list:
    """The :class:`~adrank.orchestrator.request.RankRequest` of each request-log row."""
    from adrank.orchestrator.request import RankRequest

    missing = {"request_id", "user", "context", "candidates"} - set(table.column_names)
    if missing:
        raise ValueError(f"a request log needs the columns {', '.join(sorted(missing))}")
    rows = table.to_pylist()
    requests = []
    for row in rows:
        user, context = _mapping(row["user"]), _mapping(row["context"])
        requests.append(
            RankRequest(
                request_id=str(row["request_id"]),
                user=user,
                context=context,
                candidates=np.asarray(row["candidates"] or [], dtype=np.int64),
                k=int(row.get("k") or k),
                region=row.get("region") or user.get("country"),
                recently_seen=np.asarray(user.get("recent_creatives") or [], dtype=np.int64),
            )
        )
    return requests


def _mapping(value: Any) -> dict:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def rank_table(ranker: Any, table: Any, k: int) -> Any:
    """One output row per request: its ranked creatives (lists, rank order) and rates."""
    import pyarrow as pa

    requests = requests_of(table, k)
    responses = []
    for start in range(0, len(requests), RANK_CHUNK):
        responses += ranker.rank_batch(requests[start : start + RANK_CHUNK])
    floats = pa.list_(pa.float64())
    return pa.table(
        {
            "request_id": pa.array([r.request_id for r in responses], pa.string()),
            "model_version": pa.array([r.model_version for r in responses], pa.string()),
            "degraded": pa.array([r.degraded for r in responses], pa.bool_()),
            **{
                name: pa.array([getattr(r, name).tolist() for r in responses], pa.list_(pa.int64()))
                for name in ("creative_id", "campaign_id", "advertiser_id")
            },
            **{
                name: pa.array([getattr(r, name).tolist() for r in responses], floats)
                for name in ("ecpm", "price", "p_ctr")
            },
        }
    )


# -- score --------------------------------------------------------------------------------------


def score_table(ranker: Any, table: Any) -> Any:
    """The model's rates of each feature row, in row order (``p_cvr``/``p_neg`` when it has
    those heads)."""
    import pyarrow as pa

    from adrank.orchestrator.request import RankRequest
    from adrank.orchestrator.timing import StageTimer

    nobody = RankRequest("batch", {}, {}, np.empty(0, dtype=np.int64), k=1)
    heads: dict[str, list[np.ndarray]] = {"p_ctr": [], "p_cvr": [], "p_neg": []}
    for start in range(0, table.num_rows, SCORE_CHUNK):
        inputs = ranker.encoder.encode_rows(nobody, table.slice(start, SCORE_CHUNK), StageTimer())
        rates = ranker.model.predict(inputs.embeddings, inputs.dense)
        for name, values in zip(heads, rates, strict=True):
            if values is not None:
                heads[name].append(np.asarray(values, dtype=np.float32))
    return pa.table(
        {name: np.concatenate(parts) for name, parts in heads.items() if parts}
        or {"p_ctr": np.empty(0, np.float32)}
    )


# -- prepare ------------------------------------------------------------------------------------


def _prepare_job(spec: JobSpec) -> Callable[[Any], Any]:
    from adrank.features import load_schema
    from adrank.features.pipeline import FeaturePipeline

    if spec.schema is not None:
        schema = load_schema(spec.schema)
    else:
        from adrank.artifacts import open_version

        schema = open_version(spec.artifacts_dir).schema
    pipeline = FeaturePipeline(schema)
    return lambda table: prepared_table(pipeline(table))


def prepared_table(batch: Any) -> Any:
    """A :class:`~adrank.features.pipeline.FeatureBatch` as a table: per sparse field its
    bucket ids per row (list<int64>), ``dense`` (list<float32> per row) and the labels."""
    import pyarrow as pa

    columns = {
        name: pa.ListArray.from_arrays(
            pa.array(feature.offsets.astype(np.int32)), pa.array(feature.values)
        )
        for name, feature in batch.sparse.items()
    }
    rows, width = batch.dense.shape
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * width)
    columns["dense"] = pa.ListArray.from_arrays(offsets, pa.array(batch.dense.reshape(-1)))
    for task, labels in batch.labels.items():
        columns[f"label_{task}"] = pa.array(labels)
    return pa.table(columns)


def read_partition(path: str | Path) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(path)
