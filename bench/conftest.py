"""Shared reporting for the benchmark suite.

Each benchmark names its comparison group and its role::

    benchmark.group = "hash strings 1M"
    benchmark.extra_info.update(role="adrank", items=1_000_000)    # or role="baseline"

After the run, a table per group gives throughput (items per second) and each entry's speed
relative to the strongest baseline of the same group, measured in the same run. Ratios are
what to compare across machines; absolute figures are for this machine only.
"""

from __future__ import annotations

import os
import platform
from collections import defaultdict

import pytest


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    session = terminalreporter.config._benchmarksession  # type: ignore[attr-defined]
    if session is None or not session.benchmarks:
        return
    groups: dict[str, list] = defaultdict(list)
    for bench in session.benchmarks:
        if bench.stats is not None:
            groups[bench.group or bench.name].append(bench)
    write = terminalreporter.write_line
    write("")
    write(f"adrank benchmark ratios on {_machine()}")
    for group, benches in sorted(groups.items()):
        baselines = [b for b in benches if b.extra_info.get("role") == "baseline"]
        best = min((b.stats.median for b in baselines), default=None)
        write(f"\n[{group}]" + ("" if best else "  (no baseline in this group)"))
        for b in sorted(benches, key=lambda b: b.stats.median):
            median = b.stats.median
            items = b.extra_info.get("items")
            rate = f"{items / median / 1e6:10.2f} M items/s" if items else " " * 21
            ratio = f"{best / median:8.2f}x best baseline" if best else ""
            role = b.extra_info.get("role", "?")
            write(f"  {b.name:<60} {role:<9} {median * 1e6:12.1f} us  {rate}  {ratio}")
