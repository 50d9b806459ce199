"""Runs a job over a directory's partitions: on Ray Data (actors that each build the job once),
or in this process (the baseline the Ray runs are measured against).

Glossary: see :mod:`adrank.batch`. ``workers``: Ray actors, each on one CPU, each holding one
Ranker (or pipeline); a partition is one Ray Data row, so work is handed out a partition at a
time and a task that fails (a worker that dies) is retried by Ray on another worker; its
output is written once whatever the tries (:func:`adrank.batch.partitions.write_once`).

Without ``address`` a local Ray starts on loopback (no dashboard, a small object store,
``workers`` CPUs) and stops at the end; with one, the job joins that cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from adrank.batch.jobs import JobSpec, build_job, read_partition
from adrank.batch.partitions import write_once

OBJECT_STORE_BYTES = 128 * 1024**2  # partitions travel as paths: the store holds little
MAX_WORKERS = 256


@dataclasses.dataclass(frozen=True)
class PartitionDone:
    """One partition's result: its rows, seconds spent (``seconds``: all of it, of which
    ``read_s`` reading, ``job_s`` ranking or preparing, ``write_s`` writing), whether this run
    wrote it."""

    input: str
    output: str
    rows: int
    seconds: float
    written: bool
    read_s: float = 0.0
    job_s: float = 0.0
    write_s: float = 0.0


def run_partition(job: Callable[[Any], Any], source: str, target: str) -> PartitionDone:
    start = time.perf_counter()
    table = read_partition(source)
    read = time.perf_counter()
    result = job(table)
    done = time.perf_counter()
    written = write_once(result, target)
    end = time.perf_counter()
    return PartitionDone(
        source, target, table.num_rows, end - start, written, read - start, done - read, end - done
    )


def run_in_process(
    spec: JobSpec,
    pairs: list[tuple[Path, Path]],
    progress: Callable[[PartitionDone, int, int], None] | None = None,
) -> list[PartitionDone]:
    """The job over the partitions one after another in this process."""
    job = build_job(spec)
    done = []
    for source, target in pairs:
        done.append(run_partition(job, str(source), str(target)))
        if progress is not None:
            progress(done[-1], len(done), len(pairs))
    return done


class _Worker:
    """A Ray Data actor: builds the job once, then runs it over each partition it is given."""

    def __init__(self, spec: JobSpec) -> None:
        self._job = build_job(spec)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return dataclasses.asdict(run_partition(self._job, row["input"], row["output"]))


def check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ValueError(f"workers must be an integer, got {workers!r}")
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be in [1, {MAX_WORKERS}], got {workers}")
    return workers


@contextlib.contextmanager
def ray_cluster(address: str | None, workers: int) -> Iterator[Any]:
    """Joins ``address``, or starts a local Ray on loopback for ``workers`` CPUs; yields ray."""
    import ray

    if ray.is_initialized():  # the caller's cluster (tests, notebooks): use it as it is
        yield ray
        return
    if address is not None:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=check_workers(workers),
            include_dashboard=False,
            object_store_memory=OBJECT_STORE_BYTES,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        yield ray
    finally:
        ray.shutdown()


def run_on_ray(
    spec: JobSpec,
    pairs: list[tuple[Path, Path]],
    workers: int,
    address: str | None = None,
    progress: Callable[[PartitionDone, int, int], None] | None = None,
    started: Callable[[], None] | None = None,
) -> list[PartitionDone]:
    """The job over the partitions on ``workers`` Ray actors (see the module docstring).
    ``started`` is called once the cluster is up (to tell its start from the work)."""
    check_workers(workers)
    with ray_cluster(address, workers) as ray:
        if started is not None:
            started()
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # one line per partition instead (progress)
        items = [{"input": str(s), "output": str(t)} for s, t in pairs]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map(
            _Worker,
            fn_constructor_kwargs={"spec": spec},
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
        done = []
        for row in dataset.iter_rows():
            done.append(PartitionDone(**row))
            if progress is not None:
                progress(done[-1], len(done), len(pairs))
    return done
