"""``adrank export``: split a trained ranker into table files and a Triton model version."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a trained ranker: embedding tables to files, dense part to triton_models/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", type=Path, default=Path("artifacts/ranker.pt"), help="from adrank train"
    )
    parser.add_argument("--repository", type=Path, default=Path("triton_models"))
    parser.add_argument("--name", default="ranker", help="the model's name in the repository")
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="tables go here")
    parser.add_argument("--version", type=int, help="version number (default: the next free one)")
    parser.add_argument("--instances", type=int, default=1, help="Triton model instances")
    parser.add_argument(
        "--default-config",
        default=None,
        help="the deployment written as config.pbtxt (default: the fastest within the AUC "
        "bound; every one is under configs/, for --model-config-name)",
    )
    parser.add_argument(
        "--execution-env-path",
        default=None,
        help="Triton's EXECUTION_ENV_PATH for the Python-backend configs (a packed environment)",
    )


def run(args: argparse.Namespace) -> int:
    from adrank.export import export_model
    from adrank.triton.model_config import DEFAULT_DEPLOYMENT

    result = export_model(
        args.checkpoint,
        repository=args.repository,
        name=args.name,
        artifacts=args.artifacts,
        version=args.version,
        instances=args.instances,
        default_deployment=args.default_config or DEFAULT_DEPLOYMENT,
        execution_env_path=args.execution_env_path,
    )
    print(f"dense model: {result.version_dir} (version {result.version})")
    print(f"served heads: {', '.join(result.manifest['outputs'])}")
    print(f"tables and manifest: {result.artifacts_dir}")
    print(
        f"EMBEDDINGS [{result.manifest['embedding_dim']}], DENSE [{result.manifest['dense_dim']}]"
    )
    return 0
