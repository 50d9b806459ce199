"""Prometheus metrics of the ranking service, in a registry of its own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Serving latencies live between 100 us and a few hundred ms.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "adrank_requests", "Rank requests by HTTP status", ["status"], registry=self.registry
        )
        self.errors = Counter(
            "adrank_errors", "Failed rank requests by kind", ["kind"], registry=self.registry
        )
        self.latency = Histogram(
            "adrank_request_seconds",
            "Rank request latency, end to end inside the service",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_latency = Histogram(
            "adrank_stage_seconds",
            "Rank request latency per stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.unknown_candidates = Counter(
            "adrank_unknown_candidates",
            "Candidate ids not in the catalog (dropped)",
            registry=self.registry,
        )
        self.degraded = Counter(
            "adrank_degraded_responses",
            "Responses scored with the fallback rates because the model did not answer",
            registry=self.registry,
        )
