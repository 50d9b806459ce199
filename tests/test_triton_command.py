"""``adrank triton`` from the shell: serve until SIGTERM, the --check smoke run, clear errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from adrank.cli import main
from adrank.triton.testing import DemoDenseRanker, make_model_repository

pytestmark = pytest.mark.triton


def test_serves_until_sigterm_then_stops_the_server(tmp_path):
    (tmp_path / "models").mkdir()
    command = [
        sys.executable, "-m", "adrank.cli", "triton",
        "--model-repository", str(tmp_path / "models"),
        "--grpc-port", "0", "--http-port", "0", "--log", str(tmp_path / "triton.log"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert re.match(r"serving .*models on grpc 127\.0\.0\.1:\d+, http http://", line), line
        assert "Ctrl-C or SIGTERM" in process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    log = (tmp_path / "triton.log").read_text()
    server_pid = int(re.search(r"^I\d+ [\d:.]+ +(\d+) ", log, re.MULTILINE).group(1))
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{server_pid}"):
        assert time.monotonic() < deadline, "tritonserver still running after the command exited"
        time.sleep(0.05)


def test_check_scores_random_candidates_on_every_model(tmp_path, capsys):
    make_model_repository(tmp_path, DemoDenseRanker(8, 2), embedding_dim=8, dense_dim=2)
    code = main(
        ["triton", "--model-repository", str(tmp_path), "--grpc-port", "0", "--http-port", "0",
         "--check", "--check-rows", "16"]
    )  # fmt: skip
    assert code == 0
    assert re.search(r"ranker: 16 candidates, E=8 N=2: p50 [\d.]+ ms", capsys.readouterr().out)


def test_a_missing_repository_is_a_clear_error(tmp_path, capsys):
    assert main(["triton", "--model-repository", str(tmp_path / "nowhere")]) == 1
    assert "adrank triton: model repository not found" in capsys.readouterr().err


def _server_pids(log: Path) -> list[int]:
    """The tritonserver pids in the order they started, from the (appended) server log."""
    text = log.read_text() if log.is_file() else ""
    pids = re.findall(r"^I\d+ [\d:.]+ +(\d+) ", text, re.MULTILINE)
    return list(dict.fromkeys(int(pid) for pid in pids))


def _ready(http_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{http_url}/v2/health/ready", timeout=5) as ready:
            return ready.status == 200
    except OSError:
        return False


def _wait(condition, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:g} s"
        time.sleep(0.05)


def test_a_killed_server_is_restarted_on_its_ports_until_the_tries_run_out(tmp_path):
    (tmp_path / "models").mkdir()
    log = tmp_path / "triton.log"
    command = [
        sys.executable, "-m", "adrank.cli", "triton",
        "--model-repository", str(tmp_path / "models"), "--max-restarts", "1",
        "--grpc-port", "0", "--http-port", "0", "--log", str(log),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []  # the supervisor's log lines, as they come
    reader = threading.Thread(target=lambda: err.extend(process.stderr), daemon=True)
    reader.start()
    try:
        line = process.stdout.readline()
        http_url = re.search(r"http (http://[\d.:]+)", line).group(1)
        first = _server_pids(log)[0]
        os.kill(first, signal.SIGKILL)
        _wait(lambda: any("tritonserver back (pid" in e for e in err), "the restart")
        assert _ready(http_url)  # on the same HTTP port as before the kill
        second = _server_pids(log)[1]
        os.kill(second, signal.SIGKILL)
        assert process.wait(timeout=60) == 1
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
        reader.join(timeout=10)
        process.stderr.close()
    text = "".join(err)
    assert f"tritonserver (pid {first}) was killed by SIGKILL" in text
    assert f"tritonserver back (pid {second})" in text
    assert f"adrank triton: tritonserver (pid {second}) was killed by SIGKILL and could not" in text
    assert "could not be brought back: 1 of 1 restarts allowed in 300 s used" in text


def test_bad_max_restarts_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "models").mkdir()
    code = main(["triton", "--model-repository", str(tmp_path / "models"), "--max-restarts", "-1"])
    assert code == 1
    assert "adrank triton: max_restarts must be an int >= 0, got -1" in capsys.readouterr().err


def test_serve_refuses_an_unknown_precision(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--precision", "int4"])
    assert exit_info.value.code == 2
    assert "argument --precision: invalid choice: 'int4'" in capsys.readouterr().err
