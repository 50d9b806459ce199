"""``adrank learn`` and ``adrank serve --online`` as a user runs them, for the online benches.

Glossary: ``DATA`` the growing Parquet folder ``adrank learn`` reads; ``OUT`` where it
publishes; ``publication`` a number N under ``OUT/publications``, named by a served answer as
``model_version = "<dense>+online.N"``; ``sources`` the files a publication learned from (its
``dense.json``).

:class:`LearnAndServe` starts both as processes of their own (the server on a loopback port,
ready when ``/readyz`` says so), and stops both on exit. Files go into DATA with
:func:`write_parquet` (written under a dot name, then renamed: the learner reads a file whole).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pyarrow as pa
import pyarrow.parquet as pq

from adrank.ports import free_port


def write_parquet(folder: Path, name: str, columns: dict[str, Any]) -> float:
    """Writes ``folder/name`` whole (a dot name, then a rename); returns when it landed."""
    tmp = folder / f".{name}"
    pq.write_table(pa.table(columns), tmp)
    os.rename(tmp, folder / name)
    return time.time()


def served_publication(model_version: str) -> int:
    """The online publication a served answer names; -1 when it names none."""
    _, _, number = model_version.partition("+online.")
    return int(number) if number else -1


class LearnAndServe:
    """``adrank learn DATA --out OUT`` and ``adrank serve --online OUT``; a context manager.

    ``learn_flags``: ``--fields``, ``--label`` and the rest; ``serve_flags``: what the server
    serves (``--workspace``, or ``--artifacts`` and ``--catalog``, ``--repository``, ...).
    """

    def __init__(
        self,
        data: Path,
        out: Path,
        learn_flags: list[str],
        serve_flags: list[str],
        *,
        serve_poll_s: float = 0.1,
        log_dir: Path | None = None,
    ) -> None:
        self.data, self.out = data, out
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        logs = log_dir or out.parent
        self._logs = [open(logs / f"{name}.log", "w") for name in ("learn", "serve")]  # noqa: SIM115
        python = [sys.executable, "-m", "adrank.cli"]
        self._commands = [
            [*python, "learn", str(data), "--out", str(out), *learn_flags],
            [
                *python,
                "serve",
                f"--port={self.port}",
                f"--online={out}",
                f"--online-poll-seconds={serve_poll_s}",
                *serve_flags,
            ],
        ]
        self._processes: list[subprocess.Popen] = []
        self.client = httpx.Client(timeout=60)

    def __enter__(self) -> LearnAndServe:
        try:
            for command, log in zip(self._commands, self._logs, strict=True):
                self._processes.append(
                    subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                )
            self._wait_ready(timeout_s=300)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            for process, log in zip(self._processes, self._logs, strict=True):
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[3]} exited; see {log.name}")
            with contextlib.suppress(httpx.TransportError):
                if self.client.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"adrank serve was not ready in {timeout_s} s")
            time.sleep(0.2)

    def __exit__(self, *exc_info: object) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._logs:
            log.close()
        self.client.close()

    def rank(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.client.post(f"{self.url}/v1/rank", json=body)
        if answer.status_code != 200:
            raise RuntimeError(f"POST /v1/rank answered {answer.status_code}: {answer.text}")
        return answer.json()

    def publication_of(self, name: str) -> int | None:
        """The publication that learned from file ``name``, once there is one."""
        folder = self.out / "publications"
        for entry in sorted(folder.glob("[0-9]*"), reverse=True):
            try:
                dense = json.loads((entry / "dense.json").read_text())
            except FileNotFoundError:  # an old window, deleted as a snapshot was published
                continue
            if name in dense["sources"]:
                return int(entry.name)
        return None

    def wait_served(self, publication: int, body: dict[str, Any], timeout_s: float = 120.0):
        """Ranks ``body`` until an answer names ``publication`` or later; that answer and the
        time it came back."""
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self.rank(body)
            if served_publication(answer["model_version"]) >= publication:
                return answer, time.time()
            if time.monotonic() > deadline:
                raise RuntimeError(f"publication {publication} not served in {timeout_s} s")
            time.sleep(0.005)
