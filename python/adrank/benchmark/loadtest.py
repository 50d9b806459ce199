"""A bounded closed-loop load test: N requests at concurrency C against a callable.

Glossary: ``N`` requests in a run; ``C`` workers (threads), each of which sends its next
request as soon as its previous one answered (closed loop: the offered load follows the
latency, so a slow system is measured slow rather than flooded).

:func:`run_load` times each call and keeps the per-stage ``timings_ms`` a call returns;
:func:`summarize` turns one run into percentiles and throughput; :func:`median_summary`
combines repeated rounds (the median of each figure: a shared, noisy machine hits one round
more than another)::

    latency_ms[p]        = percentile over the N calls' wall times (numpy's linear method)
    requests_per_s       = N / (time from the first send to the last answer)
    stage_p50_ms[s]      = median over the calls of stage s's time (calls that report stages)
    outside_model_p50    = median over the calls of (sum of all stages but "model")
    latency_minus_model  = median over the calls of (wall time - the "model" stage): what the
                           caller waits for beyond the model, transport and encoding included
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["LoadResult", "LoadSummary", "median_summary", "run_load", "summarize"]

PERCENTILES = (50, 95, 99)
MODEL_STAGE = "model"


@dataclasses.dataclass(frozen=True)
class LoadResult:
    """The raw measurements of one run, indexed like the requests sent.

    ``stages_ms[s][i]`` is NaN where call ``i`` did not report stage ``s``.
    """

    name: str
    concurrency: int
    latencies_s: np.ndarray  # float64 [N]
    wall_s: float
    stages_ms: Mapping[str, np.ndarray]  # stage -> float64 [N]


@dataclasses.dataclass(frozen=True)
class LoadSummary:
    """The figures of one run, or the medians over several rounds."""

    name: str
    concurrency: int
    requests: int
    latency_ms: Mapping[int, float]  # percentile -> ms
    requests_per_s: float
    stage_p50_ms: Mapping[str, float]
    outside_model_p50_ms: float | None  # None when the calls report no stages
    latency_minus_model_p50_ms: float | None  # None when the calls report no model stage
    rounds: int = 1


def run_load(
    call: Callable[[Any], Any],
    requests: Sequence[Any],
    concurrency: int,
    *,
    name: str = "",
    warmup: int = 0,
    stages: Callable[[Any], Mapping[str, float] | None] | None = None,
) -> LoadResult:
    """Send every request in ``requests`` once through ``call`` from ``concurrency`` threads.

    ``warmup`` calls (taken from the start of ``requests``, cycled) run first and are not
    measured. ``stages`` maps a call's result to its per-stage milliseconds (default: the
    result's ``timings_ms`` attribute or key, if any). An exception in a call stops the run
    and is raised here, after every worker has stopped.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    if len(requests) == 0:
        raise ValueError("requests must hold at least one request")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    stages = stages or _timings_of
    for i in range(warmup):
        call(requests[i % len(requests)])

    latencies = np.full(len(requests), np.nan)
    reported: list[Mapping[str, float] | None] = [None] * len(requests)
    next_index = iter(range(len(requests)))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        while not errors:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                result = call(requests[i])
            except BaseException as error:  # reraised on the caller's thread
                errors.append(error)
                return
            latencies[i] = time.perf_counter() - start
            reported[i] = stages(result)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return LoadResult(name, concurrency, latencies, wall, _stage_columns(reported))


def _timings_of(result: Any) -> Mapping[str, float] | None:
    if isinstance(result, Mapping):
        return result.get("timings_ms")
    return getattr(result, "timings_ms", None)


def _stage_columns(reported: list[Mapping[str, float] | None]) -> dict[str, np.ndarray]:
    names = sorted({name for r in reported if r for name in r})
    return {
        name: np.array([(r or {}).get(name, np.nan) for r in reported], dtype=np.float64)
        for name in names
    }


def summarize(result: LoadResult) -> LoadSummary:
    """Percentiles, throughput and stage medians of one run (see the module docstring)."""
    latencies_ms = result.latencies_s * 1e3
    stages = result.stages_ms
    outside_names = [name for name in stages if name != MODEL_STAGE]
    outside = None
    if outside_names:
        columns = np.stack([stages[name] for name in outside_names])
        reported = ~np.isnan(columns).all(axis=0)  # calls that timed any stage
        outside = float(np.median(np.nansum(columns[:, reported], axis=0)))
    minus_model = None
    if MODEL_STAGE in stages:
        model_ms = stages[MODEL_STAGE]
        reported = ~np.isnan(model_ms)
        minus_model = float(np.median(latencies_ms[reported] - model_ms[reported]))
    return LoadSummary(
        name=result.name,
        concurrency=result.concurrency,
        requests=len(latencies_ms),
        latency_ms={p: float(np.percentile(latencies_ms, p)) for p in PERCENTILES},
        requests_per_s=len(latencies_ms) / result.wall_s if result.wall_s > 0 else float("inf"),
        stage_p50_ms={name: float(np.nanmedian(v)) for name, v in stages.items()},
        outside_model_p50_ms=outside,
        latency_minus_model_p50_ms=minus_model,
    )


def median_summary(rounds: Sequence[LoadSummary]) -> LoadSummary:
    """The median of each figure over repeated rounds of one configuration."""
    if not rounds:
        raise ValueError("rounds must hold at least one summary")
    first = rounds[0]
    for other in rounds[1:]:
        if (other.name, other.concurrency) != (first.name, first.concurrency):
            raise ValueError(
                f"rounds mix configurations: {first.name!r} x{first.concurrency} and "
                f"{other.name!r} x{other.concurrency}"
            )
    outside = [r.outside_model_p50_ms for r in rounds if r.outside_model_p50_ms is not None]
    minus_model = [
        r.latency_minus_model_p50_ms for r in rounds if r.latency_minus_model_p50_ms is not None
    ]
    stages = sorted({s for r in rounds for s in r.stage_p50_ms})
    return LoadSummary(
        name=first.name,
        concurrency=first.concurrency,
        requests=sum(r.requests for r in rounds),
        latency_ms={p: _median([r.latency_ms[p] for r in rounds]) for p in PERCENTILES},
        requests_per_s=_median([r.requests_per_s for r in rounds]),
        stage_p50_ms={
            s: _median([r.stage_p50_ms[s] for r in rounds if s in r.stage_p50_ms]) for s in stages
        },
        outside_model_p50_ms=_median(outside) if outside else None,
        latency_minus_model_p50_ms=_median(minus_model) if minus_model else None,
        rounds=sum(r.rounds for r in rounds),
    )


def _median(values: list[float]) -> float:
    return float(np.median(values))
