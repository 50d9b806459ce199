"""Freshness under real serving: from an event to a served answer that has learned from it.

Glossary: ``event time`` when an impression of the probe file happened (its ``time`` column:
the moment the file was made); ``landed`` when the file appeared whole in the learner's folder
(renamed into place); ``served`` when ``POST /v1/rank`` first came back naming a publication
that learned from the file (``model_version`` ``+online.N``, N's ``sources`` holding the file);
``published`` when ``adrank learn`` renamed that publication into place.

``adrank learn`` and ``adrank serve --online`` run as processes of their own on loopback
(``bench/online_processes.py``) over a small trained workspace. ``--probes`` times, at a random
moment (so the probes fall anywhere in the two polling cycles), a file of ``--rows``
impressions lands, and a client ranks a fixed request every 5 ms until the answer names a
publication that learned from it. Prints p50 and p99 (and the worst) of event -> served,
landed -> served, and its two parts (landed -> published, published -> served).

Run: ``PATH=$PWD/.venv/bin:$PATH .venv/bin/python bench/online_freshness.py``
(``--learn-poll`` and ``--serve-poll`` set the two polling periods; the defaults of
``adrank learn`` and ``adrank serve --online`` are 1.0 s and 0.5 s).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from adrank.data import SyntheticConfig
from adrank.service.schemas import rank_request_json
from adrank.workspace import prepare_workspace, sample_requests
from online_processes import LearnAndServe, write_parquet

WORLD = SyntheticConfig(
    num_advertisers=20, num_campaigns=60, num_creatives=600, num_users=500, num_categories=8
)


def percentiles(values: list[float]) -> str:
    a = np.asarray(values)
    return (
        f"p50 {np.percentile(a, 50) * 1e3:7.0f} ms   p99 {np.percentile(a, 99) * 1e3:7.0f} ms"
        f"   worst {a.max() * 1e3:7.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a prepared workspace (default: built)")
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--rows", type=int, default=2000, help="impressions per probe file")
    parser.add_argument("--learn-poll", type=float, default=0.1, help="adrank learn --poll-seconds")
    parser.add_argument("--serve-poll", type=float, default=0.1, help="--online-poll-seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="adrank-freshness-"))
    ws_root = args.workspace or root / "workspace"
    workspace = prepare_workspace(
        ws_root, rows=20_000, world=WORLD, repository=ws_root / "models", say=lambda _: None
    )
    request = sample_requests(workspace, 1, candidates=200, k=10, seed=3)[0]
    body = rank_request_json(request)
    creatives = pq.read_table(workspace.catalog_path, columns=["creative_id"])["creative_id"]
    creatives = creatives.to_numpy()
    rng = np.random.default_rng(args.seed)
    data, out = root / "data", root / "out"
    data.mkdir()
    learn = [
        *("--fields", "creative_id,user_id", "--label", "click"),
        *("--poll-seconds", str(args.learn_poll), "--batch-size", "1024"),
    ]
    serve = [
        f"--workspace={workspace.root}",
        f"--repository={workspace.repository}",
        "--deadline-ms=5000",
    ]
    from_event, from_landing, to_published, to_served = [], [], [], []
    with LearnAndServe(data, out, learn, serve, serve_poll_s=args.serve_poll) as both:
        both.wait_served(0, body)  # the learner's first snapshot is served
        for i in range(args.probes):
            time.sleep(rng.uniform(0.2, 1.0))
            event_time = time.time()
            columns = {
                "creative_id": rng.choice(creatives, size=args.rows),
                "user_id": rng.integers(0, WORLD.num_users, size=args.rows),
                "time": np.full(args.rows, event_time),
                "click": (rng.random(args.rows) < 0.1).astype(np.int64),
            }
            name = f"{i:05d}.parquet"
            landed = write_parquet(data, name, columns)
            publication = None
            while publication is None:
                publication = both.publication_of(name)
                if publication is None:
                    time.sleep(0.005)
            _, served = both.wait_served(publication, body)
            dense = out / "publications" / f"{publication:08d}" / "dense.json"
            published = json.loads(dense.read_text())["published_at"]
            from_event.append(served - event_time)
            from_landing.append(served - landed)
            to_published.append(published - landed)
            to_served.append(served - published)
    print(
        f"freshness over {args.probes} probe files of {args.rows} impressions; adrank learn "
        f"--poll-seconds {args.learn_poll}, adrank serve --online-poll-seconds {args.serve_poll}"
    )
    print(f"event    -> served     {percentiles(from_event)}")
    print(f"landed   -> served     {percentiles(from_landing)}")
    print(f"  landed    -> published  {percentiles(to_published)}")
    print(f"  published -> served     {percentiles(to_served)}")


if __name__ == "__main__":
    main()
