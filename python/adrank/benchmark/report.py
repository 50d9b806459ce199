"""The suite's Markdown report: ``report.md``, its two PNG figures and ``results.json``.

``report.md`` names the machine and the workload, checks the targets
(:mod:`adrank.benchmark.targets`), tabulates p50/p95/p99, requests per second and the ratio to
the plain PyTorch baseline per configuration and concurrency, the time outside the model and
the time per stage, Triton's own ``perf_analyzer`` figures for the served model (when it ran),
and links ``latency.png`` and ``throughput.png``
(:mod:`adrank.benchmark.plots`). ``results.json`` holds the same summaries for machines to read.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

from adrank.benchmark.loadtest import PERCENTILES, LoadSummary
from adrank.benchmark.perf_analyzer import PerfAnalyzerRow
from adrank.benchmark.plots import plot_latency, plot_throughput
from adrank.benchmark.suite import BASELINE, CONFIGURATIONS, SuiteResult
from adrank.benchmark.targets import check_targets
from adrank.orchestrator.ranker import STAGES

__all__ = ["REPORT_FILE", "write_report"]

REPORT_FILE = "report.md"
LATENCY_PLOT = "latency.png"
THROUGHPUT_PLOT = "throughput.png"
RESULTS_FILE = "results.json"


def write_report(result: SuiteResult, out: str | Path) -> Path:
    """Writes the report, the figures and the JSON summaries under ``out``; returns report.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_latency(result.runs, out / LATENCY_PLOT)
    plot_throughput(result.summaries, BASELINE, out / THROUGHPUT_PLOT)
    (out / RESULTS_FILE).write_text(json.dumps(_results(result), indent=2) + "\n")
    path = out / REPORT_FILE
    path.write_text("\n".join(_markdown(result)) + "\n")
    return path


def _markdown(result: SuiteResult) -> list[str]:
    config = result.config
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# adrank end-to-end benchmark",
        "",
        f"- machine: {result.machine}",
        f"- run: {when}",
        *(f"- {note}" for note in result.notes),
        "",
        "Absolute figures hold for this machine and this moment only: a shared machine's other "
        "work falls on every configuration alike (rounds interleave them), so the ratios, "
        "measured in the same run, are what to compare.",
        "",
        "Configurations: " + "; ".join(_describe(name) for name in config.configurations) + ".",
        "",
        *_targets(result),
        *_latency_tables(result),
        *_stage_table(result),
        *perf_analyzer_table(result.perf_analyzer),
        "## Figures",
        "",
        f"![latency distribution per configuration]({LATENCY_PLOT})",
        "",
        f"![throughput against the {BASELINE} baseline]({THROUGHPUT_PLOT})",
    ]
    return lines


def _describe(name: str) -> str:
    what = {
        "api+triton": "`Ranker.rank` in process, the model on the embedded Triton",
        "http+triton": "`POST /v1/rank` to `adrank serve` (own process, loopback), same Triton",
        "grpc+triton": "`adrank.v1.Ranking/Rank` over gRPC to the same `adrank serve`",
        "api+torch": "`Ranker.rank` with the TorchScript model in process",
        "plain-torch": "the plain PyTorch pipeline (FeatureHasher, EmbeddingBag, torch.topk)",
    }[name]
    return f"**{name}** ({CONFIGURATIONS[name]}): {what}"


def _targets(result: SuiteResult) -> list[str]:
    targets = check_targets(result.summaries, CONFIGURATIONS, BASELINE)
    if not targets:
        return []
    lines = [
        f"## Targets at {result.config.candidates:,} candidates per request",
        "",
        "| configuration | concurrency | target | measured | met |",
        "|---|---:|---|---|---|",
    ]
    lines += [
        f"| {t.configuration} | {t.concurrency} | {t.goal} | {t.measured} | "
        f"{'yes' if t.met else '**no**'} |"
        for t in targets
    ]
    return [*lines, ""]


def _latency_tables(result: SuiteResult) -> list[str]:
    lines = ["## Latency and throughput", ""]
    by_key = {(s.name, s.concurrency): s for s in result.summaries}
    percentiles = " | ".join(f"p{p} ms" for p in PERCENTILES)
    for concurrency in result.config.concurrency:
        base = by_key.get((BASELINE, concurrency))
        lines += [
            f"### Concurrency {concurrency}",
            "",
            f"| configuration | role | {percentiles} | req/s | vs {BASELINE} | "
            "outside model p50 ms | wall minus model p50 ms |",
            "|---|---|" + "---:|" * (len(PERCENTILES) + 4),
        ]
        for name in result.config.configurations:
            s = by_key[(name, concurrency)]
            ratio = f"{s.requests_per_s / base.requests_per_s:.2f}x" if base else "n/a"
            cells = [
                name,
                CONFIGURATIONS[name],
                *(f"{s.latency_ms[p]:.2f}" for p in PERCENTILES),
                f"{s.requests_per_s:.1f}",
                ratio,
                _ms(s.outside_model_p50_ms),
                _ms(s.latency_minus_model_p50_ms),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "*Outside model*: the sum of every stage the ranker times but the model call, p50. "
        "*Wall minus model*: the caller's wall time less the model call, p50 (adds transport, "
        "JSON and queueing).",
        "",
    ]
    return lines


def _stage_table(result: SuiteResult) -> list[str]:
    present = [s for s in STAGES if any(s in x.stage_p50_ms for x in result.summaries)]
    if not present:
        return []
    lines = [
        "## Time per stage (p50 ms)",
        "",
        "| configuration | concurrency | " + " | ".join(present) + " |",
        "|---|---:|" + "---:|" * len(present),
    ]
    for s in result.summaries:
        cells = [_ms(s.stage_p50_ms.get(stage)) for stage in present]
        lines.append(f"| {s.name} | {s.concurrency} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def perf_analyzer_table(rows: list[PerfAnalyzerRow]) -> list[str]:
    """Triton's perf_analyzer figures as a Markdown section (none when it did not run)."""
    if not rows:
        return []
    lines = [
        "## Triton's perf_analyzer",
        "",
        "The served model alone, measured by Triton's own load generator (gRPC, system shared "
        "memory, random inputs): beside adrank's figures above, which hold the whole request.",
        "",
        "| rows per request | concurrency | requests/s | p50 ms | p90 ms | p99 ms | "
        "server compute_infer ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.rows:,} | {r.concurrency} | {r.requests_per_s:.1f} | {r.p50_us / 1e3:.2f} | "
        f"{r.p90_us / 1e3:.2f} | {r.p99_us / 1e3:.2f} | {r.server_compute_infer_us / 1e3:.2f} |"
        for r in rows
    ]
    return [*lines, ""]


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _results(result: SuiteResult) -> dict:
    def summary(s: LoadSummary) -> dict:
        record = dataclasses.asdict(s)
        record["latency_ms"] = {f"p{p}": v for p, v in s.latency_ms.items()}
        return record

    return {
        "machine": result.machine,
        "config": dataclasses.asdict(result.config),
        "notes": result.notes,
        "summaries": [summary(s) for s in result.summaries],
        "targets": [
            dataclasses.asdict(t) for t in check_targets(result.summaries, CONFIGURATIONS, BASELINE)
        ],
        "perf_analyzer": [dataclasses.asdict(r) for r in result.perf_analyzer],
    }
