"""The request log: one row per ranked request, written as Parquet files that rotate and whose
total size is bounded; events (clicks, conversions, ...) join to it by ``request_id``.

Glossary: a *part* is one Parquet file of the log (``part-000001.parquet``, ...); the log
*rotates* to a new part every ``rows_per_part`` rows; when the parts together exceed
``max_bytes`` the oldest are deleted.

A row: ``request_id``, ``time`` (unix seconds), ``user`` and ``context`` (JSON text: the request
features), ``candidates`` (creative ids), ``model_version``, ``arms`` (JSON: experiment ->
arm), the shown creatives in slot order (``shown_creative_id``, ``shown_campaign_id``,
``shown_ecpm``, ``shown_price``, ``shown_p_ctr``, ``shown_p_cvr``) with their ``propensity``
(null without exploration) and the exploration pool (``pool_*``, null without exploration).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from adrank.orchestrator.request import RankRequest, RankResponse

_LIST_INT = pa.list_(pa.int64())
_LIST_FLOAT = pa.list_(pa.float64())
SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("time", pa.float64()),
        ("user", pa.string()),
        ("context", pa.string()),
        ("candidates", _LIST_INT),
        ("model_version", pa.string()),
        ("arms", pa.string()),
        ("shown_creative_id", _LIST_INT),
        ("shown_campaign_id", _LIST_INT),
        ("shown_ecpm", _LIST_FLOAT),
        ("shown_price", _LIST_FLOAT),
        ("shown_p_ctr", _LIST_FLOAT),
        ("shown_p_cvr", _LIST_FLOAT),
        ("propensity", _LIST_FLOAT),
        ("pool_creative_id", _LIST_INT),
        ("pool_ecpm", _LIST_FLOAT),
        ("pool_price", _LIST_FLOAT),
        ("pool_p_ctr", _LIST_FLOAT),
        ("pool_p_cvr", _LIST_FLOAT),
    ]
)


class RequestLog:
    """Appends requests and their responses; thread-safe. Call :meth:`close` at the end."""

    def __init__(
        self,
        directory: str | Path,
        rows_per_part: int = 10_000,
        max_bytes: int = 1 << 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(rows_per_part, bool) or not isinstance(rows_per_part, int):
            raise TypeError("rows_per_part must be an integer")
        if rows_per_part < 1:
            raise ValueError(f"rows_per_part must be >= 1, got {rows_per_part}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be an integer >= 1, got {max_bytes!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rows_per_part, self.max_bytes, self.clock = rows_per_part, max_bytes, clock
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        parts = self.parts()
        self._next = int(parts[-1].stem.split("-")[1]) + 1 if parts else 1

    def parts(self) -> list[Path]:
        return sorted(self.directory.glob("part-*.parquet"))

    def append(self, request: RankRequest, response: RankResponse) -> None:
        row = _row(request, response, self.clock())
        with self._lock:
            self._rows.append(row)
            if len(self._rows) >= self.rows_per_part:
                self._flush()

    def close(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        table = pa.Table.from_pylist(self._rows, schema=SCHEMA)
        self._rows = []
        path = self.directory / f"part-{self._next:06d}.parquet"
        self._next += 1
        pq.write_table(table, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").rename(path)  # readers never see a half-written part
        parts = self.parts()
        sizes = [p.stat().st_size for p in parts]
        while len(parts) > 1 and sum(sizes) > self.max_bytes:
            parts.pop(0).unlink()
            sizes.pop(0)


def read_request_log(directory: str | Path) -> pa.Table:
    """Every part of the log in ``directory``, in order."""
    parts = sorted(Path(directory).glob("part-*.parquet"))
    if not parts:
        raise ValueError(f"no request log parts (part-*.parquet) in {directory}")
    return pa.concat_tables([pq.read_table(p, schema=SCHEMA) for p in parts])


def _floats(values: Any) -> list[float] | None:
    return None if values is None else np.asarray(values, dtype=np.float64).tolist()


def _row(request: RankRequest, response: RankResponse, now: float) -> dict[str, Any]:
    pool = response.pool or {}
    return {
        "request_id": request.request_id,
        "time": now,
        "user": json.dumps(_plain(request.user), sort_keys=True),
        "context": json.dumps(_plain(request.context), sort_keys=True),
        "candidates": request.candidates.tolist(),
        "model_version": response.model_version,
        "arms": json.dumps(dict(response.arms), sort_keys=True),
        "shown_creative_id": response.creative_id.tolist(),
        "shown_campaign_id": response.campaign_id.tolist(),
        "shown_ecpm": _floats(response.ecpm),
        "shown_price": _floats(response.price),
        "shown_p_ctr": _floats(response.p_ctr),
        "shown_p_cvr": _floats(response.p_cvr),
        "propensity": _floats(response.propensity),
        "pool_creative_id": None if not pool else np.asarray(pool["creative_id"]).tolist(),
        "pool_ecpm": _floats(pool.get("ecpm")),
        "pool_price": _floats(pool.get("price")),
        "pool_p_ctr": _floats(pool.get("p_ctr")),
        "pool_p_cvr": _floats(pool.get("p_cvr")),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
