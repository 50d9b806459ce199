"""The report's figures (PNG, matplotlib without pyplot: no global state, no display needed).

* :func:`plot_latency`: the latency distribution of each configuration (an empirical CDF over
  every round's calls, log-scale time), one panel per concurrency, p99 marked.
* :func:`plot_throughput`: requests per second of each configuration per concurrency, each bar
  labelled with its ratio to the baseline measured in the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adrank.benchmark.loadtest import LoadResult, LoadSummary

__all__ = ["plot_latency", "plot_throughput"]

COLORS = {
    "api+triton": "#1f77b4",
    "http+triton": "#2ca02c",
    "grpc+triton": "#17becf",
    "api+torch": "#9467bd",
    "plain-torch": "#d62728",
}


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_latency(runs: Sequence[LoadResult], path: str | Path) -> Path:
    """Empirical CDFs of per-request latency, pooled over rounds; one panel per concurrency."""
    concurrencies = sorted({r.concurrency for r in runs})
    names = list(dict.fromkeys(r.name for r in runs))
    figure = _figure(5.5 * len(concurrencies), 4.0)
    axes = figure.subplots(1, len(concurrencies), squeeze=False)[0]
    for axis, concurrency in zip(axes, concurrencies, strict=True):
        for name in names:
            latencies = [
                r.latencies_s for r in runs if (r.name, r.concurrency) == (name, concurrency)
            ]
            if not latencies:
                continue
            ms = np.sort(np.concatenate(latencies)) * 1e3
            share = np.arange(1, len(ms) + 1) / len(ms)
            color = COLORS.get(name)
            axis.step(ms, share, where="post", label=name, color=color)
            axis.axvline(np.percentile(ms, 99), color=color, linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.set_xlabel("latency per request, ms (log scale; dotted: p99)")
        axis.set_ylabel("share of requests")
        axis.set_title(f"concurrency {concurrency}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(loc="lower right", fontsize="small")
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path


def plot_throughput(summaries: Sequence[LoadSummary], baseline: str, path: str | Path) -> Path:
    """Grouped bars of requests per second; labels give the ratio to ``baseline``."""
    concurrencies = sorted({s.concurrency for s in summaries})
    names = list(dict.fromkeys(s.name for s in summaries))
    by_key = {(s.name, s.concurrency): s for s in summaries}
    figure = _figure(max(5.0, 1.6 * len(names) * len(concurrencies)), 4.0)
    axis = figure.subplots()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs, heights, labels = [], [], []
        for j, concurrency in enumerate(concurrencies):
            summary = by_key.get((name, concurrency))
            if summary is None:
                continue
            base = by_key.get((baseline, concurrency))
            xs.append(j + (i - (len(names) - 1) / 2) * width)
            heights.append(summary.requests_per_s)
            ratio = summary.requests_per_s / base.requests_per_s if base else None
            labels.append(f"{ratio:.1f}x" if ratio is not None else "")
        bars = axis.bar(xs, heights, width, label=name, color=COLORS.get(name))
        axis.bar_label(bars, labels=labels, fontsize="small")
    axis.set_xticks(range(len(concurrencies)), [f"concurrency {c}" for c in concurrencies])
    axis.set_ylabel("requests per second")
    axis.set_title(f"throughput (bar labels: ratio to {baseline}, same run)")
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend(fontsize="small")
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path
