"""The end-to-end load test: adrank against the plain PyTorch pipeline, same requests.

Configurations (each ranks the same requests of ``candidates`` creatives, closed loop):

* ``api+triton`` (adrank): ``Ranker.rank`` in this process, the dense model on the embedded
  Triton.
* ``http+triton`` (adrank): ``POST /v1/rank`` to ``adrank serve`` (its own process, loopback),
  the dense model on the same embedded Triton.
* ``grpc+triton`` (adrank): ``adrank.v1.Ranking/Rank`` over gRPC to the same ``adrank serve``
  (``--grpc-port``), the request serialized up front as the HTTP bodies are.
* ``api+torch`` (reference): ``Ranker.rank`` with the TorchScript model in process, the model
  cost of the baseline, so the rest compares like for like.
* ``plain-torch`` (baseline): :class:`~adrank.benchmark.baseline.PlainTorchPipeline`.

Rounds interleave the configurations (every configuration once per round, in turn) so that a
shared machine's noise falls on all of them alike; the report gives the median over rounds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from adrank.benchmark.loadtest import LoadResult, LoadSummary, median_summary, run_load, summarize
from adrank.benchmark.perf_analyzer import PerfAnalyzerRow, run_perf_analyzer
from adrank.service.schemas import rank_request_json

__all__ = ["CONFIGURATIONS", "SuiteConfig", "SuiteResult", "machine_description", "run_suite"]

CONFIGURATIONS = {
    "api+triton": "adrank",
    "http+triton": "adrank",
    "grpc+triton": "adrank",
    "api+torch": "reference",
    "plain-torch": "baseline",
}
BASELINE = "plain-torch"


@dataclasses.dataclass(frozen=True)
class SuiteConfig:
    """Sizes of one suite run; the defaults are the quick run (a few minutes on 2 cores)."""

    requests: int = 100  # per configuration, concurrency and round
    rounds: int = 3
    concurrency: tuple[int, ...] = (1, 2)
    candidates: int = 1000
    k: int = 10
    warmup: int = 10
    workspace: str = "artifacts/bench-world"
    rows: int = 100_000
    configurations: tuple[str, ...] = tuple(CONFIGURATIONS)
    # Triton's perf_analyzer against the served model, each window this long (0: skip it).
    perf_analyzer_ms: int = 2000

    def __post_init__(self) -> None:
        for name in ("requests", "rounds", "candidates", "k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        if not isinstance(self.perf_analyzer_ms, int) or self.perf_analyzer_ms < 0:
            raise ValueError(
                f"perf_analyzer_ms must be an integer >= 0, got {self.perf_analyzer_ms!r}"
            )
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise ValueError(f"concurrency must list integers >= 1, got {self.concurrency!r}")
        unknown = [c for c in self.configurations if c not in CONFIGURATIONS]
        if unknown or not self.configurations:
            raise ValueError(
                f"configurations must be some of {list(CONFIGURATIONS)}, got {unknown or '[]'}"
            )


@dataclasses.dataclass(frozen=True)
class SuiteResult:
    config: SuiteConfig
    machine: str
    summaries: list[LoadSummary]  # median over rounds, one per (configuration, concurrency)
    runs: list[LoadResult]  # every round's raw measurements (for the plots)
    notes: list[str]
    # Triton's perf_analyzer against the served model (empty when skipped; notes say why)
    perf_analyzer: list[PerfAnalyzerRow] = dataclasses.field(default_factory=list)


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    return (
        f"{cpu}, {os.cpu_count()} logical cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def run_suite(config: SuiteConfig, say: Callable[[str], None] = print) -> SuiteResult:
    """Builds (or reuses) the workspace, starts what the configurations need, measures."""
    from adrank.workspace import prepare_workspace, sample_requests

    root = Path(config.workspace)
    workspace = prepare_workspace(
        root, rows=config.rows, repository=root / "triton_models", say=say
    )
    requests = sample_requests(
        workspace, config.requests, candidates=config.candidates, k=config.k, seed=1
    )
    notes = [
        f"{config.requests} requests of {config.candidates} candidates (k={config.k}) per "
        f"configuration, concurrency and round; {config.rounds} interleaved rounds; figures are "
        "medians over the rounds",
        f"workspace {root} ({config.rows:,} training rows, model version {workspace.version})",
    ]
    perf: list[PerfAnalyzerRow] = []
    with contextlib.ExitStack() as stack:
        calls, triton_url = _start(config.configurations, workspace, requests, stack, say)
        runs = []
        for concurrency in config.concurrency:
            for round_index in range(config.rounds):
                for name, call in calls.items():
                    runs.append(
                        run_load(
                            call,
                            requests,
                            concurrency,
                            name=name,
                            warmup=config.warmup if round_index == 0 else 0,
                        )
                    )
                say(f"  concurrency {concurrency}: round {round_index + 1}/{config.rounds} done")
        if triton_url is not None and config.perf_analyzer_ms:
            perf = _perf_analyzer(triton_url, workspace.model_name, config, notes, say)
    summaries = [
        median_summary([summarize(r) for r in runs if (r.name, r.concurrency) == (name, c)])
        for c in config.concurrency
        for name in config.configurations
    ]
    return SuiteResult(config, machine_description(), summaries, runs, notes, perf)


def _perf_analyzer(
    url: str, model: str, config: SuiteConfig, notes: list[str], say: Callable[[str], None]
) -> list[PerfAnalyzerRow]:
    """perf_analyzer at 1 and ``config.candidates`` rows; a missing binary is a note, not a
    failure (the suite still reports adrank's own figures)."""
    say("running Triton's perf_analyzer")
    rows = sorted({1, config.candidates})
    try:
        found = run_perf_analyzer(url, model, rows=rows, measurement_ms=config.perf_analyzer_ms)
    except FileNotFoundError as error:
        notes.append(f"perf_analyzer skipped: {error}")
        return []
    notes.append(
        f"perf_analyzer: {config.perf_analyzer_ms} ms windows, gRPC with system shared memory, "
        f"random inputs, model {model!r} as served"
    )
    return found


def _start(
    names: Sequence[str],
    workspace: Any,
    requests: Sequence[Any],
    stack: contextlib.ExitStack,
    say: Callable[[str], None],
) -> tuple[dict[str, Callable[[Any], Any]], str | None]:
    """One callable per configuration and the Triton gRPC address (None without a Triton);
    servers are stopped when ``stack`` closes."""
    from adrank.orchestrator.model import TorchScriptModel, TritonModel
    from adrank.orchestrator.ranker import Ranker

    version_dir = workspace.repository / workspace.model_name / str(workspace.version)
    calls: dict[str, Callable[[Any], Any]] = {}
    triton_url = None
    if any(name.endswith("+triton") for name in names):
        from adrank.triton.server import EmbeddedTriton

        say("starting the embedded Triton")
        server = EmbeddedTriton(workspace.repository, models=[workspace.model_name])
        triton_url = stack.enter_context(server).grpc_url
    service = None
    for name in names:
        if name in ("http+triton", "grpc+triton") and service is None:
            say("starting the service (adrank serve: uvicorn and gRPC, loopback)")
            service = stack.enter_context(_service(workspace, triton_url))
        if name == "api+triton":
            model = TritonModel(triton_url, model=workspace.model_name, timeout_s=10.0)
            stack.callback(model.close)
            ranker = Ranker.from_export(workspace.artifacts_dir, workspace.catalog_path, model)
            calls[name] = ranker.rank
        elif name == "http+triton":
            client = _HttpClient(service[0], requests)
            stack.callback(client.close)
            calls[name] = client.rank
        elif name == "grpc+triton":
            grpc_client = _GrpcClient(service[1], requests)
            stack.callback(grpc_client.close)
            calls[name] = grpc_client.rank
        elif name == "api+torch":
            model = TorchScriptModel(version_dir)
            ranker = Ranker.from_export(workspace.artifacts_dir, workspace.catalog_path, model)
            calls[name] = ranker.rank
        else:
            from adrank.benchmark.baseline import PlainTorchPipeline

            calls[name] = PlainTorchPipeline.from_workspace(workspace).rank
    return calls, triton_url


@contextlib.contextmanager
def _service(
    workspace: Any, triton_url: str, timeout_s: float = 120.0
) -> Iterator[tuple[str, str]]:
    """``adrank serve`` in its own process on free loopback ports, the model on ``triton_url``:
    its HTTP URL and its gRPC target.

    Its own process, as in production: the load generator's threads do not share its GIL. The
    model deadline is generous: a shared machine's stalls are measured, not answered with 503.
    """
    from adrank.ports import free_port

    port, grpc_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "adrank.cli",
        "serve",
        f"--artifacts={workspace.artifacts_dir}",
        f"--catalog={workspace.catalog_path}",
        f"--model={workspace.model_name}",
        f"--triton-url={triton_url}",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--grpc-port={grpc_port}",
        "--deadline-ms=10000",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not _ready(url):
            if process.poll() is not None:
                raise RuntimeError(f"the HTTP service exited with status {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP service was not ready within {timeout_s:.0f} s")
            time.sleep(0.2)
        yield url, f"127.0.0.1:{grpc_port}"
    finally:
        process.send_signal(signal.SIGTERM)  # as a process manager stops it
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class _HttpClient:
    """Keep-alive HTTP/1.1 connections, one per worker thread; bodies encoded once, up front."""

    def __init__(self, url: str, requests: Sequence[Any]) -> None:
        self._host, port = url.removeprefix("http://").split(":")
        self._port = int(port)
        self._bodies = {id(r): json.dumps(rank_request_json(r)).encode() for r in requests}
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []

    def rank(self, request: Any) -> dict[str, Any]:
        body = self._bodies.get(id(request)) or json.dumps(rank_request_json(request)).encode()
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request("POST", "/v1/rank", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
                break
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # The server closed an idle keep-alive connection (uvicorn does after 5 s, as
                # between rounds): reconnect once, as an HTTP client library would.
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        if response.status != 200:
            raise RuntimeError(f"POST /v1/rank answered {response.status}: {payload[:200]!r}")
        # The caller decodes with a codec as fast as the service's: its time is the caller's.
        return orjson.loads(payload)

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=30)
            self._local.connection = connection
            self._connections.append(connection)
        return connection

    def close(self) -> None:
        for connection in self._connections:
            connection.close()


class _GrpcClient:
    """One gRPC channel (calls from several threads share it, as gRPC clients do); messages
    serialized once, up front, as the HTTP client's bodies are encoded."""

    def __init__(self, target: str, requests: Sequence[Any]) -> None:
        import grpc

        from adrank.service.grpc_messages import request_message
        from adrank.service.grpc_server import RANK_METHOD
        from adrank.service.proto import rank_pb2

        self._encode = lambda r: request_message(r).SerializeToString()
        self._messages = {id(r): self._encode(r) for r in requests}
        self._channel = grpc.insecure_channel(target)
        # /readyz answers before the gRPC port is bound: wait for it as a client would.
        grpc.channel_ready_future(self._channel).result(timeout=60)
        self._call = self._channel.unary_unary(
            RANK_METHOD, response_deserializer=rank_pb2.RankResponse.FromString
        )

    def rank(self, request: Any) -> Any:
        message = self._messages.get(id(request)) or self._encode(request)
        return self._call(message, timeout=30)

    def close(self) -> None:
        self._channel.close()
