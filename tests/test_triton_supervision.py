"""The supervised embedded Triton: a dead server is reaped, cleaned up and restarted.

The server is killed with SIGKILL (what the OOM killer does): it leaves a zombie, its
Python-backend stubs and their ``/dev/shm`` pools behind unless the supervisor deals with them.
The service-level tests kill it under HTTP load and count the answers.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import urllib.request
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest

from adrank.service.schemas import rank_request_json
from adrank.service.stack import HttpServer, serving_stack
from adrank.triton.client import RankerClient, RankerClientError
from adrank.triton.kill_drill import kill_under_load
from adrank.triton.server import EmbeddedTriton, TritonError
from adrank.triton.supervisor import RestartPolicy, TritonSupervisor
from adrank.triton.testing import DemoDenseRanker, make_model_repository
from adrank.workspace import sample_requests

pytestmark = pytest.mark.triton

E, N = 8, 2


def alive(pid: int) -> bool:
    """Running and not a zombie (a zombie is a process nobody reaped)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def stub_pids(server: EmbeddedTriton) -> list[int]:
    """The server's Python-backend stubs: the other members of its process group."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == server.pid and int(stat.parent.name) != server.pid:
            members.append(int(stat.parent.name))
    return members


def shm_regions(server: EmbeddedTriton) -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob(server._shm_prefix() + "*"))


def wait_for(condition, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout_s:g} s"
        time.sleep(0.05)


def http_ready(server: EmbeddedTriton) -> bool:
    try:
        with urllib.request.urlopen(server.http_url + "/v2/health/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.fixture
def empty_repository(tmp_path) -> Path:
    (tmp_path / "models").mkdir()
    return tmp_path / "models"


@pytest.fixture(scope="module")
def model_repository(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    return make_model_repository(root, DemoDenseRanker(E, N), embedding_dim=E, dense_dim=N)


# -- the supervisor on its own ------------------------------------------------------------


def test_a_killed_server_is_reaped_and_restarted_on_the_same_ports(empty_repository, caplog):
    caplog.set_level(logging.INFO, logger="adrank.triton")
    server = EmbeddedTriton(empty_repository, models=[])
    with TritonSupervisor(server, RestartPolicy(backoff_s=0.05)) as supervisor:
        old_pid, ports = server.pid, (server.grpc_port, server.http_port)
        assert supervisor.liveness() == (True, f"tritonserver (pid {old_pid}) serving on "
                                         f"{server.grpc_url}")  # fmt: skip
        os.kill(old_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: supervisor.recoveries, what="a restart")
        recovery = supervisor.recoveries[0]
        # Polled every 0.1 s; the bound is generous for a shared machine.
        assert recovery.died_at - killed_at < 2.0
        assert recovery.exit_status == -signal.SIGKILL
        assert recovery.tries == 1
        assert recovery.back_at is not None
        assert server.pid != old_pid
        assert (server.grpc_port, server.http_port) == ports
        assert http_ready(server)
        assert supervisor.state == "serving"
        assert supervisor.alive()
        new_pid = server.pid
        assert not alive(old_pid)
        with pytest.raises(ChildProcessError):  # reaped: no longer our child at all
            os.waitpid(old_pid, os.WNOHANG)
    assert supervisor.state == "stopped"
    assert not supervisor.alive()
    assert not server.is_running()
    log = caplog.text
    assert f"tritonserver (pid {old_pid}) was killed by SIGKILL" in log
    assert f"reaped tritonserver pid {old_pid}" in log
    assert "restarting tritonserver on grpc" in log
    assert "(try 1 of 5 in 300 s)" in log
    assert f"tritonserver back (pid {new_pid}), " in log


def test_stubs_and_shared_memory_go_with_the_dead_server_and_the_client_reconnects(
    model_repository,
):
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((64, E), dtype=np.float32)
    dense = rng.standard_normal((64, N), dtype=np.float32)
    server = EmbeddedTriton(model_repository)
    with (
        TritonSupervisor(server, RestartPolicy(backoff_s=0.05)) as supervisor,
        RankerClient(server.grpc_url, timeout_s=10.0, shm_threshold_bytes=0) as client,
    ):
        expected = client.predict(embeddings, dense).p_ctr
        old_pid, old_stubs, old_regions = server.pid, stub_pids(server), shm_regions(server)
        assert old_stubs
        assert old_regions
        os.kill(old_pid, signal.SIGKILL)  # the server only: its stub is left running
        wait_for(lambda: supervisor.recoveries, what="a restart")
        assert not any(alive(pid) for pid in old_stubs)
        assert not set(old_regions) & set(shm_regions(server))
        assert stub_pids(server)
        assert not set(stub_pids(server)) & set(old_stubs)
        answers = []
        for _ in range(3):  # the first call may find its region unknown to the new server
            try:
                answers.append(client.predict(embeddings, dense).p_ctr)
            except RankerClientError as error:
                answers.append(error)
        assert not isinstance(answers[1], Exception), answers
        np.testing.assert_allclose(answers[-1], expected, atol=1e-6)
    assert not shm_regions(server)


def test_a_repository_that_cannot_load_any_more_uses_up_the_tries(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="adrank.triton")
    repository = make_model_repository(
        tmp_path / "models", DemoDenseRanker(E, N), embedding_dim=E, dense_dim=N
    )
    server = EmbeddedTriton(repository)
    policy = RestartPolicy(max_restarts=2, backoff_s=0.05)
    with TritonSupervisor(server, policy) as supervisor:
        (repository / "ranker" / "config.pbtxt").unlink()
        os.kill(server.pid, signal.SIGKILL)
        wait_for(lambda: supervisor.state == "given_up", what="giving up")
        live, reason = supervisor.liveness()
        assert not live
        assert not supervisor.alive()
        assert "was killed by SIGKILL and could not be brought back" in reason
        assert "2 of 2 restarts allowed in 300 s used" in reason
        assert "last error: tritonserver exited with status" in reason
        assert supervisor.recoveries[-1].back_at is None
        assert supervisor.recoveries[-1].tries == 2
        assert not server.is_running()
    assert caplog.text.count("restarting tritonserver failed") == 2
    assert "giving up on tritonserver" in caplog.text


def test_stop_does_not_wait_out_the_backoff(empty_repository):
    server = EmbeddedTriton(empty_repository, models=[])
    supervisor = TritonSupervisor(server, RestartPolicy(backoff_s=120, max_backoff_s=120))
    supervisor.start()
    os.kill(server.pid, signal.SIGKILL)
    wait_for(lambda: supervisor.state == "restarting", what="the death noticed")
    started = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - started < 60  # not the 120 s backoff
    assert supervisor.state == "stopped"
    assert not server.is_running()
    assert server.workdir is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_restarts": -1}, "max_restarts must be an int >= 0, got -1"),
        ({"max_restarts": 1.5}, "max_restarts must be an int >= 0, got 1.5"),
        ({"max_restarts": True}, "max_restarts must be an int >= 0, got True"),
        ({"window_s": 0}, "window_s must be > 0, got 0"),
        ({"backoff_s": -1.0}, "backoff_s must be >= 0, got -1.0"),
        ({"backoff_s": float("nan")}, "backoff_s must be >= 0, got nan"),
        ({"backoff_s": 2.0, "max_backoff_s": 1.0}, r"max_backoff_s must be >= backoff_s \(2.0\)"),
    ],
)
def test_bad_restart_policies_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RestartPolicy(**kwargs)


def test_a_supervisor_needs_an_embedded_triton_and_a_policy(empty_repository):
    with pytest.raises(TypeError, match="server must be an EmbeddedTriton, got str"):
        TritonSupervisor("127.0.0.1:8001")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="policy must be a RestartPolicy, got dict"):
        TritonSupervisor(EmbeddedTriton(empty_repository), {"max_restarts": 1})  # type: ignore[arg-type]


def test_restart_needs_a_server_that_ran_and_is_down(empty_repository):
    server = EmbeddedTriton(empty_repository, models=[])
    with pytest.raises(TritonError, match="restart needs a server that was started"):
        server.restart()
    with server:
        with pytest.raises(TritonError, match="already running"):
            server.restart()
        os.kill(server.pid, signal.SIGKILL)
        wait_for(lambda: not server.is_running(), what="the death")
        server.cancel_start()
        with pytest.raises(TritonError, match="the restart was cancelled"):
            server.restart()


# -- the service: adrank serve's stack ----------------------------------------------------


@pytest.fixture(scope="module")
def workspace(serving_workspace):
    return serving_workspace


@pytest.fixture(scope="module")
def payload(workspace):
    return rank_request_json(sample_requests(workspace, 1, candidates=300, k=6, seed=5)[0])


def test_the_service_answers_200_again_after_triton_is_killed_under_load(workspace, payload):
    with (
        serving_stack(
            workspace.artifacts_dir, workspace.catalog_path, repository=workspace.repository
        ) as stack,
        HttpServer(stack.app) as http,
    ):
        server = stack.triton
        old_pid, old_stubs, old_regions = server.pid, stub_pids(server), shm_regions(server)
        readiness: list[int] = []

        def kill() -> None:
            os.kill(old_pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and 503 not in readiness:
                readiness.append(httpx.get(f"{http.url}/readyz", timeout=5).status_code)

        drill = kill_under_load(http.url, payload, kill, clients=3, timeout_s=30)
        print(f"\nrecovered {drill.recovery_s} s after the kill; answers {drill.statuses}")
        assert drill.recovery_s is not None
        assert drill.recovery_s < 30
        assert set(drill.statuses) <= {200, 503}
        failures = drill.failures()
        assert failures
        assert all(a.status == 503 for a in failures)
        assert all(
            a.error.startswith("model_unavailable: ranking model unavailable") for a in failures
        )
        assert 503 in readiness  # /readyz followed the model down...
        assert httpx.get(f"{http.url}/readyz", timeout=5).status_code == 200  # ...and back up
        assert httpx.get(f"{http.url}/healthz", timeout=5).json() == {"status": "ok"}
        assert server.pid != old_pid
        assert not alive(old_pid)
        assert not any(alive(pid) for pid in old_stubs)
        assert old_regions
        assert not set(old_regions) & set(shm_regions(server))


def test_healthz_fails_when_triton_cannot_be_brought_back(workspace, payload):
    with (
        serving_stack(
            workspace.artifacts_dir,
            workspace.catalog_path,
            repository=workspace.repository,
            restart_policy=RestartPolicy(max_restarts=0),
        ) as stack,
        HttpServer(stack.app) as http,
    ):
        assert httpx.get(f"{http.url}/healthz", timeout=5).status_code == 200
        os.kill(stack.triton.pid, signal.SIGKILL)
        wait_for(lambda: httpx.get(f"{http.url}/healthz", timeout=5).status_code == 503)
        health = httpx.get(f"{http.url}/healthz", timeout=5).json()
        assert health["error"] == "not_live"
        assert "could not be brought back: 0 of 0 restarts allowed" in health["detail"]
        assert httpx.get(f"{http.url}/readyz", timeout=5).status_code == 503
        answer = httpx.post(f"{http.url}/v1/rank", json=payload, timeout=30)
        assert answer.status_code == 503
        assert answer.json()["error"] == "model_unavailable"
