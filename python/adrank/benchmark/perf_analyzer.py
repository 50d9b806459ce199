"""Triton's own load generator, ``perf_analyzer``, against a served ranker: figures for the report.

Glossary: rows: the batch of one request (``-b``: candidates); concurrency: requests in flight;
p50/p99: client-side latency percentiles of one request in microseconds, as perf_analyzer
reports them; ``server_compute_infer_us``: the server's mean model time per request.

perf_analyzer ships in the ``tritonclient`` 2.51 wheel (``*.data/data/bin/perf_analyzer``;
``make perf-analyzer`` puts it in ``.venv/bin``). It needs Debian's ``libb64-0d`` and a
``libcudart.so.12`` even on a CPU host: the one bundled in ``nvidia_pytriton.libs/`` works
through a symlink on ``LD_LIBRARY_PATH``, which :func:`run_perf_analyzer` makes in a temporary
folder. Inputs are random fp32 (perf_analyzer's default) sent through Triton's system shared
memory, as adrank's own client sends large requests.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PerfAnalyzerRow", "find_perf_analyzer", "run_perf_analyzer"]

ROWS = (1, 1000)
CONCURRENCY = (1, 2, 4)


@dataclasses.dataclass(frozen=True)
class PerfAnalyzerRow:
    """One perf_analyzer measurement: requests of ``rows`` rows at ``concurrency``."""

    rows: int
    concurrency: int
    requests_per_s: float
    p50_us: float
    p90_us: float
    p99_us: float
    server_compute_infer_us: float


def find_perf_analyzer() -> Path:
    """The perf_analyzer binary: on ``PATH``, or beside the running Python."""
    found = shutil.which("perf_analyzer")
    if found:
        return Path(found)
    beside = Path(sys.executable).parent / "perf_analyzer"
    if beside.is_file():
        return beside
    raise FileNotFoundError(
        "perf_analyzer not found on PATH or beside the Python (it ships in the tritonclient "
        "2.51 wheel: `make perf-analyzer`)"
    )


def _cudart() -> Path:
    import pytriton

    libs = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"
    found = sorted(libs.glob("libcudart*.so.12*"))
    if not found:
        raise FileNotFoundError(f"no libcudart.so.12 in {libs} (nvidia-pytriton's libraries)")
    return found[0]


def run_perf_analyzer(
    grpc_url: str,
    model: str,
    *,
    rows: Sequence[int] = ROWS,
    concurrency: Sequence[int] = CONCURRENCY,
    measurement_ms: int = 2000,
    max_trials: int = 4,
    binary: str | Path | None = None,
    timeout_s: float = 300.0,
) -> list[PerfAnalyzerRow]:
    """Run perf_analyzer (gRPC, system shared memory) for every ``rows`` x ``concurrency``.

    Raises FileNotFoundError when the binary or its libcudart is missing, RuntimeError with
    perf_analyzer's own message when a run fails.
    """
    for name, values in [("rows", rows), ("concurrency", concurrency)]:
        if not values or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values
        ):
            raise ValueError(f"{name} must list integers >= 1, got {list(values)!r}")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 3:
        # perf_analyzer calls a measurement stable over its last three windows
        raise ValueError(f"max_trials must be an integer >= 3, got {max_trials!r}")
    binary = Path(binary) if binary is not None else find_perf_analyzer()
    results = []
    with tempfile.TemporaryDirectory(prefix="adrank-perf-analyzer-") as tmp:
        libraries = Path(tmp) / "lib"
        libraries.mkdir()
        (libraries / "libcudart.so.12").symlink_to(_cudart())
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in [str(libraries), env.get("LD_LIBRARY_PATH", "")] if p
        )
        for batch in rows:
            for level in concurrency:
                report = Path(tmp) / f"b{batch}_c{level}.csv"
                command = [
                    str(binary),
                    "-m",
                    model,
                    "-u",
                    grpc_url,
                    "-i",
                    "grpc",
                    "-b",
                    str(batch),
                    f"--concurrency-range={level}:{level}",
                    "--shared-memory=system",
                    f"--output-shared-memory-size={max(batch * 4, 4096)}",
                    f"--measurement-interval={measurement_ms}",
                    f"--max-trials={max_trials}",
                    # A shared machine rarely holds 10% between windows: take the windows as
                    # they come rather than fail the run (the trials still run).
                    "--stability-percentage=1000",
                    "--percentile=50",
                    "-f",
                    str(report),
                    "--verbose-csv",
                ]
                done = subprocess.run(
                    command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
                )
                if done.returncode != 0 or not report.exists():
                    tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
                    raise RuntimeError(
                        f"perf_analyzer failed ({batch} rows, concurrency {level}): "
                        + " | ".join(tail)
                    )
                results.append(_parse(report, batch, level))
    return results


def _parse(report: Path, rows: int, concurrency: int) -> PerfAnalyzerRow:
    with report.open() as f:
        [line] = [r for r in csv.DictReader(f) if r.get("Concurrency") == str(concurrency)]
    return PerfAnalyzerRow(
        rows=rows,
        concurrency=concurrency,
        requests_per_s=float(line["Inferences/Second"]) / rows,
        p50_us=float(line["p50 latency"]),
        p90_us=float(line["p90 latency"]),
        p99_us=float(line["p99 latency"]),
        server_compute_infer_us=float(line["Server Compute Infer"]),
    )
