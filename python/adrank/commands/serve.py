"""``adrank serve``: the ranking service (HTTP JSON API) over an exported model and a catalog,
and with ``--grpc-port`` the same ranking over gRPC (``adrank.v1.Ranking/Rank``) beside it.

The control plane (budgets, spend, kill switches, ad-load caps) is guarded by a bearer token
read from ``--token-file`` or ``$ADRANK_TOKEN`` (never a flag's value: ``ps`` shows those).
Binding a non-loopback address without one is refused unless ``--insecure``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from adrank.experiments.cold_start import METHODS, ColdStartConfig
from adrank.stores import state_location

HELP = "serve POST /v1/rank over HTTP (FastAPI on uvicorn), the model on Triton"

# ServiceLimits fields settable as flags (--max-k, --read-timeout-s, ...), with their types.
LIMIT_FLAGS = {
    "max_candidates": int,
    "max_body_bytes": int,
    "max_k": int,
    "max_string_length": int,
    "max_feature_values": int,
    "max_json_depth": int,
    "read_timeout_s": float,
    "max_event_cost": float,
    "max_event_age_s": float,
    "max_event_lead_s": float,
}


def _incremental():
    from adrank.orchestrator.scoring import ScoringConfig

    return ScoringConfig(value="incremental")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from adrank.service.limits import ServiceLimits

    parser.add_argument(
        "--workspace",
        type=Path,
        default=Path("artifacts/demo"),
        help="the workspace to serve as built (by `adrank demo`); built here if missing",
    )
    parser.add_argument("--artifacts", type=Path, help="an exported version's artifacts dir")
    parser.add_argument(
        "--catalog",
        type=Path,
        help="catalog Parquet file (none: every request sends candidate_rows, for a model "
        "without creative fields)",
    )
    parser.add_argument("--repository", type=Path, default=Path("triton_models"))
    parser.add_argument("--model", help="model name in the repository (default: the export's)")
    parser.add_argument(
        "--triton-url", help="gRPC host:port of a running Triton (default: embedded)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--grpc-port",
        type=int,
        help="also serve adrank.v1.Ranking/Rank over gRPC on this port, same host, same rules "
        "(python/adrank/service/proto/rank.proto; default: no gRPC)",
    )
    parser.add_argument("--deadline-ms", type=float, default=100.0, help="model call deadline")
    parser.add_argument(
        "--precision",
        choices=["fp32", "int8"],
        default="fp32",
        help="embedding tables to map: fp32, or int8 row-wise quantized (4x smaller)",
    )
    parser.add_argument(
        "--fallback",
        action="store_true",
        help="when the model does not answer, score with the log's average rates (degraded) "
        "instead of answering 503",
    )
    parser.add_argument(
        "--watch-models",
        type=float,
        metavar="SECONDS",
        help="check the artifacts directory this often and serve a newer export when one "
        "appears (default: switch only by PUT /v1/model)",
    )
    parser.add_argument(
        "--state",
        type=state_location,
        help="SQLite file of budgets, spend, pacing, kill switches and the safety audit log, or "
        "a postgresql:// URL "
        "shared by replicas (default: control.sqlite in the workspace, or in memory with "
        "--artifacts)",
    )
    parser.add_argument(
        "--safety-rules",
        type=Path,
        metavar="FILE",
        help="content-safety rules per region (TOML; see the README's Creatives and safety)",
    )
    parser.add_argument(
        "--bid-for",
        choices=("conversions", "incremental"),
        default="conversions",
        help="what oCPM campaigns are valued at: all predicted conversions, or the incremental "
        "ones of the uplift model exported beside the version (adrank train --uplift)",
    )
    online = parser.add_argument_group("online learning (see the README's Online learning)")
    online.add_argument(
        "--online",
        type=Path,
        metavar="DIR",
        help="follow `adrank learn --out DIR`: its deltas are applied in place and its click "
        "rate replaces the model's p_ctr; model_version names its publication",
    )
    online.add_argument(
        "--online-poll-seconds", type=float, default=0.5, help="check DIR this often (0.5)"
    )
    cold = parser.add_argument_group("cold start (see the README's Creatives and safety)")
    cold.add_argument(
        "--cold-start",
        action="store_true",
        help="value creatives at their click-rate estimate (the model's and their own clicks, "
        "from events with a creative_id) and explore new ones (adrank.experiments.cold_start)",
    )
    defaults = ColdStartConfig()
    cold.add_argument(
        "--cold-start-min-impressions",
        type=int,
        default=defaults.min_impressions,
        help="a new creative's exposure",
    )
    cold.add_argument(
        "--cold-start-share",
        type=float,
        default=defaults.traffic_share,
        help="share of requests that explore",
    )
    cold.add_argument(
        "--cold-start-max-loss",
        type=float,
        default=defaults.max_revenue_loss,
        help="an exploring slot's eCPM bound",
    )
    cold.add_argument("--cold-start-method", choices=METHODS, default=defaults.method)
    experiments = parser.add_argument_group("experiments (see the README's Experiments)")
    experiments.add_argument(
        "--experiments", type=Path, metavar="FILE", help="experiments' TOML: arms per request"
    )
    experiments.add_argument(
        "--request-log", type=Path, metavar="DIR", help="write the Parquet request log here"
    )
    experiments.add_argument(
        "--request-log-max-mb", type=int, default=1024, help="the log's size bound (1024 MB)"
    )
    security = parser.add_argument_group("access (see the README's threat model)")
    security.add_argument(
        "--token-file",
        type=Path,
        help="file whose first line is the control plane's bearer token (or set $ADRANK_TOKEN)",
    )
    security.add_argument(
        "--guard-reads", action="store_true", help="control-state reads need the token too"
    )
    security.add_argument(
        "--guard-rank", action="store_true", help="POST /v1/rank needs the token too"
    )
    security.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name to answer besides the loopback names and the bind address "
        "(repeatable; '*' answers any)",
    )
    security.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without a token (warned about on every start)",
    )
    limits = parser.add_argument_group(
        "limits per request (adrank.service.limits.ServiceLimits says what each bounds)"
    )
    defaults = ServiceLimits()
    for name, kind in LIMIT_FLAGS.items():
        limits.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=getattr(defaults, name),
            help="default: %(default)s",
        )


def access_policy(args: argparse.Namespace) -> tuple[object, list[str]]:
    """The AccessPolicy of the flags and the start-up warnings; SystemExit when refused."""
    from adrank.service.security import (
        AccessPolicy,
        default_allowed_hosts,
        exposure_warnings,
        load_token,
    )

    try:
        token = load_token(args.token_file)
        policy = AccessPolicy(
            token=token,
            guard_reads=args.guard_reads,
            guard_rank=args.guard_rank,
            allowed_hosts=default_allowed_hosts(args.host, args.allowed_host),
        )
        return policy, exposure_warnings(args.host, policy, args.insecure)
    except ValueError as error:
        raise SystemExit(f"adrank serve: {error}") from None


def grpc_server(app: object, policy: object, args: argparse.Namespace) -> object:
    """The gRPC server beside ``app``: its ranker, limits, feature rules and metrics."""
    from adrank.service.grpc_server import GrpcServer, RankServicer

    state = app.state  # type: ignore[attr-defined]
    servicer = RankServicer(state.rank_endpoint, policy, state.metrics)  # type: ignore[arg-type]
    try:
        return GrpcServer(
            servicer, args.host, args.grpc_port, max_message_bytes=state.limits.max_body_bytes
        )
    except OSError as error:
        raise SystemExit(f"adrank serve: {error}") from None


def run(args: argparse.Namespace) -> int:
    from adrank.experiments.serving import ArmVersionError

    try:
        return _serve(args)
    except ArmVersionError as error:  # raised at start, before anything is served
        raise SystemExit(f"adrank serve: --experiments: {error}") from None


def _serve(args: argparse.Namespace) -> int:
    # The supervisor's and the model switch's events (adrank.triton, adrank.models) go to stderr.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Refuse an unguarded public bind before building or loading anything.
    policy, warnings = access_policy(args)
    from adrank.service.limits import ServiceLimits
    from adrank.service.stack import HttpServer, serving_stack
    from adrank.stop_signals import StopSignals
    from adrank.workspace import fallback_rates, open_workspace, prepare_workspace

    if args.catalog is not None and args.artifacts is None:
        raise SystemExit("adrank serve: --catalog needs --artifacts")
    try:
        limits = ServiceLimits(**{name: getattr(args, name) for name in LIMIT_FLAGS})
    except ValueError as error:
        raise SystemExit(f"adrank serve: {error}") from None
    experiment_set = request_log = None
    if args.experiments is not None:
        from adrank.experiments.assignment import ExperimentSet

        try:
            experiment_set = ExperimentSet.from_toml(args.experiments)
        except (OSError, ValueError, TypeError) as error:
            raise SystemExit(f"adrank serve: --experiments: {error}") from None
    safety = safety_rules = None
    if args.safety_rules is not None:
        from adrank.safety import SafetyGate, SafetyRules

        try:
            safety_rules = SafetyRules.from_toml(args.safety_rules)
            SafetyGate(safety_rules).close()  # the classifier's package is installed
        except (OSError, ValueError, TypeError, ImportError) as error:
            raise SystemExit(f"adrank serve: --safety-rules: {error}") from None
    cold_start = None
    if args.cold_start:
        from adrank.experiments.cold_start import ColdStart

        try:
            cold_start = ColdStart(
                ColdStartConfig(
                    min_impressions=args.cold_start_min_impressions,
                    traffic_share=args.cold_start_share,
                    max_revenue_loss=args.cold_start_max_loss,
                    method=args.cold_start_method,
                )
            )
        except (TypeError, ValueError) as error:
            raise SystemExit(f"adrank serve: --cold-start: {error}") from None
    online = contextlib.nullcontext(None)
    if args.online is not None:
        from adrank.online.serving import OnlineScorer

        if not 0 < args.online_poll_seconds < float("inf"):
            raise SystemExit(
                f"adrank serve: --online-poll-seconds must be > 0, got {args.online_poll_seconds}"
            )
        try:
            online = OnlineScorer(args.online, args.online_poll_seconds)
        except ValueError as error:
            raise SystemExit(f"adrank serve: --online: {error}") from None
    if args.request_log is not None:
        from adrank.experiments.request_log import RequestLog

        if args.request_log_max_mb < 1:
            raise SystemExit("adrank serve: --request-log-max-mb must be >= 1")
        request_log = RequestLog(args.request_log, max_bytes=args.request_log_max_mb << 20)
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
    if safety_rules is not None:  # its audit log and overrides beside the rest of the state
        from adrank.safety import SafetyGate, open_audit_store

        safety = SafetyGate(safety_rules, store=open_audit_store(state))
    # uvicorn runs in a thread and the signals come here, so that leaving these blocks always
    # stops the server, Triton and the shared-memory regions in order, the audit store last.
    with (
        contextlib.closing(safety) if safety is not None else contextlib.nullcontext(),
        online as online_scorer,
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
            precision=args.precision,
            access=policy,
            watch_models_s=args.watch_models,
            experiments=experiment_set,
            request_log=request_log,
            safety=safety,
            cold_start=cold_start,
            **({} if online_scorer is None else {"online": online_scorer}),
            **({} if args.bid_for == "conversions" else {"scoring_config": _incremental()}),
        ) as stack,
        StopSignals() as stop,
        HttpServer(stack.app, host=args.host, port=args.port) as http,
        contextlib.ExitStack() as grpc,
    ):
        for line in warnings:
            print(line, file=sys.stderr, flush=True)
        if args.grpc_port is not None:
            target = grpc.enter_context(grpc_server(stack.app, policy, args)).target
            print(f"adrank serving gRPC adrank.v1.Ranking/Rank on {target}", flush=True)
        if online_scorer is not None:
            stack.app.state.metrics.registry.register(online_scorer)  # adrank_online_*
            applied = online_scorer.publication
            print(
                f"adrank following online publications in {args.online} (applied: "
                f"{'none yet' if applied < 0 else applied})",
                flush=True,
            )
        print(f"adrank serving on {http.url} (docs at /docs)", flush=True)
        if not stop.wait(lambda: http.running):
            raise SystemExit("adrank serve: the HTTP server stopped")
    return 0
