"""The embedded Triton Inference Server: ``tritonserver`` from the ``nvidia-pytriton`` wheel.

:class:`EmbeddedTriton` starts the real server (Python backend, CPU) on loopback ports with a
model repository, waits until every model is ready, writes the server's log to a file and
stops it on :meth:`~EmbeddedTriton.stop`, on leaving a ``with`` block, at interpreter exit and
when the parent process dies. What the binary needs is prepared first:

- a backend directory whose ``python/`` holds the Python backend and the
  ``triton_python_backend_stub`` built for the running Python (the wheel ships one per version);
- the running interpreter's ``bin/`` first on ``PATH``: the stub finds numpy, torch and adrank
  through the ``python`` it finds there;
- numpy below 2: the stub is built against numpy 1.x and returns empty outputs, without an
  error, under numpy 2.

A missing binary, a port in use or a model that fails to load raises :class:`TritonStartError`
(or a subclass) with the relevant lines of the server log.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from adrank.ports import free_port, port_is_free

ModelControl = Literal["explicit", "poll", "none"]

_LOG_ERROR_LINE = re.compile(r"^E\d{4} |error|failed|traceback|exception", re.IGNORECASE)
# Printed by every CPU-only start; not a reason for any failure.
_HARMLESS_LOG_LINES = ("CudaDriverHelper has not been initialized",)
_LOG_EXCERPT_LINES = 25


class TritonError(RuntimeError):
    """Base class of the embedded server's errors."""


class TritonNotFoundError(TritonError):
    """The ``tritonserver`` binary (or its Python backend) is not installed."""


class TritonStartError(TritonError):
    """The server exited or did not become ready; ``log_excerpt`` holds the relevant log lines."""

    def __init__(self, message: str, log_path: Path | None = None, log_excerpt: str = "") -> None:
        details = f"\n--- {log_path} (relevant lines) ---\n{log_excerpt}" if log_excerpt else ""
        super().__init__(message + details)
        self.log_path = log_path
        self.log_excerpt = log_excerpt


class PortInUseError(TritonStartError):
    """A port the server was asked to listen on is taken."""


@dataclass(frozen=True)
class TritonInstall:
    """Where the ``nvidia-pytriton`` wheel keeps the server and its Python backend."""

    binary: Path
    python_backend: Path  # backends/python: libtriton_python.so + triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for the running Python

    @classmethod
    def find(cls, root: str | Path | None = None) -> TritonInstall:
        """Locate the install (``root`` = the wheel's ``tritonserver`` folder, found if None)."""
        if root is None:
            try:
                import pytriton
            except ImportError:
                raise TritonNotFoundError(
                    "the embedded Triton needs the nvidia-pytriton wheel: "
                    "pip install 'adrank[serve]' (or nvidia-pytriton)"
                ) from None
            root = Path(pytriton.__file__).parent / "tritonserver"
        root = Path(root)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        install = cls(
            binary=root / "bin" / "tritonserver",
            python_backend=root / "backends" / "python",
            stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
        )
        for what, path in [
            ("tritonserver binary", install.binary),
            ("Python backend", install.python_backend / "libtriton_python.so"),
            (f"Python backend stub for Python {version}", install.stub),
        ]:
            if not path.is_file():
                raise TritonNotFoundError(f"{what} not found at {path}")
        if not os.access(install.binary, os.X_OK):
            raise TritonNotFoundError(f"tritonserver binary at {install.binary} is not executable")
        return install

    def prepare_backends(self, directory: Path) -> Path:
        """Make a backend directory for this Python under ``directory``; returns it.

        Links rather than copies, and leaves the installed wheel untouched.
        """
        python_dir = directory / "python"
        python_dir.mkdir(parents=True, exist_ok=True)
        for source in [
            self.python_backend / "libtriton_python.so",
            self.python_backend / "triton_python_backend_utils.py",
            self.stub,
        ]:
            target = python_dir / source.name
            if not target.exists():
                target.symlink_to(source)
        return directory


def check_numpy_for_stub() -> None:
    """Raise unless numpy < 2 (the Python backend stub silently returns empty outputs on 2.x)."""
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        raise TritonError(
            f"numpy {numpy.__version__} is installed; Triton's Python backend stub is built "
            "against numpy 1.x and returns empty outputs under numpy 2: pip install 'numpy<2'"
        )


def log_excerpt(
    text: str,
    about: str | None = None,
    max_lines: int = _LOG_EXCERPT_LINES,
    *,
    errors_only: bool = False,
) -> str:
    """The lines of a server log that explain a failure: its error lines (those that mention
    ``about``, if any do), else the log's tail ('' with ``errors_only``)."""
    lines = [line for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not any(h in line for h in _HARMLESS_LOG_LINES)]
    errors = [line for line in lines if _LOG_ERROR_LINE.search(line)]
    if about is not None:
        errors = [line for line in errors if about in line] or errors
    return "\n".join((errors or ([] if errors_only else lines))[-max_lines:])


# Runs between our spawn and tritonserver: asks for SIGTERM when its parent (this process)
# dies, then becomes the server. It is a separate program, not a preexec_fn, because a
# preexec_fn makes subprocess fork() instead of vfork(): in a process using gRPC (any client of
# the server), fork() runs gRPC's fork handlers, which restart gRPC's threads in the child;
# close_fds then closes their epoll descriptor and the child aborts before it execs
# ("epoll_wait error: Bad file descriptor", status -6), seen on 1 restart in 8 under load.
_LAUNCHER = """\
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG; kept across execv
if os.getppid() != int(sys.argv[1]):  # the parent died before prctl took effect
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def _launcher_command(command: list[str]) -> list[str]:
    """``command`` run under :data:`_LAUNCHER` (Linux; elsewhere as it is)."""
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), *command]


def _group_members(group: int) -> list[int]:
    """Live (not zombie) processes of process group ``group``, from ``/proc``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After "pid (comm) ": state, ppid, pgrp, ...; comm may hold ") ": split at the last.
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(stat.parent.name))
    return members


@dataclass(frozen=True)
class Cleanup:
    """What :meth:`EmbeddedTriton.clean_up` found and removed after a server ended."""

    pid: int | None  # the server reaped (None: nothing was running)
    exit_status: int | None  # -N: killed by signal N
    stubs: tuple[int, ...]  # pids of its Python-backend stubs, killed
    shm_regions: tuple[str, ...]  # /dev/shm names unlinked


_running: weakref.WeakSet[EmbeddedTriton] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


class EmbeddedTriton:
    """A ``tritonserver`` process serving ``model_repository`` on loopback ports.

    Parameters
    ----------
    model_repository
        The Triton model repository (e.g. ``triton_models/``).
    models
        Models to load at start; ``None`` loads every model in the repository.
    grpc_port, http_port
        Ports on ``host``; 0 picks a free one. The server refuses to start if a given port is
        taken. HTTP serves readiness checks and repository control.
    log_path
        Where the server's stdout and stderr go; default ``<workdir>/tritonserver.log``.
    model_control
        ``"explicit"`` (default): models load at start and on :meth:`load_model`, which is how
        a new version is picked up without a restart. ``"poll"``: the server rescans the
        repository every ``poll_interval_s``. ``"none"``: load once.
    python_shm_bytes
        Size of each Python-backend model's shared-memory pool (it grows by the same amount).
    startup_timeout_s, exit_timeout_s
        How long to wait for readiness, and for in-flight requests at stop.

    Examples
    --------
    >>> with EmbeddedTriton("triton_models") as server:  # doctest: +SKIP
    ...     client = RankerClient(server.grpc_url)
    """

    def __init__(
        self,
        model_repository: str | Path,
        *,
        models: list[str] | None = None,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        http_port: int = 0,
        log_path: str | Path | None = None,
        workdir: str | Path | None = None,
        model_control: ModelControl = "explicit",
        poll_interval_s: int = 2,
        python_shm_bytes: int = 16 << 20,
        model_config_name: str | None = None,
        startup_timeout_s: float = 120.0,
        exit_timeout_s: int = 5,
        install: TritonInstall | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        if not self.model_repository.is_dir():
            raise FileNotFoundError(f"model repository not found: {self.model_repository}")
        if model_control not in ("explicit", "poll", "none"):
            raise ValueError(
                f"model_control must be 'explicit', 'poll' or 'none', got {model_control!r}"
            )
        for name, port in [("grpc_port", grpc_port), ("http_port", http_port)]:
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise ValueError(f"{name} must be an int in [0, 65535], got {port!r}")
        self.models = None if models is None else list(models)
        self.host = host
        self._requested_ports = (grpc_port, http_port)
        self.grpc_port = grpc_port
        self.http_port = http_port
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else None
        self._log_path_arg = Path(log_path) if log_path is not None else None
        self.log_path: Path | None = self._log_path_arg
        self.model_control = model_control
        self.poll_interval_s = poll_interval_s
        self.python_shm_bytes = python_shm_bytes
        self.model_config_name = model_config_name
        self.startup_timeout_s = startup_timeout_s
        self.exit_timeout_s = exit_timeout_s
        self._install = install
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen | None = None
        self._cancel = threading.Event()
        self._log_offset = 0  # where the current run's lines start in the log

    # -- addresses -------------------------------------------------------------------------

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint (what ``tritonclient.grpc`` takes)."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def is_running(self) -> bool:
        """Whether the server process is alive; reaps it if it has exited (never a zombie)."""
        process = self._process  # read once: a supervisor thread may replace it
        return process is not None and process.poll() is None

    def exit_status(self) -> int | None:
        """The exit status of the server that ran last (``-N``: killed by signal N), or None
        while it runs or before any start."""
        process = self._process
        return None if process is None else process.poll()

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> EmbeddedTriton:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> EmbeddedTriton:
        """Start the server and wait until it and its models are ready; returns ``self``."""
        if self.is_running():
            raise TritonError(f"the server is already running (pid {self.pid})")
        self._cancel.clear()
        install = self._install or TritonInstall.find()
        check_numpy_for_stub()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="adrank-triton-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self._log_path_arg or self.workdir / "tritonserver.log"
        self._log_offset = 0
        try:
            self._start_with_retries(install, self.workdir / "backends", self._requested_ports)
        except BaseException:
            self._discard_workdir(keep_log=True)  # the error message points at the log
            raise
        _running.add(self)
        return self

    def restart(self) -> Cleanup:
        """Start again, on the ports of the last start, after the server exited.

        First cleans up what the old server left (see :meth:`clean_up`; returned), so its ports
        and shared-memory names are free; the log is appended to. A client of ``grpc_url``
        reconnects by itself. Raises :class:`TritonStartError` as :meth:`start` does (the work
        directory stays for the next try), or :class:`TritonError` if the server is running,
        never started, or :meth:`cancel_start` was called.
        """
        if self.is_running():
            raise TritonError(f"the server is already running (pid {self.pid})")
        if self.workdir is None:
            raise TritonError("restart needs a server that was started and not stopped")
        cleanup = self.clean_up()
        if self._cancel.is_set():
            raise TritonError("the restart was cancelled: the server is stopping")
        install = self._install or TritonInstall.find()
        self._log_offset = self.log_path.stat().st_size if self.log_path.is_file() else 0
        self._start_with_retries(
            install, self.workdir / "backends", (self.grpc_port, self.http_port)
        )
        _running.add(self)
        return cleanup

    @property
    def stop_requested(self) -> bool:
        """True after :meth:`stop` or :meth:`cancel_start`, until the next :meth:`start`."""
        return self._cancel.is_set()

    def cancel_start(self) -> None:
        """Make a start or restart under way in another thread fail within 0.1 s (and any
        later :meth:`restart`); :meth:`start` clears it."""
        self._cancel.set()

    def _start_with_retries(
        self, install: TritonInstall, backends: Path, ports: tuple[int, int]
    ) -> None:
        install.prepare_backends(backends)
        # Ports picked here can be taken before the server binds them: retry with new ones.
        auto_ports = 0 in ports
        for attempt in range(3):
            self._choose_ports(ports)
            try:
                self._launch(install, backends)
                self._wait_ready()
            except PortInUseError:
                self.clean_up()
                if not auto_ports or attempt == 2:
                    raise
            except BaseException:
                self.clean_up()
                raise
            else:
                return

    def stop(self) -> None:
        """Stop the server (SIGINT, then SIGKILL after the exit timeout). Safe to call twice."""
        _running.discard(self)
        self._cancel.set()  # a supervisor must not bring it back (see stop_requested)
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self.exit_timeout_s + 10)
        self.clean_up()
        self._discard_workdir(keep_log=False)

    def _discard_workdir(self, keep_log: bool) -> None:
        """Remove the temporary work directory this object made (all but a log worth reading)."""
        if not self._own_workdir or self.workdir is None:
            return
        log_inside = self.log_path is not None and self.log_path.parent == self.workdir
        if keep_log and log_inside and self.log_path.is_file():
            shutil.rmtree(self.workdir / "backends", ignore_errors=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None

    def clean_up(self) -> Cleanup:
        """Kill the server's whole process group, reap the server, wait (up to 10 s) until its
        Python-backend stubs are gone and unlink the shared-memory regions it left.

        A server that dies by SIGKILL takes neither its stubs (they hold its ports and keep
        running) nor their ``/dev/shm`` pools with it. Safe to call when nothing runs.
        """
        process = self._process
        if process is None:
            return Cleanup(None, None, (), ())
        group = process.pid  # the server leads its own process group (start_new_session)
        stubs = tuple(pid for pid in _group_members(group) if pid != group)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        status = process.wait()
        self._process = None
        deadline = time.monotonic() + 10
        while _group_members(group) and time.monotonic() < deadline:
            time.sleep(0.02)
        regions = tuple(sorted(Path("/dev/shm").glob(self._shm_prefix() + "*")))
        for region in regions:
            region.unlink(missing_ok=True)
        return Cleanup(group, status, stubs, tuple(r.name for r in regions))

    def _choose_ports(self, ports: tuple[int, int]) -> None:
        grpc_port, http_port = ports
        for name, port in [("gRPC", grpc_port), ("HTTP", http_port)]:
            if port and not port_is_free(self.host, port):
                raise PortInUseError(f"{name} port {port} on {self.host} is already in use")
        self.grpc_port = grpc_port or free_port(self.host)
        self.http_port = http_port or free_port(self.host)
        while self.http_port == self.grpc_port:
            self.http_port = free_port(self.host)

    def _command(self, install: TritonInstall, backends: Path) -> list[str]:
        command = [
            str(install.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            "--allow-metrics=false",
            # Configs are complete (model_config.py); auto-complete would start one more stub.
            "--disable-auto-complete-config",
            "--pinned-memory-pool-byte-size=0",
            "--cuda-memory-pool-byte-size=0:0",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--model-control-mode={self.model_control}",
            f"--backend-config=python,shm-default-byte-size={self.python_shm_bytes}",
            f"--backend-config=python,shm-growth-byte-size={self.python_shm_bytes}",
            # Two servers on one host must not share the stub's shared-memory region names.
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix()}",
        ]
        if self.model_control == "poll":
            command.append(f"--repository-poll-secs={self.poll_interval_s}")
        if self.model_control == "explicit":
            for model in self.models if self.models is not None else ["*"]:
                command.append(f"--load-model={model}")
        if self.model_config_name:
            command.append(f"--model-config-name={self.model_config_name}")
        return [*command, *self.extra_args]

    def _shm_prefix(self) -> str:
        return f"adrank_{os.getpid()}_{self.grpc_port}_"

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The stub imports numpy/torch/adrank from the Python it finds first on PATH.
        python_bin = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([python_bin, env.get("PATH", "")])
        return env

    def _launch(self, install: TritonInstall, backends: Path) -> None:
        assert self.log_path is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab" if self._log_offset else "wb") as log:
            self._process = subprocess.Popen(
                _launcher_command(self._command(install, backends)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                cwd=self.workdir,
                start_new_session=True,  # its own process group: stop() owns its lifetime
            )

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self._cancel.is_set():
                raise TritonError("the start was cancelled: the server is stopping")
            code = self._process.poll()
            if code is not None:
                raise self._start_error(f"tritonserver exited with status {code} while starting")
            if self._http_status("/v2/health/ready") == 200:
                return
            if time.monotonic() > deadline:
                raise self._start_error(
                    f"tritonserver was not ready within {self.startup_timeout_s:g} s"
                )
            time.sleep(0.05)

    def _start_error(self, message: str) -> TritonStartError:
        text = self.run_log_text()
        excerpt = log_excerpt(text)
        error_type = PortInUseError if "already in use" in text else TritonStartError
        return error_type(message, self.log_path, excerpt)

    def _http_status(self, path: str, method: str = "GET") -> int | None:
        request = urllib.request.Request(self.http_url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            error.close()
            return int(error.code)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    # -- logs and repository control -------------------------------------------------------

    def log_text(self) -> str:
        """The server log so far ('' before the first start)."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(errors="replace")

    def run_log_text(self) -> str:
        """The log of the current (or last) run only: a restart appends to the log."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    def load_model(self, name: str) -> None:
        """(Re)load a model, picking up new versions, without restarting the server.

        Needs ``model_control="explicit"``. Raises :class:`TritonError` with the log's
        relevant lines if the model fails to load; the previously loaded version keeps serving.
        """
        self._repository_call(name, "load")

    def unload_model(self, name: str) -> None:
        self._repository_call(name, "unload")

    def _repository_call(self, name: str, action: str) -> None:
        if not self.is_running():
            raise TritonError("the server is not running")
        if self.model_control != "explicit":
            raise TritonError(f"{action}_model needs model_control='explicit'")
        url = f"{self.http_url}/v2/repository/models/{name}/{action}"
        request = urllib.request.Request(url, data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.startup_timeout_s):
                return
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            error.close()
            raise TritonError(
                f"failed to {action} model {name!r}: {body}\n--- {self.log_path} ---\n"
                + log_excerpt(self.log_text(), about=f"'{name}'")
            ) from None
