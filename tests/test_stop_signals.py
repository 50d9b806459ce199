"""StopSignals: a signal stops the wait, a dead server ends it, the old handlers come back."""

from __future__ import annotations

import os
import signal
import threading

from adrank.stop_signals import StopSignals


def test_sigterm_ends_the_wait_and_the_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopSignals() as stop:
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
        assert stop.wait(lambda: True, poll_s=0.02) is True
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_server_that_ends_ends_the_wait() -> None:
    calls = iter([True, True, False])
    with StopSignals() as stop:
        assert stop.wait(lambda: next(calls), poll_s=0.01) is False


def test_only_the_named_signals_are_taken() -> None:
    interrupt, terminate = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopSignals(signal.SIGTERM):
        assert signal.getsignal(signal.SIGINT) is interrupt
        assert signal.getsignal(signal.SIGTERM) is not terminate
