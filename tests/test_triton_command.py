"""``adrank triton`` from the shell: serve until SIGTERM, the --check smoke run, clear errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

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
