"""Recovery time of ``adrank serve``'s embedded Triton after a SIGKILL, over several kills.

Builds a small workspace (or uses ``--workspace``), starts the serving stack (embedded,
supervised Triton; uvicorn on loopback), then ``--kills`` times: loads it with ``--clients``
threads of ``--candidates``-candidate requests, SIGKILLs tritonserver, and times how long the
service takes to answer 200 again (see :mod:`adrank.triton.kill_drill`). Prints each kill's
answers by status, the supervisor's downtime (death noticed to server ready and warmed up),
what was cleaned up, and the p50 and worst recovery.

Run: ``PATH=$PWD/.venv/bin:$PATH .venv/bin/python bench/triton_kill_recovery.py``
(``--fallback`` to measure degraded answers instead of 503s).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from adrank.data import SyntheticConfig
from adrank.service.schemas import rank_request_json
from adrank.service.stack import HttpServer, serving_stack
from adrank.triton.kill_drill import kill_under_load
from adrank.triton.supervisor import RestartPolicy
from adrank.workspace import fallback_rates, prepare_workspace, sample_requests

WORLD = SyntheticConfig(
    num_advertisers=40, num_campaigns=120, num_creatives=2000, num_users=2000, num_categories=8
)


def _recovered(seconds: float | None) -> str:
    return "did not recover in 30 s" if seconds is None else f"recovered in {seconds:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a prepared workspace (default: built)")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--fallback", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the supervisor")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    root = args.workspace or Path(tempfile.mkdtemp(prefix="adrank-kill-"))
    workspace = prepare_workspace(
        root, rows=20_000, world=WORLD, repository=root / "models", say=lambda _: None
    )
    request = sample_requests(workspace, 1, candidates=args.candidates, k=8, seed=3)[0]
    recoveries, downtimes = [], []
    with (
        serving_stack(
            workspace.artifacts_dir,
            workspace.catalog_path,
            repository=workspace.repository,
            fallback=fallback_rates(workspace) if args.fallback else None,
            # Every kill uses a try: the default 5 per 5 minutes would end the measurement.
            restart_policy=RestartPolicy(max_restarts=4 * args.kills),
        ) as stack,
        HttpServer(stack.app) as http,
    ):
        supervisor = stack.supervisor
        for kill in range(args.kills):
            pid = stack.triton.pid
            drill = kill_under_load(
                http.url,
                rank_request_json(request),
                lambda pid=pid: os.kill(pid, signal.SIGKILL),
                clients=args.clients,
            )
            deadline = time.monotonic() + 60
            while supervisor.state == "restarting" and time.monotonic() < deadline:
                time.sleep(0.05)  # the warm-up may end after the first 200s
            if supervisor.state != "serving":
                raise SystemExit(f"kill {kill + 1}: {supervisor.liveness()[1]}")
            recovery = supervisor.recoveries[-1]
            reasons = sorted({a.error.split(" at ")[0] for a in drill.failures() if a.error})
            print(
                f"kill {kill + 1}: pid {pid}, {_recovered(drill.recovery_s)}; answers "
                f"{dict(sorted(drill.statuses.items()))} ({drill.degraded} degraded); "
                f"server down {recovery.downtime_s:.2f} s, tries {recovery.tries}; "
                f"503 reasons {reasons[:2]}",
                flush=True,
            )
            if drill.recovery_s is not None:
                recoveries.append(drill.recovery_s)
            downtimes.append(recovery.downtime_s)
            time.sleep(1.0)
    if recoveries:
        print(
            f"recovery after SIGKILL over {len(recoveries)} kills ({args.clients} clients, "
            f"{args.candidates} candidates, {'--fallback' if args.fallback else '503'}): "
            f"p50 {statistics.median(recoveries):.2f} s, worst {max(recoveries):.2f} s; "
            f"supervisor downtime p50 {statistics.median(downtimes):.2f} s"
        )
    if len(recoveries) < args.kills:
        print(f"{args.kills - len(recoveries)} kill(s) did not recover within 30 s")


if __name__ == "__main__":
    main()
