"""``adrank serve`` as a user runs it: a process of its own on a loopback port, ready when its
``/readyz`` says so."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import httpx2 as httpx


def start_serve(*flags: str, port: int) -> tuple[subprocess.Popen, str]:
    """Starts ``adrank serve --port=PORT FLAGS`` and waits until it is ready (120 s at most)."""
    command = [sys.executable, "-m", "adrank.cli", "serve", f"--port={port}", *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise AssertionError(f"adrank serve exited: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("adrank serve was not ready in 120 s")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        time.sleep(0.2)
