"""The online learner's click rate in the serving process: ``adrank serve --online OUT``.

Glossary: ``OUT`` the folder ``adrank learn --out`` publishes to; ``view`` what one request is
scored with, swapped as one after each publication applied: the tables, the fields, the bias
and the publication number; ``field`` one of the learner's id columns, found per request by
its name (below); ``C`` the request's candidates.

Rules:

- **Which rate.** Once a publication is applied, the online model's click rate *replaces* the
  dense model's ``p_ctr`` (``p_cvr`` and ``p_neg`` stay the dense model's). Replacing, not
  blending: the online model is trained on the live click stream and is measured on its own
  (``bench/online_drift.py``); a blend would need a weight tuned per pair of models. Until the
  first publication is applied, requests are scored by the dense model alone.
- **Which version.** A response scored online names it in ``model_version``:
  ``"<dense version>+online.<N>"``, N the last publication applied whole before the request
  was scored (rows of the one being applied may already show: each row is atomic, a
  publication is not).
- **Where a field's ids come from.** A catalog column of that name (``creative_id``,
  ``advertiser_id``, ``campaign_id``, ``category``, ``ad_id`` or any integer column of the
  catalog table) gives one id per candidate; otherwise the request's ``user`` value of that
  name, then its ``context`` value, gives one id for every candidate. A value that is absent or
  not an integer (the learner trains on int64 columns) reads as an unseen id: the zero row.
- **Following.** A daemon thread applies new publications every ``poll_s`` seconds
  (:class:`~adrank.online.publish.DeltaFollower`: deltas in place, each row atomic, lookups
  keep running). A publication that fails to apply is logged and retried at the next poll;
  serving goes on with what was applied.
- **Metrics.** The scorer is a Prometheus collector (``adrank serve`` registers it):
  ``adrank_online_publication`` (the last applied, -1 before the first),
  ``adrank_online_freshness_seconds`` (its data landed -> applied here) and
  ``adrank_online_rows{field}`` (live rows of each table).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adrank.online.learner import predict_rows
from adrank.online.publish import DeltaFollower

log = logging.getLogger("adrank.online")

_CATALOG_COLUMNS = ("creative_id", "advertiser_id", "campaign_id", "category", "ad_id")


@dataclass(frozen=True)
class _View:
    fields: tuple[str, ...]
    tables: dict[str, Any]  # field -> DynamicEmbeddingTable, updated in place
    bias: float
    publication: int


class OnlineScorer:
    """Follows ``publications`` (an ``adrank learn --out`` folder) and rescores candidates.

    A context manager: entering applies what is there and starts the follower thread, leaving
    stops it. :meth:`rescore` is the ranker's hook (:class:`adrank.orchestrator.ranker.Ranker`).
    """

    def __init__(self, publications: str | Path, poll_s: float = 0.5) -> None:
        if isinstance(poll_s, bool) or not isinstance(poll_s, (int, float)):
            raise TypeError(f"poll_s must be a number, got {type(poll_s).__name__}")
        if not (math.isfinite(poll_s) and poll_s > 0):
            raise ValueError(f"poll_s must be a finite number > 0, got {poll_s}")
        path = Path(publications)
        if path.exists() and not path.is_dir():
            raise ValueError(f"publications {path} is not a directory")
        self.publications = path
        self.poll_s = float(poll_s)
        self.follower = DeltaFollower(path)
        self._view: _View | None = None
        self._catalog: tuple[Any, dict[str, np.ndarray | None]] | None = None
        self._stop = threading.Event()
        self._polling = threading.Lock()  # one poll at a time: the thread's, or a caller's
        self._thread: threading.Thread | None = None

    # --- following ----------------------------------------------------------------------

    @property
    def publication(self) -> int:
        """The last publication applied; -1 before the first."""
        view = self._view
        return -1 if view is None else view.publication

    def poll(self) -> int:
        """Apply every new publication now; returns how many (the thread calls this)."""
        with self._polling:
            try:
                return self.follower.poll()
            finally:  # what was applied serves, even when a later publication failed
                follower, view = self.follower, self._view
                if follower.applied >= 0 and (view is None or view.publication != follower.applied):
                    self._view = _View(
                        follower.fields, dict(follower.tables), follower.bias, follower.applied
                    )

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                if self.poll():
                    log.info("online publication %d applied", self.publication)
            except (OSError, ValueError, KeyError, RuntimeError) as error:
                log.warning("online publication not applied yet (retrying): %s", error)

    def start(self) -> OnlineScorer:
        if self._thread is not None:
            raise RuntimeError("the online scorer is already started")
        try:
            self.poll()
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            log.warning("online publication not applied yet (retrying): %s", error)
        self._thread = threading.Thread(target=self._follow, name="adrank-online", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> OnlineScorer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def collect(self) -> Iterator[Any]:
        """The metrics above, read at scrape time (a prometheus_client collector)."""
        from prometheus_client.core import GaugeMetricFamily

        view = self._view
        yield GaugeMetricFamily(
            "adrank_online_publication",
            "The last online publication applied (-1: none yet)",
            value=float(self.publication),
        )
        freshness = self.follower.freshness_s
        yield GaugeMetricFamily(
            "adrank_online_freshness_seconds",
            "Seconds from the last applied publication's data landing to its being applied here",
            value=float(freshness[-1]) if freshness else math.nan,
        )
        rows = GaugeMetricFamily(
            "adrank_online_rows", "Live rows of each online table", labels=["field"]
        )
        for field, table in ({} if view is None else view.tables).items():
            rows.add_metric([field], float(len(table)))
        yield rows

    # --- scoring ------------------------------------------------------------------------

    def rescore(
        self, request: Any, catalog: Any, rows: np.ndarray, rates: Any, model_version: str
    ) -> tuple[Any, str]:
        """``rates`` with ``p_ctr`` the online model's for the candidates ``rows`` of
        ``catalog``, and the version to answer with; unchanged before the first publication."""
        view = self._view  # one read: a request is scored by one publication's bias and tables
        if view is None:
            return rates, model_version
        p = self.predict(view, request, catalog, rows)
        return rates._replace(p_ctr=p), f"{model_version}+online.{view.publication}"

    def predict(self, view: _View, request: Any, catalog: Any, rows: np.ndarray) -> np.ndarray:
        """The online click rate of each candidate (float32 [C])."""
        count = len(rows)
        columns = self._catalog_columns(catalog, view.fields)
        field_rows = []
        for field in view.fields:
            table = view.tables[field]
            column = columns[field]
            if column is not None:
                field_rows.append(table.lookup(column[rows]))
                continue
            value = _request_value(request, field)
            if value is None:
                field_rows.append(np.zeros((count, table.dim), dtype=np.float32))
            else:  # one id for every candidate: look it up once
                field_rows.append(
                    np.broadcast_to(table.lookup(np.array([value])), (count, table.dim))
                )
        return predict_rows(view.bias, field_rows).astype(np.float32)

    def _catalog_columns(
        self, catalog: Any, fields: tuple[str, ...]
    ) -> dict[str, np.ndarray | None]:
        """The fields' int64 columns in the catalog snapshot (None: not a catalog column),
        found once per snapshot."""
        cached = self._catalog
        if cached is not None and cached[0] is catalog and tuple(cached[1]) == fields:
            return cached[1]
        columns = {field: _catalog_column(catalog, field) for field in fields}
        self._catalog = (catalog, columns)
        return columns


def _catalog_column(catalog: Any, field: str) -> np.ndarray | None:
    """The catalog's int64 column ``field`` (row order of the catalog), or None."""
    column = getattr(catalog, field, None) if field in _CATALOG_COLUMNS else None
    if column is None and catalog.table is not None and field in catalog.table.column_names:
        import pyarrow.types as pat

        data = catalog.table.column(field)
        if pat.is_integer(data.type) and data.null_count == 0:
            column = data.to_numpy()
    if column is None:
        return None
    return np.ascontiguousarray(column, dtype=np.int64)


def _request_value(request: Any, field: str) -> int | None:
    for source in (request.user, request.context):
        if field in source:
            value = source[field]
            integer = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            return int(value) if integer and -(2**63) <= int(value) < 2**63 else None
    return None
