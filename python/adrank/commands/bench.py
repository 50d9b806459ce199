"""``adrank bench``: the end-to-end load test and its Markdown report.

Ranks the same requests (``--candidates`` creatives each) through adrank (the Python API and
the HTTP service, the model on the embedded Triton; the API with the model in process) and
through the plain PyTorch pipeline a user would otherwise write, closed loop at each
``--concurrency``, in interleaved rounds. Writes ``report.md``, ``latency.png``,
``throughput.png`` and ``results.json`` to ``--out``. The defaults take a few minutes on two
cores (the first run also builds the benchmark workspace: a synthetic world and a model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "load-test adrank against a plain PyTorch pipeline; write a Markdown report with plots"


def _integers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        message = f"expected integers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from adrank.benchmark.suite import CONFIGURATIONS, SuiteConfig

    defaults = SuiteConfig()
    parser.add_argument("--out", type=Path, default=Path("bench-report"), help="report folder")
    parser.add_argument("--workspace", type=Path, default=Path(defaults.workspace))
    parser.add_argument(
        "--rows", type=int, default=defaults.rows, help="impressions to train the model on"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=defaults.requests,
        help="requests per configuration, concurrency and round",
    )
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument(
        "--concurrency",
        type=_integers,
        default=defaults.concurrency,
        help="closed-loop workers, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--candidates", type=int, default=defaults.candidates)
    parser.add_argument("--k", type=int, default=defaults.k, help="creatives per response")
    parser.add_argument(
        "--warmup",
        type=int,
        default=defaults.warmup,
        help="unmeasured calls before the first round",
    )
    parser.add_argument(
        "--perf-analyzer-ms",
        type=int,
        default=defaults.perf_analyzer_ms,
        help="perf_analyzer's measurement window against the served model (0: skip it)",
    )
    parser.add_argument(
        "--configurations",
        type=_names,
        default=defaults.configurations,
        help=f"comma-separated, some of {', '.join(CONFIGURATIONS)} (default: all)",
    )


def run(args: argparse.Namespace) -> int:
    from adrank.benchmark.report import write_report
    from adrank.benchmark.suite import BASELINE, CONFIGURATIONS, SuiteConfig, run_suite
    from adrank.benchmark.targets import check_targets

    try:
        config = SuiteConfig(
            requests=args.requests,
            rounds=args.rounds,
            concurrency=args.concurrency,
            candidates=args.candidates,
            k=args.k,
            warmup=args.warmup,
            workspace=str(args.workspace),
            rows=args.rows,
            configurations=args.configurations,
            perf_analyzer_ms=args.perf_analyzer_ms,
        )
    except ValueError as error:
        raise SystemExit(f"adrank bench: {error}") from None
    result = run_suite(config)
    report = write_report(result, args.out)
    print(f"\n{result.machine}")
    for s in result.summaries:
        outside = s.outside_model_p50_ms
        print(
            f"  {s.name:<12} x{s.concurrency}: p50 {s.latency_ms[50]:7.2f} ms, "
            f"p95 {s.latency_ms[95]:7.2f} ms, p99 {s.latency_ms[99]:7.2f} ms, "
            f"{s.requests_per_s:7.1f} req/s"
            + ("" if outside is None else f", outside the model p50 {outside:.3f} ms")
        )
    for t in check_targets(result.summaries, CONFIGURATIONS, BASELINE):
        verdict = "met" if t.met else "NOT met"
        print(f"  {t.configuration} x{t.concurrency}: {t.goal}: {t.measured} ({verdict})")
    print(f"\nreport: {report}")
    return 0
