"""``adrank batch rank|score|prepare IN OUT``: offline work over a partitioned Parquet directory
on Ray, one output partition per input partition (same relative path), each written once.

``rank``: request-log rows (``request_id``, ``user``, ``context``, ``candidates``) ranked by the
serving Ranker against a catalog; ``score``: feature rows scored by the model; ``prepare``:
feature rows through the FeaturePipeline (bucket ids, dense values, labels: training data).
The model runs in each worker (TorchScript, the default) or on Triton (``--triton-url``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "rank, score or prepare a partitioned Parquet directory on Ray (one output per partition)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    for action, help_text in (
        ("rank", "rank logged requests with the serving Ranker"),
        ("score", "score feature rows with the model"),
        ("prepare", "turn feature rows into training data (FeaturePipeline)"),
    ):
        sub = actions.add_parser(action, help=help_text, description=help_text)
        sub.add_argument("input", type=Path, help="directory of Parquet partitions")
        sub.add_argument("output", type=Path, help="directory for the output partitions")
        sub.add_argument(
            "--workspace",
            type=Path,
            default=Path("artifacts/demo"),
            help="a workspace (adrank demo/serve) giving the export, model and catalog",
        )
        sub.add_argument("--repository", type=Path, default=Path("triton_models"))
        sub.add_argument("--model", default="ranker", help="the model's name (default ranker)")
        sub.add_argument("--artifacts", type=Path, help="an exported version (not a workspace)")
        sub.add_argument("--model-dir", type=Path, help="its TorchScript version folder")
        sub.add_argument("--catalog", type=Path, help="the serving catalog (rank)")
        sub.add_argument("--schema", type=Path, help="the feature schema (prepare)")
        sub.add_argument("--triton-url", help="score on this Triton (host:port) instead")
        sub.add_argument("--k", type=int, default=10, help="ads per request (rank)")
        sub.add_argument("--workers", type=int, default=2, help="Ray workers (default 2)")
        sub.add_argument("--address", help="join this Ray cluster (default: a local one)")
        sub.add_argument(
            "--in-process", action="store_true", help="no Ray: one partition after another here"
        )


def run(args: argparse.Namespace) -> int:
    from adrank.batch.jobs import JobSpec
    from adrank.batch.partitions import list_partitions, output_paths
    from adrank.batch.ray_runner import run_in_process, run_on_ray

    spec = JobSpec(kind=args.action, k=args.k, **_sources(args))
    parts = list_partitions(args.input)
    pairs = list(zip(parts, output_paths(args.input, args.output, parts), strict=True))
    start = time.perf_counter()

    def progress(done, count: int, total: int) -> None:
        state = "written" if done.written else "already there, kept"
        print(
            f"[{count}/{total}] {Path(done.input).name}: {done.rows:,} rows in "
            f"{done.seconds:.2f} s ({state})",
            file=sys.stderr,
            flush=True,
        )

    ready = [start]

    def started() -> None:
        ready[0] = time.perf_counter()

    if args.in_process:
        done = run_in_process(spec, pairs, progress)
    else:
        done = run_on_ray(spec, pairs, args.workers, args.address, progress, started)
    end = time.perf_counter()
    rows = sum(d.rows for d in done)
    where = "in process" if args.in_process else f"on {args.workers} Ray workers"
    work = sum(d.seconds for d in done)  # reading, ranking and writing, in the workers
    starting = "" if args.in_process else f" ({ready[0] - start:.1f} s starting Ray)"
    print(
        f"{args.action}: {rows:,} rows in {len(done)} partitions {where}: {end - start:.1f} s"
        f"{starting}, {rows / (end - ready[0]):,.0f} rows/s after; {work:.1f} s of partition "
        f"work ({rows / work:,.0f} rows/s per worker: read {sum(d.read_s for d in done):.1f} s, "
        f"{args.action} {sum(d.job_s for d in done):.1f} s, write "
        f"{sum(d.write_s for d in done):.1f} s); outputs in {args.output}"
    )
    return 0


def _sources(args: argparse.Namespace) -> dict:
    """The export, model and catalog: the flags, else the workspace's."""
    found: dict = {
        "artifacts_dir": args.artifacts,
        "model_dir": args.model_dir,
        "catalog": args.catalog,
        "schema": args.schema,
        "triton_url": args.triton_url,
        "model_name": args.model,
    }
    if args.artifacts is None and not (args.action == "prepare" and args.schema is not None):
        from adrank.workspace import open_workspace

        workspace = open_workspace(args.workspace, args.repository, args.model)
        if workspace is None:
            raise ValueError(
                f"no workspace at {args.workspace} (run adrank demo), and no --artifacts"
            )
        found["artifacts_dir"] = workspace.artifacts_dir
        found["catalog"] = args.catalog or workspace.catalog_path
        if args.triton_url is None:
            found["model_dir"] = args.model_dir or (
                workspace.repository / workspace.model_name / str(workspace.version)
            )
    if args.triton_url is not None:
        found["model_dir"] = None
    if args.action != "rank":
        found["catalog"] = found["catalog"] if args.action == "score" else None
    return {k: str(v) if isinstance(v, Path) else v for k, v in found.items()}
