"""Memory of the dynamic tables against static hashed tables at equal AUC, on the drifting log.

Glossary: ``static B`` the online model over fixed tables: ``creative_id`` and ``user_id``
hashed into ``B`` rows each (colliding ids share a row), ``category`` and ``hour`` in tables
of their exact size (5 and 24 rows); its bytes are ``rows x (dim + 1) x 4`` (the weight and
the factor of each row; Adagrad's state, one float a row, left out of both sides).
``dynamic L`` the same model over collisionless dynamic tables with a memory limit of ``L``
per field (and, with ``ttl``, rows unseen for that many hours expire); its bytes are what the
tables report (``peak_memory_bytes``, summed over fields: rows, index, logs, everything).
``AUC`` the progressive AUC over days 1 to the last (each hour scored before it is learned),
the drifting log and protocol of ``bench/online_drift.py``.

Equal AUC: the target is the dynamic tables' AUC without memory pressure (8 MiB a field);
the smallest configuration of each kind within ``--tolerance`` of it is reported.

Run: ``.venv/bin/python bench/online_memory.py`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse

import numpy as np

from adrank.online import FMLearner, LearnerConfig
from online_drift import World, add_world_arguments, auc, train

HASHED = ("creative_id", "user_id")
DIM = 4


def bucket(ids: np.ndarray, rows: int) -> np.ndarray:
    """A multiplicative hash of int64 ids into ``rows`` buckets (collisions as a static table)."""
    mixed = ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return ((mixed >> np.uint64(32)) % np.uint64(rows)).astype(np.int64)


def run(args: argparse.Namespace, static_rows: int | None, limit: int, ttl: int = 0):
    """Mean progressive AUC after day 0, and the peak bytes the tables held."""
    world = World(args)
    config = LearnerConfig(
        fields=("creative_id", "user_id", "category", "hour"),
        label="click",
        dim=DIM,
        memory_limit_bytes=limit,
        ttl=ttl,
    )
    learner = FMLearner(config)
    aucs = []
    for h in range(args.hours):
        data = world.hour(h)
        if static_rows is not None:
            data = {**data, **{f: bucket(data[f], static_rows) for f in HASHED}}
        if h >= 24:
            aucs.append(auc(learner.predict(data), data["click"]))
        train(learner, data, h)
        if ttl:
            learner.expire(h)
    if static_rows is None:
        held = sum(t.peak_memory_bytes for t in learner.tables.values())
    else:
        held = (2 * static_rows + 5 + 24) * (DIM + 1) * 4
    rows = sum(len(t) for t in learner.tables.values())
    return float(np.mean(aucs)), held, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(parser)
    parser.add_argument("--tolerance", type=float, default=0.002)
    args = parser.parse_args()
    args.hours = args.days * 24
    results = []
    for limit_kib in (8192, 512, 128, 64, 32):
        for ttl in (0, 8):
            name = f"dynamic {limit_kib} KiB/field" + (f", ttl {ttl} h" if ttl else "")
            results.append((name, "dynamic", *run(args, None, limit_kib << 10, ttl)))
    for rows in (16384, 4096, 2048, 1024, 512, 256, 128, 64):
        results.append((f"static {rows} rows/hashed field", "static", *run(args, rows, 8 << 20)))
    target = results[0][2]
    print(f"progressive AUC over days 1-{args.days - 1}; target {target:.4f} (dynamic, 8 MiB)")
    print("| tables | AUC | bytes held | live rows |")
    print("|---|---|---|---|")
    for name, _, value, held, rows in results:
        print(f"| {name} | {value:.4f} | {held / 1024:,.1f} KiB | {rows:,} |")
    for kind in ("dynamic", "static"):
        reaching = [r for r in results if r[1] == kind and r[2] >= target - args.tolerance]
        if reaching:
            name, _, value, held, _ = min(reaching, key=lambda r: r[3])
            print(
                f"smallest {kind} within {args.tolerance} of the target: {name}, AUC "
                f"{value:.4f}, {held / 1024:,.1f} KiB"
            )
        else:
            print(f"no {kind} configuration reaches the target within {args.tolerance}")


if __name__ == "__main__":
    main()
