"""The issue's performance targets, checked against a suite's summaries.

1. Time outside the model (every ranker stage but the model call) at most 1 ms p50, for each
   adrank configuration (``role == "adrank"``) at each concurrency measured.
2. At least 3x the baseline's requests per second at equal or better p99, for each adrank
   configuration against the baseline at the same concurrency.
3. A transport no heavier than the work: the caller's wall time less the model call, p50,
   through HTTP or gRPC at most 0.5 ms over the Python API's (``api+triton``) at the same
   concurrency.

Every target is reported with its measured figure, met or not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from adrank.benchmark.loadtest import LoadSummary

__all__ = [
    "OUTSIDE_MODEL_P50_MS",
    "THROUGHPUT_RATIO",
    "TRANSPORT_OVERHEAD_MS",
    "Target",
    "check_targets",
]

OUTSIDE_MODEL_P50_MS = 1.0
THROUGHPUT_RATIO = 3.0
TRANSPORT_OVERHEAD_MS = 0.5
# A transport's configuration -> the in-process configuration it carries.
TRANSPORTS = {"http+triton": "api+triton", "grpc+triton": "api+triton"}


@dataclasses.dataclass(frozen=True)
class Target:
    configuration: str
    concurrency: int
    goal: str
    measured: str
    met: bool


def check_targets(
    summaries: Sequence[LoadSummary], roles: Mapping[str, str], baseline: str
) -> list[Target]:
    """One :class:`Target` per goal, adrank configuration and concurrency (see the docstring)."""
    by_key = {(s.name, s.concurrency): s for s in summaries}
    targets = []
    for summary in summaries:
        if roles.get(summary.name) != "adrank":
            continue
        outside = summary.outside_model_p50_ms
        targets.append(
            Target(
                summary.name,
                summary.concurrency,
                f"time outside the model p50 <= {OUTSIDE_MODEL_P50_MS:g} ms",
                "not reported" if outside is None else f"{outside:.3f} ms",
                outside is not None and outside <= OUTSIDE_MODEL_P50_MS,
            )
        )
        api = by_key.get((TRANSPORTS.get(summary.name, ""), summary.concurrency))
        transport = _transport_target(summary, api)
        if transport is not None:
            targets.append(transport)
        base = by_key.get((baseline, summary.concurrency))
        if base is None:
            continue
        ratio = summary.requests_per_s / base.requests_per_s
        p99, base_p99 = summary.latency_ms[99], base.latency_ms[99]
        targets.append(
            Target(
                summary.name,
                summary.concurrency,
                f">= {THROUGHPUT_RATIO:g}x {baseline} req/s at equal or better p99",
                f"{ratio:.2f}x ({summary.requests_per_s:.1f} vs {base.requests_per_s:.1f} req/s), "
                f"p99 {p99:.2f} vs {base_p99:.2f} ms",
                ratio >= THROUGHPUT_RATIO and p99 <= base_p99,
            )
        )
    return targets


def _transport_target(summary: LoadSummary, api: LoadSummary | None) -> Target | None:
    ours = summary.latency_minus_model_p50_ms
    theirs = None if api is None else api.latency_minus_model_p50_ms
    if ours is None or theirs is None:
        return None
    over = ours - theirs
    return Target(
        summary.name,
        summary.concurrency,
        f"wall minus model p50 <= {TRANSPORT_OVERHEAD_MS:g} ms over {api.name}",
        f"{over:+.3f} ms ({ours:.3f} vs {theirs:.3f} ms)",
        over <= TRANSPORT_OVERHEAD_MS,
    )
