"""The whole serving stack in one place: Triton, the ranker, the HTTP app, and its server.

``serving_stack`` starts what is missing (an embedded Triton unless ``triton_url`` is given),
builds the ranker over an exported model and a catalog, and the app over the ranker; it stops
everything it started on exit. The embedded Triton runs under a
:class:`~adrank.triton.supervisor.TritonSupervisor`: when it dies it is cleaned up, restarted on
the same ports and warmed up, and ``/healthz`` fails once the supervisor gives up.
``HttpServer`` runs the app with uvicorn on a loopback port in a background thread, for the
demo and the tests.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adrank.orchestrator.model import TritonModel
from adrank.orchestrator.ranker import FallbackRates, Ranker
from adrank.pacing import PacingConfig, PacingService
from adrank.ports import free_port
from adrank.service.app import ServiceLimits, create_app
from adrank.service.control import make_control_router
from adrank.service.model_control import make_model_router
from adrank.service.model_versions import ActiveVersion, ModelVersions, warm_up
from adrank.service.security import AccessPolicy
from adrank.service.state_metrics import ControlStateCollector
from adrank.stores import open_control_stores
from adrank.traffic import TrafficControl
from adrank.triton.supervisor import RestartPolicy, TritonSupervisor


@dataclass
class ServingStack:
    app: Any
    ranker: Ranker
    model: TritonModel
    triton: Any  # the EmbeddedTriton started here, or None
    supervisor: TritonSupervisor | None  # keeps the embedded Triton up
    versions: ModelVersions  # the model version served, and the switch to another
    pacing: PacingService
    traffic: TrafficControl


@contextlib.contextmanager
def serving_stack(
    artifacts_dir: str | Path,
    catalog_path: str | Path | None,
    *,
    repository: str | Path = "triton_models",
    model_name: str | None = None,
    triton_url: str | None = None,
    deadline_ms: float = 100.0,
    fallback: FallbackRates | None = None,
    limits: ServiceLimits | None = None,
    state_path: str | Path = ":memory:",
    pacing_config: PacingConfig | None = None,
    restart_policy: RestartPolicy | None = None,
    access: AccessPolicy | None = None,
    watch_models_s: float | None = None,
    experiments: Any = None,
    request_log: Any = None,
    safety: Any = None,
    **ranker_settings: Any,
) -> Iterator[ServingStack]:
    """Starts Triton (unless ``triton_url``), the ranker and the app; stops them on exit.

    The model is asked for by the exported version of ``artifacts_dir`` (its manifest), so the
    tables looked up here and the dense part Triton runs always come from the same training
    run: a repository holding a newer version answers "unavailable", never a mixed score.
    ``model_name`` defaults to the manifest's.

    Budgets, spend, pacing state, kill switches and ad-load caps live in the SQLite file
    ``state_path`` (in memory by default: gone when the stack stops), or in the PostgreSQL
    database it names when it is a ``postgresql://`` URL (shared by replicas on many machines).
    Scoring reads the pacing multipliers and selection the kill switches on every request; the
    control endpoints (``/v1/events``, budgets, kill switches, ad-load caps) are mounted on the
    app.

    ``access``: the token and Host rules of the app (:class:`AccessPolicy`; open on loopback
    if None). ``restart_policy``: how the embedded Triton is brought back when it dies (an
    :class:`~adrank.triton.supervisor.RestartPolicy`; its defaults if None).

    The served version can be switched while serving (``PUT /v1/model``, or ``stack.versions``;
    :mod:`adrank.service.model_versions`); ``watch_models_s`` checks the artifacts directory
    that often for a newer export and switches to it.

    ``experiments`` (an :class:`adrank.experiments.assignment.ExperimentSet`) puts each request
    in its arms; ``request_log`` (an :class:`adrank.experiments.request_log.RequestLog`) gets
    every ranked request, and is closed when the stack stops.

    ``safety`` (an :class:`adrank.safety.SafetyGate`) blocks creatives by region rules; its
    audit log and overrides are mounted with the control endpoints (``/v1/safety/...``).
    ``cold_start`` (an :class:`adrank.experiments.cold_start.ColdStart`, in ``ranker_settings``)
    counts the impressions and clicks of ``POST /v1/events`` that name their creative.
    """
    from adrank.artifacts import SCHEMA_FILE, load_manifest
    from adrank.features.schema import load_schema
    from adrank.triton import EmbeddedTriton

    if not deadline_ms > 0:
        raise ValueError(f"deadline_ms must be > 0, got {deadline_ms}")
    manifest = load_manifest(artifacts_dir)
    model_name = model_name or manifest["model"]
    with contextlib.ExitStack() as stack:
        triton = supervisor = None
        if triton_url is None:
            triton = EmbeddedTriton(repository, models=[model_name])
            supervisor = stack.enter_context(TritonSupervisor(triton, restart_policy))
            triton_url = triton.grpc_url
        model = TritonModel(
            triton_url,
            model=model_name,
            version=str(manifest["version"]),
            timeout_s=deadline_ms / 1e3,
        )
        stack.callback(model.close)
        pacing_store, traffic_store = open_control_stores(state_path)
        pacing = PacingService(pacing_store, pacing_config)
        traffic = TrafficControl(traffic_store)
        ranker = Ranker.from_export(
            artifacts_dir,
            catalog_path,
            model,
            fallback=fallback,
            pacing=lambda campaigns: pacing.multipliers(campaigns, time.time()),
            killed=traffic.blocked,
            ad_load=traffic.ad_load_cap,
            safety=safety,
            **ranker_settings,
        )

        serving_url = triton_url

        def connect(version: int) -> TritonModel:
            return TritonModel(
                serving_url, model=model_name, version=str(version), timeout_s=deadline_ms / 1e3
            )

        versions = ModelVersions(
            ranker,
            Path(artifacts_dir).parent,
            ActiveVersion(int(manifest["version"]), Path(artifacts_dir), model),
            connect,
            load=None if triton is None else lambda: triton.load_model(model_name),
            precision=ranker_settings.get("precision", "fp32"),
        )
        stack.callback(versions.close)
        if watch_models_s is not None:
            versions.watch(watch_models_s)

        if experiments is not None:  # the versions arms name, served beside the current one
            pin_arm_versions(versions, experiments)

        def warm_up_served(*_: object) -> None:
            warm_up(ranker.model, len(ranker.catalog), ranker.encoder.schema)
            versions.warm_up_pinned()

        warm_up_served()
        if supervisor is not None:
            supervisor.on_restart = warm_up_served  # a restarted model instance compiles again
        cold_start = ranker_settings.get("cold_start")  # fed by events naming a creative
        control = make_control_router(
            pacing, traffic, on_events=None if cold_start is None else cold_start.counts.record
        )
        control.include_router(make_model_router(versions))
        if safety is not None:
            from adrank.safety.control import make_safety_router

            control.include_router(make_safety_router(safety))
        backend: Any = ranker
        if experiments is not None or request_log is not None:
            from adrank.experiments.assignment import ExperimentSet
            from adrank.experiments.serving import ExperimentRanker

            backend = ExperimentRanker(
                ranker,
                experiments or ExperimentSet([]),
                log=None if request_log is None else request_log.append,
            )
            if request_log is not None:
                stack.callback(request_log.close)
        app = create_app(
            PacedRanker(backend, pacing),
            limits,
            control=control,
            liveness=None if supervisor is None else supervisor.liveness,
            access=access,
            schema=load_schema(Path(artifacts_dir) / SCHEMA_FILE),
        )
        app.state.metrics.registry.register(  # type: ignore[attr-defined]
            ControlStateCollector(pacing, traffic, lambda: versions.current.version)
        )
        yield ServingStack(app, ranker, model, triton, supervisor, versions, pacing, traffic)


def pin_arm_versions(versions: ModelVersions, experiments: Any) -> None:
    """Pins every model version an experiment arm names (:meth:`ModelVersions.pin`); raises
    :class:`~adrank.experiments.serving.ArmVersionError` naming the arm for one it cannot."""
    from adrank.experiments.serving import ArmVersionError
    from adrank.service.model_versions import SwapError

    for version, arms in sorted(experiments.model_versions().items()):
        try:
            versions.pin(version)
        except (LookupError, SwapError) as error:
            raise ArmVersionError(f"arm {', '.join(arms)}: {error}") from None


class PacedRanker:
    """The ranker as the service calls it: every ad it returns counts as served for pacing
    (:meth:`PacingService.record_served`), so a burst of wins closes a campaign before the
    events that report them arrive."""

    def __init__(self, ranker: Ranker, pacing: PacingService) -> None:
        self.ranker = ranker
        self.pacing = pacing

    def rank(self, request: Any) -> Any:
        response = self.ranker.rank(request)
        self.pacing.record_served(response.campaign_id, time.time())
        return response

    def readiness(self) -> tuple[bool, str]:
        return self.ranker.readiness()


class HttpServer:
    """uvicorn serving ``app`` on ``host:port`` in a daemon thread; a context manager."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        config = uvicorn.Config(app, host=self.host, port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="adrank-http", daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> HttpServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
