"""``adrank triton``: serve a model repository on the embedded Triton until interrupted.

The server runs under a :class:`~adrank.triton.supervisor.TritonSupervisor`: if it dies it is
restarted on the same ports (``--max-restarts`` tries per 5 minutes); once those are used up
the command exits with status 1, so that a service manager restarts it. Events go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from adrank.stop_signals import StopSignals

HELP = "serve a Triton model repository on the embedded tritonserver (nvidia-pytriton wheel)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=Path("triton_models"),
        help="the Triton model repository (default: triton_models)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="NAME",
        help="models to load (default: every model in the repository)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--grpc-port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--http-port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--log", type=Path, default=None, help="server log file")
    parser.add_argument(
        "--model-config-name",
        default=None,
        help="serve configs/<NAME>.pbtxt instead of config.pbtxt (e.g. gpu on a GPU host)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="send one request of random inputs to each ranker model, print the answer, stop",
    )
    parser.add_argument("--check-rows", type=int, default=1000, help="candidates per check")
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=5,
        help="restarts of a dead server allowed per 5 minutes before giving up (0: never)",
    )


def _check(server: object, models: list[str], rows: int) -> None:
    import numpy as np

    from adrank.triton.client import RankerClient

    rng = np.random.default_rng(0)
    for model in models:
        with RankerClient(server.grpc_url, model=model, timeout_s=30.0) as client:
            signature = client.signature()
            embeddings = rng.standard_normal((rows, signature.embedding_dim), dtype=np.float32)
            dense = rng.standard_normal((rows, signature.dense_dim), dtype=np.float32)
            client.predict(embeddings, dense)  # warm-up
            timings = []
            for _ in range(20):
                start = time.perf_counter()
                outputs = client.predict(embeddings, dense)
                timings.append(time.perf_counter() - start)
            print(
                f"{model}: {rows} candidates, E={signature.embedding_dim} "
                f"N={signature.dense_dim}: p50 {np.median(timings) * 1e3:.2f} ms, "
                f"mean pCTR {outputs.p_ctr.mean():.4f}"
            )


def _loaded_models(repository: Path, requested: list[str] | None) -> list[str]:
    if requested is not None:
        return requested
    return sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # SIGTERM (a service manager, `kill`) stops the server as Ctrl-C (KeyboardInterrupt) does.
    with StopSignals(signal.SIGTERM) as stop:
        return _serve(args, stop)


def _serve(args: argparse.Namespace, stop: StopSignals) -> int:
    """Starts the server, then blocks until ``stop`` fires or the server ends."""
    from adrank.triton.server import EmbeddedTriton, TritonError
    from adrank.triton.supervisor import RestartPolicy, TritonSupervisor

    try:
        policy = RestartPolicy(max_restarts=args.max_restarts)
        server = EmbeddedTriton(
            args.model_repository,
            models=args.models,
            host=args.host,
            grpc_port=args.grpc_port,
            http_port=args.http_port,
            log_path=args.log,
            model_config_name=args.model_config_name,
        )
        with TritonSupervisor(server, policy) as supervisor:
            print(
                f"serving {server.model_repository} on grpc {server.grpc_url}, "
                f"http {server.http_url}; log: {server.log_path}",
                flush=True,
            )
            if args.check:
                _check(
                    server, _loaded_models(server.model_repository, args.models), args.check_rows
                )
                return 0
            print("Ctrl-C or SIGTERM stops it", flush=True)
            if not stop.wait(supervisor.alive, poll_s=0.2):
                reason = supervisor.liveness()[1]
                print(f"adrank triton: {reason}; see {server.log_path}", file=sys.stderr)
                return 1
    except (TritonError, FileNotFoundError, ValueError) as error:
        print(f"adrank triton: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
