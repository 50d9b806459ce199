"""Offline batch work on a local Ray: ranking equal to the in-process Ranker row for row,
training-data preparation equal to the in-process FeaturePipeline bit for bit, every output
partition written once.

One local Ray (2 CPUs, loopback, no dashboard) serves the whole module: starting Ray costs
seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adrank.batch.jobs import JobSpec, prepared_table, requests_of
from adrank.batch.partitions import list_partitions, output_paths, write_once
from adrank.batch.ray_runner import check_workers, run_in_process, run_on_ray
from adrank.cli import main
from adrank.data import SyntheticConfig
from adrank.features.pipeline import FeaturePipeline
from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker
from adrank.workspace import prepare_workspace, sample_requests

ray = pytest.importorskip("ray", reason="Ray is absent: pip install 'adrank[batch]'")

WORLD = SyntheticConfig(
    num_advertisers=8, num_campaigns=16, num_creatives=160, num_users=200, num_categories=4
)
PARTITIONS = 3
# Ray Data's DataContext warns about its own deprecated fields as it builds itself (Ray 2.60).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    return prepare_workspace(
        root, rows=3000, world=WORLD, repository=root / "models", say=lambda _: None
    )


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=128 * 1024**2,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    yield
    ray.shutdown()


def _spec(workspace, kind: str) -> JobSpec:
    return JobSpec(
        kind=kind,
        artifacts_dir=str(workspace.artifacts_dir),
        model_dir=str(workspace.repository / workspace.model_name / str(workspace.version)),
        catalog=str(workspace.catalog_path),
        k=5,
    )


@pytest.fixture(scope="module")
def request_log(workspace, tmp_path_factory) -> Path:
    """Request-log partitions (the columns RequestLog writes that ranking reads)."""
    folder = tmp_path_factory.mktemp("requests")
    requests = sample_requests(workspace, 8 * PARTITIONS, candidates=60, k=5, seed=1)
    for p in range(PARTITIONS):
        rows = [
            {
                "request_id": r.request_id,
                "user": json.dumps(dict(r.user), default=list),
                "context": json.dumps(dict(r.context)),
                "candidates": r.candidates.tolist(),
            }
            for r in requests[p * 8 : (p + 1) * 8]
        ]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"part-{p:06d}.parquet")
    return folder


@pytest.fixture(scope="module")
def feature_rows(workspace, tmp_path_factory) -> Path:
    """The workspace's training log cut into partitions."""
    folder = tmp_path_factory.mktemp("features")
    log = pq.read_table(workspace.root / "log" / "impressions.parquet")
    size = -(-log.num_rows // PARTITIONS)
    for p in range(PARTITIONS):
        (folder / "day=1").mkdir(exist_ok=True)
        pq.write_table(log.slice(p * size, size), folder / "day=1" / f"part-{p}.parquet")
    return folder


def _pairs(source: Path, target: Path) -> list[tuple[Path, Path]]:
    parts = list_partitions(source)
    return list(zip(parts, output_paths(source, target, parts), strict=True))


def test_ranking_on_ray_equals_the_in_process_ranker_row_for_row(
    workspace, request_log, local_ray, tmp_path
) -> None:
    spec = _spec(workspace, "rank")
    seen = []
    done = run_on_ray(
        spec, _pairs(request_log, tmp_path), 2, progress=lambda d, i, n: seen.append((i, n))
    )
    assert seen == [(i, PARTITIONS) for i in range(1, PARTITIONS + 1)]
    assert all(d.written for d in done)
    for d in done:  # where a partition's time went
        assert d.job_s > 0
        assert d.read_s + d.job_s + d.write_s <= d.seconds + 1e-6
    version_dir = workspace.repository / workspace.model_name / str(workspace.version)
    local = Ranker.from_export(
        workspace.artifacts_dir, workspace.catalog_path, TorchScriptModel(version_dir)
    )
    compared = 0
    for part in list_partitions(request_log):
        out = pq.read_table(tmp_path / part.name).to_pylist()
        requests = requests_of(pq.read_table(part), k=5)
        assert [r["request_id"] for r in out] == [r.request_id for r in requests]
        for row, request in zip(out, requests, strict=True):
            expected = local.rank(request)
            assert row["creative_id"] == expected.creative_id.tolist()
            assert row["campaign_id"] == expected.campaign_id.tolist()
            np.testing.assert_allclose(row["ecpm"], expected.ecpm, rtol=1e-5)
            np.testing.assert_allclose(row["price"], expected.price, rtol=1e-5)
            compared += len(expected)
    assert compared > 0


def test_preparation_on_ray_equals_the_in_process_pipeline_bit_for_bit(
    workspace, feature_rows, local_ray, tmp_path
) -> None:
    spec = JobSpec(kind="prepare", artifacts_dir=str(workspace.artifacts_dir))
    pairs = _pairs(feature_rows, tmp_path)
    assert all(d.written for d in run_on_ray(spec, pairs, 2))
    from adrank.artifacts import open_version

    pipeline = FeaturePipeline(open_version(workspace.artifacts_dir).schema)
    whole = pq.read_table(workspace.root / "log" / "impressions.parquet")
    expected = prepared_table(pipeline(whole))
    parts = [pq.read_table(tmp_path / "day=1" / f"part-{p}.parquet") for p in range(PARTITIONS)]
    got = pa.concat_tables(parts)
    assert got.column_names == expected.column_names
    assert "dense" in got.column_names
    for name in got.column_names:
        assert got[name].combine_chunks().equals(expected[name].combine_chunks()), name

    # A second run over the same output writes no partition twice and leaves no temporary.
    stamps = {p: p.stat().st_mtime_ns for _, p in pairs}
    assert not any(d.written for d in run_on_ray(spec, pairs, 1))
    assert {p: p.stat().st_mtime_ns for _, p in pairs} == stamps
    assert not list(tmp_path.rglob("*.tmp"))


def test_scoring_on_ray_equals_scoring_in_process(workspace, feature_rows, local_ray, tmp_path):
    spec = _spec(workspace, "score")
    run_on_ray(spec, _pairs(feature_rows, tmp_path / "ray"), 2)
    run_in_process(spec, _pairs(feature_rows, tmp_path / "here"))
    for part in list_partitions(feature_rows):
        name = part.relative_to(feature_rows)
        on_ray, here = (
            pq.read_table(tmp_path / "ray" / name),
            pq.read_table(tmp_path / "here" / name),
        )
        assert on_ray.num_rows == pq.read_metadata(part).num_rows
        for head in here.column_names:
            np.testing.assert_allclose(on_ray[head].to_numpy(), here[head].to_numpy(), rtol=1e-5)
        assert ((here["p_ctr"].to_numpy() > 0) & (here["p_ctr"].to_numpy() < 1)).all()


def test_write_once_refuses_an_existing_output(tmp_path) -> None:
    table = pa.table({"x": [1, 2]})
    assert write_once(table, tmp_path / "a" / "p.parquet")
    assert not write_once(pa.table({"x": [3]}), tmp_path / "a" / "p.parquet")
    assert pq.read_table(tmp_path / "a" / "p.parquet")["x"].to_pylist() == [1, 2]
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["p.parquet"]


def test_the_command_prepares_in_process(workspace, feature_rows, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "batch",
            "prepare",
            str(feature_rows),
            str(out),
            f"--artifacts={workspace.artifacts_dir}",
            "--in-process",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert f"[{PARTITIONS}/{PARTITIONS}]" in captured.err
    assert "rows/s" in captured.out
    assert len(list(out.rglob("*.parquet"))) == PARTITIONS


def test_bad_inputs_are_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="input_dir must be a directory of Parquet files"):
        list_partitions(tmp_path / "nothing")
    with pytest.raises(ValueError, match=r"holds no \*\.parquet partitions"):
        list_partitions(tmp_path)
    with pytest.raises(ValueError, match="output_dir must not be input_dir or inside it"):
        output_paths(tmp_path, tmp_path / "out", [tmp_path / "p.parquet"])
    with pytest.raises(ValueError, match="kind must be one of rank, score, prepare, got 'x'"):
        JobSpec(kind="x")
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        JobSpec(kind="prepare", schema="s.toml", k=0)
    with pytest.raises(ValueError, match="rank needs catalog"):
        JobSpec(kind="rank", artifacts_dir="a", model_dir="m")
    with pytest.raises(
        ValueError, match=r"give model_dir \(in process\) or triton_url \(Triton\), not both"
    ):
        JobSpec(kind="score", artifacts_dir="a")
    with pytest.raises(ValueError, match="score needs artifacts_dir"):
        JobSpec(kind="score", model_dir="m")
    with pytest.raises(ValueError, match="prepare needs schema or artifacts_dir"):
        JobSpec(kind="prepare")
    with pytest.raises(ValueError, match=r"workers must be in \[1, 256\], got 0"):
        check_workers(0)
    with pytest.raises(ValueError, match="workers must be an integer, got '2'"):
        check_workers("2")
    with pytest.raises(ValueError, match="a request log needs the columns candidates, context"):
        requests_of(pa.table({"request_id": ["r"], "user": ["{}"]}), k=1)


@pytest.mark.triton
def test_scoring_on_triton_equals_scoring_in_process(workspace, feature_rows, tmp_path) -> None:
    from adrank.triton import EmbeddedTriton

    pairs = _pairs(feature_rows, tmp_path / "here")
    run_in_process(_spec(workspace, "score"), pairs)
    with EmbeddedTriton(workspace.repository, models=[workspace.model_name]) as triton:
        spec = JobSpec(
            kind="score",
            artifacts_dir=str(workspace.artifacts_dir),
            triton_url=triton.grpc_url,
            model_name=workspace.model_name,
        )
        run_in_process(spec, _pairs(feature_rows, tmp_path / "triton"))
    for _, here in pairs:
        name = here.relative_to(tmp_path / "here")
        on_triton = pq.read_table(tmp_path / "triton" / name)
        for head in ("p_ctr", "p_cvr", "p_neg"):
            # Triton runs the export's int8 ONNX file: close to the fp32 TorchScript, not equal
            np.testing.assert_allclose(
                on_triton[head].to_numpy(), pq.read_table(here)[head].to_numpy(), atol=0.01
            )
