"""Moving a running service between exported versions of its model, without a failed request.

Glossary: a *version* is one ``adrank export`` of the model: its tables and manifest under
``<artifacts>/NAME/V/`` and its dense part under ``<repository>/NAME/V/`` (see
:mod:`adrank.artifacts`).

:meth:`ModelVersions.activate` moves to version ``V`` in this order, and stops at the first
failure with the old version still serving and the reason raised as :class:`SwapError`:

1. map ``V``'s tables and read its schema (memory-mapped: O(1) in their size);
2. ask Triton to load the model (a new version loads beside the serving one: the configs keep
   the newest two), and wait until ``V`` is ready;
3. warm ``V`` up at serving size, under a long deadline;
4. switch the Ranker atomically (:meth:`adrank.Ranker.swap_model`): requests in flight finish
   on the version they started with, and every response names the version that scored it.

Rollback is the same call with the previous version. :meth:`ModelVersions.watch` polls the
artifacts directory and activates a newer version when one appears (a version that failed is
not retried until a newer one appears).

:meth:`ModelVersions.pin` serves a version *beside* the current one, for the requests that name
it (an experiment arm's ``model_version``): steps 1-3, then :meth:`adrank.Ranker.pin_model`.
A pinned version stays while the current one is switched; Triton serves the newest two exported
versions (the configs' version policy), so an arm can name the newest or the one before it, and
a switch that would load a version past a pinned one is refused (SwapError) before it unloads it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adrank.artifacts import MANIFEST_FILE, open_version
from adrank.features.schema import FeatureSchema
from adrank.orchestrator.errors import ModelUnavailableError
from adrank.orchestrator.model import TritonModel
from adrank.orchestrator.ranker import Ranker

log = logging.getLogger("adrank.models")

WARM_UP_CANDIDATES = 1000


def warm_up(model: TritonModel, catalog_size: int, schema: FeatureSchema) -> None:
    """Warms ``model`` up at serving size: the catalog's, at most ``WARM_UP_CANDIDATES`` (that
    many without a catalog, whose requests bring their candidates)."""
    candidates = min(catalog_size, WARM_UP_CANDIDATES) or WARM_UP_CANDIDATES
    model.warm_up(candidates, schema.embedding_dim, schema.dense_dim)


class SwapError(RuntimeError):
    """A version could not be activated; the version that was serving still is."""


@dataclass(frozen=True)
class ActiveVersion:
    version: int
    artifacts_dir: Path
    model: TritonModel


class ModelVersions:
    """The versions of one model a running service can serve, and the switch between them.

    ``artifacts_root`` holds the model's exported versions (``<artifacts>/NAME``); ``connect``
    makes the Triton client of one version; ``load`` asks the Triton server to load the
    model's newest versions (None when the server picks them up by itself).
    """

    def __init__(
        self,
        ranker: Ranker,
        artifacts_root: str | Path,
        current: ActiveVersion,
        connect: Callable[[int], TritonModel],
        load: Callable[[], None] | None = None,
        precision: str = "fp32",
    ) -> None:
        self.ranker = ranker
        self.artifacts_root = Path(artifacts_root)
        self.connect = connect
        self.load = load
        self.precision = precision
        self._current = current
        self._previous: ActiveVersion | None = None
        self._lock = threading.Lock()  # one switch at a time
        self._failed: set[int] = set()
        self._pinned: dict[int, ActiveVersion] = {}
        self._pinned_schemas: dict[int, FeatureSchema] = {}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # --- what is served ------------------------------------------------------------------

    @property
    def current(self) -> ActiveVersion:
        return self._current

    @property
    def previous(self) -> ActiveVersion | None:
        return self._previous

    def available(self) -> list[int]:
        """The exported versions found under ``artifacts_root``, oldest first."""
        if not self.artifacts_root.is_dir():
            return []
        return sorted(
            int(path.name)
            for path in self.artifacts_root.iterdir()
            if path.name.isdigit() and (path / MANIFEST_FILE).exists()
        )

    def status(self) -> dict[str, Any]:
        previous = self._previous
        return {
            "version": self._current.version,
            "model_version": self._current.model.version,
            "previous": None if previous is None else previous.version,
            "available": self.available(),
            "pinned": sorted(self._pinned),
        }

    # --- switching -----------------------------------------------------------------------

    def activate(self, version: int) -> dict[str, Any]:
        """Moves the service to ``version`` (see the module docstring); returns the status."""
        with self._lock:
            if version == self._current.version:
                return self.status()
            log.info("activating model version %d", version)
            try:
                directory, model = self._open(version, self.ranker.swap_model, set(self._pinned))
            except SwapError as error:
                self._failed.add(version)
                log.error("version %d not activated: %s", version, error)
                raise
            retired, self._previous = self._previous, self._current
            self._current = ActiveVersion(version, directory, model)
            if retired is not None and retired.model is not self._current.model:
                retired.model.close()  # two switches old: no request still runs on it
            log.info("serving model version %d", version)
            return self.status()

    def pin(self, version: int) -> dict[str, Any]:
        """Serves ``version`` beside the current one, to the requests that name it (see the
        module docstring); LookupError when it is not exported, SwapError when it cannot be
        loaded or served. Returns the status."""
        with self._lock:
            if version in self._pinned:
                return self.status()
            log.info("pinning model version %d beside the serving one", version)
            pin = functools.partial(self.ranker.pin_model, version)
            directory, model = self._open(version, pin, {*self._pinned, version})
            self._pinned[version] = ActiveVersion(version, directory, model)
            self._pinned_schemas[version] = open_version(directory, self.precision).schema
            return self.status()

    def warm_up_pinned(self) -> None:
        """Warms the pinned versions up at serving size (after a Triton restart)."""
        for version, active in list(self._pinned.items()):
            warm_up(active.model, len(self.ranker.catalog), self._pinned_schemas[version])

    def _open(
        self, version: int, install: Callable[..., None], keep: set[int]
    ) -> tuple[Path, TritonModel]:
        """Steps 1-3 of the module docstring for ``version``, then ``install(schema, tables,
        model)``; the directory and the model, or LookupError / SwapError. ``keep``: the
        versions Triton must still serve after loading (the pinned ones)."""
        directory = self.artifacts_root / str(version)
        if not (directory / MANIFEST_FILE).exists():
            raise LookupError(f"version {version} is not exported in {self.artifacts_root}")
        if self.load is not None:  # a reload keeps Triton's newest two: no pin may fall out
            newest = self.available()[-2:]
            outside = sorted(set(keep) - set(newest))
            if outside:
                raise SwapError(
                    f"version {version} cannot be loaded: Triton serves the newest two exported "
                    f"versions {newest}, and pinned version(s) {outside} would not be served"
                )
        try:
            exported = open_version(directory, self.precision)
            if self.load is not None:
                self.load()
            model = self.connect(version)
        except Exception as error:
            raise SwapError(f"version {version} could not be loaded: {error}") from None
        try:
            warm_up(model, len(self.ranker.catalog), exported.schema)
            install(exported.schema, exported.tables, model)
        except (ModelUnavailableError, ValueError) as error:
            model.close()
            raise SwapError(f"version {version} could not be served: {error}") from None
        return directory, model

    def rollback(self) -> dict[str, Any]:
        """Back to the version served before the last switch."""
        previous = self._previous
        if previous is None:
            raise LookupError("there is no previous version to roll back to")
        return self.activate(previous.version)

    # --- watching the artifacts ----------------------------------------------------------

    def watch(self, interval_s: float = 5.0) -> None:
        """Activates newer versions as they appear, checking every ``interval_s`` seconds."""
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        if self._watcher is not None:
            return
        self._watcher = threading.Thread(
            target=self._watch, args=(interval_s,), name="adrank-model-watch", daemon=True
        )
        self._watcher.start()

    def _watch(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            newer = [v for v in self.available() if v > self._current.version]
            newest = max((v for v in newer if v not in self._failed), default=None)
            if newest is not None:
                try:
                    self.activate(newest)
                except (SwapError, LookupError) as error:
                    log.error("watch: %s", error)

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        for active in (self._previous, self._current, *self._pinned.values()):
            if active is not None:
                active.model.close()
