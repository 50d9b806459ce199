"""Triton's perf_analyzer against the real embedded server, its errors, and its report table."""

from __future__ import annotations

import pytest

from adrank.benchmark.perf_analyzer import PerfAnalyzerRow, find_perf_analyzer, run_perf_analyzer
from adrank.benchmark.report import perf_analyzer_table
from adrank.ports import free_port
from adrank.triton.testing import DemoDenseRanker, make_model_repository, serve_ranker

E, N = 16, 4


@pytest.mark.triton
def test_perf_analyzer_measures_the_served_model(tmp_path):
    repository = make_model_repository(
        tmp_path, DemoDenseRanker(E, N), embedding_dim=E, dense_dim=N
    )
    with serve_ranker(repository) as (server, _):
        rows = run_perf_analyzer(
            server.grpc_url, "ranker", rows=[1, 64], concurrency=[1, 2], measurement_ms=300
        )
    assert [(r.rows, r.concurrency) for r in rows] == [(1, 1), (1, 2), (64, 1), (64, 2)]
    for row in rows:
        assert row.requests_per_s > 0
        assert 0 < row.p50_us <= row.p90_us <= row.p99_us
        assert row.server_compute_infer_us > 0


def test_a_failed_run_raises_with_perf_analyzers_message():
    url = f"127.0.0.1:{free_port('127.0.0.1')}"  # nothing listens there
    with pytest.raises(RuntimeError, match=r"perf_analyzer failed \(1 rows, concurrency 1\): .+"):
        run_perf_analyzer(url, "ranker", rows=[1], concurrency=[1], measurement_ms=100)


def test_the_binary_is_found():
    assert find_perf_analyzer().name == "perf_analyzer"


def test_a_missing_binary_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        run_perf_analyzer("127.0.0.1:1", "m", binary=tmp_path / "missing")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rows": []}, r"rows must list integers >= 1, got \[\]"),
        ({"rows": [0]}, r"rows must list integers >= 1, got \[0\]"),
        ({"concurrency": [2, True]}, "concurrency must list integers >= 1"),
        ({"max_trials": 2}, "max_trials must be an integer >= 3, got 2"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_perf_analyzer("127.0.0.1:1", "m", **kwargs)


def test_report_table():
    assert perf_analyzer_table([]) == []
    row = PerfAnalyzerRow(1000, 2, 512.5, 1316.0, 2000.0, 8876.0, 1088.0)
    lines = perf_analyzer_table([row])
    assert lines[0] == "## Triton's perf_analyzer"
    assert "| 1,000 | 2 | 512.5 | 1.32 | 2.00 | 8.88 | 1.09 |" in lines
