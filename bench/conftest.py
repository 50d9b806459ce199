"""Shared reporting for the benchmark suite.

Each benchmark names its comparison group and its role::

    benchmark.group = "hash strings 1M"
    benchmark.extra_info.update(role="adrank", items=1_000_000)    # or role="baseline"

After the run, a table per group gives the median time and throughput (items per second) of
each entry, and each non-baseline entry's speed relative to every baseline of the same group,
measured in the same run (the first listed is the strongest). Ratios are
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
        write(f"\n[{group}]" + ("" if baselines else "  (no baseline in this group)"))
        for b in sorted(benches, key=lambda b: b.stats.median):
            median = b.stats.median
            items = b.extra_info.get("items")
            rate = f"{items / median / 1e6:9.2f} M items/s" if items else ""
            write(
                f"  {b.name:<45} {b.extra_info.get('role', '?'):<9} {median * 1e6:12.1f} us {rate}"
            )
            for line in b.extra_info.get("report", []):
                write(f"    {line}")
            if b.extra_info.get("role") != "baseline":
                for base in sorted(baselines, key=lambda x: x.stats.median):
                    write(f"      {base.stats.median / median:8.2f}x  vs {base.name}")
