"""Starting and stopping the real embedded tritonserver, and every way a start can fail.

These servers load no Python model unless a test needs one (a Python-backend stub costs
seconds), so each start here takes well under a second.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy
import pytest

from adrank.ports import free_port, port_is_free
from adrank.triton.model_config import write_model_config
from adrank.triton.server import (
    EmbeddedTriton,
    PortInUseError,
    TritonError,
    TritonInstall,
    TritonNotFoundError,
    TritonStartError,
    check_numpy_for_stub,
    log_excerpt,
)

pytestmark = pytest.mark.triton


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose; /proc says which it is.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def wait_dead(pid: int, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def empty_repository(tmp_path) -> Path:
    (tmp_path / "models").mkdir()
    return tmp_path / "models"


def test_start_serves_on_loopback_and_stop_ends_the_process(empty_repository, tmp_path):
    log_path = tmp_path / "logs" / "triton.log"
    server = EmbeddedTriton(empty_repository, models=[], log_path=log_path)
    server.start()
    try:
        assert server.is_running()
        assert server.grpc_port != server.http_port
        assert server.grpc_url == f"127.0.0.1:{server.grpc_port}"
        assert server._http_status("/v2/health/live") == 200
        pid = server.pid
    finally:
        server.stop()
    assert not server.is_running()
    assert server.pid is None
    assert wait_dead(pid)
    assert "Started GRPCInferenceService at 127.0.0.1" in log_path.read_text()
    server.stop()  # a second stop is a no-op


def test_context_manager_stops_the_server_when_the_body_raises(empty_repository):
    server = EmbeddedTriton(empty_repository, models=[])
    pids = []

    def serve_and_fail() -> None:
        with server:
            pids.append(server.pid)
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        serve_and_fail()
    assert wait_dead(pids[0])
    assert server.workdir is None  # the temporary work directory is removed


def test_the_server_can_be_restarted(empty_repository):
    server = EmbeddedTriton(empty_repository, models=[])
    with server:
        first = server.pid
    with server:
        assert server.pid != first
        assert server.is_running()


def test_starting_twice_is_an_error(empty_repository):
    with (
        EmbeddedTriton(empty_repository, models=[]) as server,
        pytest.raises(TritonError, match="already running"),
    ):
        server.start()


def test_the_server_dies_with_its_parent(empty_repository, tmp_path):
    """A parent killed with SIGKILL runs no cleanup: the server must still go."""
    pid_file = tmp_path / "pid"
    script = textwrap.dedent(
        f"""
        import pathlib, time
        from adrank.triton.server import EmbeddedTriton
        server = EmbeddedTriton(
            {str(empty_repository)!r}, models=[], workdir={str(tmp_path / "work")!r}
        ).start()
        pathlib.Path({str(pid_file)!r}).write_text(str(server.pid))
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert parent.poll() is None, "the parent exited before starting the server"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server_pid = int(pid_file.read_text())
        assert pid_alive(server_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert wait_dead(server_pid), "tritonserver outlived its parent"


def test_a_port_in_use_is_named(empty_repository):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedTriton(empty_repository, models=[], grpc_port=port)
        with pytest.raises(
            PortInUseError, match=f"gRPC port {port} on 127.0.0.1 is already in use"
        ):
            server.start()
    assert not server.is_running()


def test_a_port_taken_while_starting_is_reported_with_the_log(empty_repository, monkeypatch):
    """The race the pre-check cannot see: the server's own bind fails."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr("adrank.triton.server.port_is_free", lambda host, port: True)
        server = EmbeddedTriton(
            empty_repository, models=[], grpc_port=port, workdir=empty_repository.parent / "work"
        )
        with pytest.raises(PortInUseError, match=rf"exited with status 1(.|\n)*{port}"):
            server.start()
    assert not server.is_running()


def test_a_missing_model_fails_the_start_with_the_log_lines(empty_repository):
    server = EmbeddedTriton(
        empty_repository, models=["no_such_model"], workdir=empty_repository.parent / "work"
    )
    with pytest.raises(TritonStartError, match="exited with status") as caught:
        server.start()
    assert "no_such_model" in caught.value.log_excerpt
    assert "CudaDriverHelper" not in caught.value.log_excerpt  # noise is left out
    assert caught.value.log_path is not None
    assert caught.value.log_path.is_file()
    assert not server.is_running()


def test_a_model_with_an_invalid_config_fails_the_start(empty_repository):
    write_model_config(empty_repository / "ranker", embedding_dim=4, dense_dim=1)
    (empty_repository / "ranker" / "1").mkdir()
    config = empty_repository / "ranker" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size", "max_batch_sise"))
    with pytest.raises(TritonStartError, match="ranker") as caught:
        EmbeddedTriton(empty_repository, workdir=empty_repository.parent / "work").start()
    assert "max_batch_sise" in caught.value.log_excerpt


def test_a_missing_binary_is_named(tmp_path):
    with pytest.raises(
        TritonNotFoundError, match=r"tritonserver binary not found at .*bin/tritonserver"
    ):
        TritonInstall.find(tmp_path)


def test_a_missing_stub_for_this_python_is_named(tmp_path):
    real = TritonInstall.find()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tritonserver").symlink_to(real.binary)
    (tmp_path / "backends").symlink_to(real.python_backend.parent)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    with pytest.raises(TritonNotFoundError, match=f"Python backend stub for Python {version}"):
        TritonInstall.find(tmp_path)


def test_a_missing_pytriton_wheel_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytriton", None)
    with pytest.raises(TritonNotFoundError, match="needs the nvidia-pytriton wheel"):
        TritonInstall.find()


def test_numpy_2_is_refused(monkeypatch):
    monkeypatch.setattr(numpy, "__version__", "2.1.0")
    with pytest.raises(TritonError, match=r"numpy 2.1.0 is installed.*pip install 'numpy<2'"):
        check_numpy_for_stub()


def test_a_missing_repository_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model repository not found"):
        EmbeddedTriton(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model_control": "sometimes"}, "model_control must be 'explicit', 'poll' or 'none'"),
        ({"grpc_port": 70000}, r"grpc_port must be an int in \[0, 65535\], got 70000"),
        ({"http_port": -1}, "http_port must be an int"),
    ],
)
def test_bad_server_settings_are_rejected(empty_repository, kwargs, match):
    with pytest.raises(ValueError, match=match):
        EmbeddedTriton(empty_repository, **kwargs)


def test_repository_calls_need_a_running_explicit_server(empty_repository):
    with pytest.raises(TritonError, match="not running"):
        EmbeddedTriton(empty_repository).load_model("ranker")
    with (
        EmbeddedTriton(empty_repository, model_control="none") as server,
        pytest.raises(TritonError, match="needs model_control='explicit'"),
    ):
        server.load_model("ranker")


def test_free_port_can_be_bound():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


def test_a_port_is_free_only_without_a_listener():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
    assert port_is_free("127.0.0.1", port)


def test_log_excerpt_keeps_the_error_lines():
    log = "\n".join(
        [
            'I1 model_lifecycle.cc] "loading: a:1"',
            'E1 server.cc:241] "CudaDriverHelper has not been initialized."',
            "E1 model_lifecycle.cc] \"failed to load 'a' version 1: bad\"",
            "E1 model_lifecycle.cc] \"failed to load 'b' version 1: worse\"",
            "I1 tail",
        ]
    )
    assert log_excerpt(log).splitlines() == [
        "E1 model_lifecycle.cc] \"failed to load 'a' version 1: bad\"",
        "E1 model_lifecycle.cc] \"failed to load 'b' version 1: worse\"",
    ]
    assert (
        log_excerpt(log, about="'b'")
        == "E1 model_lifecycle.cc] \"failed to load 'b' version 1: worse\""
    )
    assert log_excerpt("I1 one\nI1 two\nI1 three", max_lines=2) == "I1 two\nI1 three"


def test_a_killed_server_leaves_no_shared_memory_behind(empty_repository):
    """SIGKILL gives the Python backend no chance to unlink its pools; stop() does it."""
    server = EmbeddedTriton(empty_repository, models=[]).start()
    leftover = Path("/dev/shm") / (server._shm_prefix() + "pool_0")
    try:
        leftover.write_bytes(b"\0" * 64)  # what a killed backend leaves
        os.killpg(server.pid, signal.SIGKILL)
    finally:
        server.stop()
    assert not leftover.exists()
