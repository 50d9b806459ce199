"""``adrank serve``: the ranking service (HTTP JSON API) over an exported model and a catalog."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "serve POST /v1/rank over HTTP (FastAPI on uvicorn), the model on Triton"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace",
        type=Path,
        default=Path("artifacts/demo"),
        help="the workspace to serve as built (by `adrank demo`); built here if missing",
    )
    parser.add_argument("--artifacts", type=Path, help="an exported version's artifacts dir")
    parser.add_argument("--catalog", type=Path, help="catalog Parquet file")
    parser.add_argument("--repository", type=Path, default=Path("triton_models"))
    parser.add_argument("--model", help="model name in the repository (default: the export's)")
    parser.add_argument(
        "--triton-url", help="gRPC host:port of a running Triton (default: embedded)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--deadline-ms", type=float, default=100.0, help="model call deadline")
    parser.add_argument(
        "--fallback",
        action="store_true",
        help="when the model does not answer, score with the log's average rates (degraded) "
        "instead of answering 503",
    )
    parser.add_argument(
        "--state",
        type=Path,
        help="SQLite file of budgets, spend, pacing and kill switches "
        "(default: control.sqlite in the workspace, or in memory with --artifacts)",
    )
    parser.add_argument("--max-candidates", type=int, default=10_000)
    parser.add_argument("--max-body-bytes", type=int, default=2 * 1024 * 1024)


def run(args: argparse.Namespace) -> int:
    from adrank.service.app import ServiceLimits
    from adrank.service.stack import HttpServer, serving_stack
    from adrank.stop_signals import StopSignals
    from adrank.workspace import fallback_rates, open_workspace, prepare_workspace

    if (args.artifacts is None) != (args.catalog is None):
        raise SystemExit("adrank serve: give both --artifacts and --catalog, or neither")
    fallback, state = None, args.state or ":memory:"
    if args.artifacts is None:
        name = args.model or "ranker"
        workspace = open_workspace(args.workspace, args.repository, name) or prepare_workspace(
            args.workspace, repository=args.repository, model_name=name
        )
        artifacts, catalog = workspace.artifacts_dir, workspace.catalog_path
        fallback = fallback_rates(workspace) if args.fallback else None
        state = args.state or workspace.root / "control.sqlite"
    else:
        artifacts, catalog = args.artifacts, args.catalog
        if args.fallback:
            raise SystemExit("adrank serve: --fallback needs a workspace's training metrics")
    limits = ServiceLimits(args.max_candidates, args.max_body_bytes)
    # uvicorn runs in a thread and the signals come here, so that leaving these blocks always
    # stops the server, Triton and the shared-memory regions in order.
    with (
        serving_stack(
            artifacts,
            catalog,
            repository=args.repository,
            model_name=args.model,
            triton_url=args.triton_url,
            deadline_ms=args.deadline_ms,
            fallback=fallback,
            limits=limits,
            state_path=state,
        ) as stack,
        StopSignals() as stop,
        HttpServer(stack.app, host=args.host, port=args.port) as http,
    ):
        print(f"adrank serving on {http.url} (docs at /docs)", flush=True)
        if not stop.wait(lambda: http.running):
            raise SystemExit("adrank serve: the HTTP server stopped")
    return 0
