"""A drifting synthetic ad log replayed through the online learner, against a frozen model and a
daily batch retrain: progressive AUC per hour; with ``--serve`` also through ``adrank learn`` +
``adrank serve --online`` as processes on loopback.

Glossary: ``hour`` a slice of the log; ``online`` the FMLearner updated after every hour (the
``adrank learn`` model), trained here in process; ``served`` the same model as ``adrank serve``
answers it: each hour's impressions are ranked over HTTP, one request per user (its creatives
that hour as candidates, the hour in the context), *before* the hour's file is handed to
``adrank learn``, whose publication the server then applies in place; ``frozen`` the same model
trained on day 0 and never again (frozen at the start of day 1); ``daily`` a fresh model
trained at each midnight on the previous day's log (two passes); ``progressive AUC`` each hour
scored by each model *before* any of them learns from it.

The world: every hour ``--new-per-hour`` creatives launch and live ``--lifetime`` hours, each
with its own click effect; users have their own effect and an interest in each of 5 creative
categories that swings through the day. So a model must learn new creatives as they come, and
follow the daily swing. The model's fields are those a served request carries: ``creative_id``
and ``category`` (catalog columns), ``user_id`` (the request's user) and ``hour`` (its context).

Run: ``.venv/bin/python bench/online_drift.py`` (3 days, about a minute on 2 cores); with
``--serve`` (a few minutes more: a small workspace is trained, and Triton serves its dense
part, whose ``p_ctr`` the online rate replaces) and ``--figure auc.png`` for the figure.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from adrank.online import FMLearner, LearnerConfig

FIELDS = ("creative_id", "user_id", "category", "hour")
MODELS = ("online", "served", "frozen", "daily")


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class World:
    def __init__(self, args: argparse.Namespace, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.args = args
        total = args.new_per_hour * args.hours
        self.creative_effect = self.rng.normal(0, 1.2, size=total)
        self.creative_category = self.rng.integers(0, 5, size=total)
        self.user_effect = self.rng.normal(0, 0.5, size=args.users)
        self.user_interest = self.rng.normal(0, 1.0, size=(args.users, 5))
        self.phase = self.rng.uniform(0, 2 * np.pi, size=5)

    def hour(self, h: int) -> dict[str, np.ndarray]:
        a = self.args
        first = max(0, h - a.lifetime + 1) * a.new_per_hour
        live = np.arange(first, (h + 1) * a.new_per_hour)
        creative = self.rng.choice(live, size=a.per_hour)
        user = self.rng.integers(0, a.users, size=a.per_hour)
        category = self.creative_category[creative]
        swing = np.cos(2 * np.pi * (h % 24) / 24 + self.phase[category])
        logit = (
            -1.0
            + self.creative_effect[creative]
            + self.user_effect[user]
            + self.user_interest[user, category] * swing
        )
        click = (self.rng.random(a.per_hour) < 1 / (1 + np.exp(-logit))).astype(np.int64)
        return {
            "creative_id": creative + 1,  # catalog ids start at 1
            "user_id": user,
            "category": category,
            "hour": np.full(a.per_hour, h % 24),
            "click": click,
        }

    def catalog(self, template: Any) -> Any:
        """Every creative of the run as a catalog: the feature columns of ``template`` (a
        workspace's catalog, which its dense model reads), its own id, advertiser and category,
        sold everywhere at a flat CPM, so every candidate is eligible and comes back ranked."""
        import pyarrow as pa

        total = len(self.creative_category)
        rows = template.take(np.arange(total) % len(template)).to_pydict()
        rows.pop("ad_id", None)
        rows.update(
            creative_id=np.arange(1, total + 1),
            advertiser_id=np.arange(1, total + 1),
            category=self.creative_category,
            objective=["CPM"] * total,
            bid=np.full(total, 50.0),
            regions=[[] for _ in range(total)],
            status=["active"] * total,
        )
        return pa.table(rows)


def train(learner: FMLearner, data: dict[str, np.ndarray], now: int, batch: int = 512) -> None:
    for start in range(0, len(data["click"]), batch):
        part = {f: data[f][start : start + batch] for f in FIELDS}
        learner.step(part, data["click"][start : start + batch], now)


def served_rates(both: Any, pool: ThreadPoolExecutor, data: dict[str, np.ndarray], h: int):
    """The served click rate of every impression of hour ``h``: one request per user."""
    users = data["user_id"]
    order = np.argsort(users, kind="stable")
    starts = np.flatnonzero(np.r_[True, users[order][1:] != users[order][:-1]])
    groups = np.split(order, starts[1:])
    bodies = []
    for group in groups:
        candidates = np.unique(data["creative_id"][group]).tolist()
        bodies.append(
            {
                "request_id": f"h{h}-u{users[group[0]]}",
                "user": {"user_id": int(users[group[0]])},
                "context": {"hour": h % 24},
                "candidates": candidates,
                "k": len(candidates),
                "constraints": {"max_per_advertiser": len(candidates)},
            }
        )
    rates = np.empty(len(users))
    versions = set()
    for group, answer in zip(groups, pool.map(both.rank, bodies), strict=True):
        rate = {c["creative_id"]: c["p_ctr"] for c in answer["creatives"]}
        missing = set(data["creative_id"][group].tolist()) - set(rate)
        if missing:
            raise RuntimeError(f"hour {h}: creatives {sorted(missing)[:5]} were not ranked")
        rates[group] = [rate[c] for c in data["creative_id"][group].tolist()]
        versions.add(answer["model_version"])
    return rates, versions


def replay(args: argparse.Namespace, both: Any = None) -> tuple[list[dict[str, float]], dict]:
    """Progressive AUC per hour of each model; with ``both`` (a LearnAndServe) also served."""
    from online_processes import served_publication, write_parquet

    world = World(args)
    config = LearnerConfig(fields=FIELDS, label="click", dim=4, memory_limit_bytes=8 << 20)
    online, frozen, daily = FMLearner(config), None, None
    log: list[dict[str, np.ndarray]] = []
    rows, gaps = [], []
    pool = ThreadPoolExecutor(4)
    if both is not None:  # the learner's first publication (no data yet) is served
        both.wait_served(0, _probe(0))
    for h in range(args.hours):
        data = world.hour(h)
        if h % 24 == 0 and h > 0:
            day = {k: np.concatenate([d[k] for d in log[-24:]]) for k in data}
            daily = FMLearner(config)
            for _ in range(2):
                train(daily, day, h)
            if frozen is None:
                frozen = daily
        scores = {"online": online.predict(data)}
        if both is not None:
            scores["served"], versions = served_rates(both, pool, data, h)
            gaps.append(float(np.max(np.abs(scores["served"] - scores["online"]))))
            if {served_publication(v) for v in versions} != {h}:  # learned hours 0..h-1
                raise RuntimeError(f"hour {h} was served by {versions}, not publication {h}")
        if frozen is not None:
            scores["frozen"] = frozen.predict(data)
            scores["daily"] = daily.predict(data)
        rows.append({name: auc(s, data["click"]) for name, s in scores.items()})
        train(online, data, h)
        log.append(data)
        if both is not None:  # adrank learn learns the hour; the server applies it in place
            name = f"hour-{h:03d}.parquet"
            write_parquet(both.data, name, data)
            publication = None
            while publication is None:
                time.sleep(0.005)
                publication = both.publication_of(name)
            both.wait_served(publication, _probe(h))
    pool.shutdown()
    held = sum(len(t) for t in online.tables.values())
    memory = sum(t.memory_bytes for t in online.tables.values())
    summary = {"rows": held, "memory": memory, "max_gap": max(gaps) if gaps else None}
    return rows, summary


def _probe(h: int) -> dict[str, Any]:
    return {
        "request_id": f"probe-{h}",
        "user": {"user_id": 0},
        "context": {"hour": 0},
        "candidates": [1],
        "k": 1,
    }


def print_tables(rows: list[dict[str, float]], args: argparse.Namespace) -> None:
    names = [m for m in MODELS if any(m in r for r in rows)]
    print("progressive AUC per hour (frozen and daily start after day 0)")
    print("| hour | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for h, row in enumerate(rows):
        cells = [f"{row[m]:.3f}" if m in row else "-" for m in names]
        print(f"| {h} | " + " | ".join(cells) + " |")
    print()
    print("mean over 6-hour blocks")
    print("| hours | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for block in range(0, args.hours, 6):
        part = rows[block : block + 6]
        cells = []
        for m in names:
            values = [r[m] for r in part if m in r]
            cells.append(f"{np.mean(values):.3f}" if values else "-")
        print(f"| {block}-{block + 5} | " + " | ".join(cells) + " |")
    after = rows[24:]
    print(
        f"days 1-{args.days - 1}: "
        + ", ".join(f"{m} {np.mean([r[m] for r in after]):.3f}" for m in names)
    )


def plot(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4.5))
    styles = {"online": "-", "served": ":", "frozen": "--", "daily": "-."}
    for m in MODELS:
        hours = [h for h, r in enumerate(rows) if m in r]
        if hours:
            label = {"served": "online, as served (adrank serve --online)"}.get(m, m)
            axes.plot(hours, [rows[h][m] for h in hours], styles[m], label=label)
    for day in range(24, len(rows), 24):
        axes.axvline(day, color="grey", linewidth=0.5)
    axes.set_xlabel("hour of the replayed log")
    axes.set_ylabel("progressive AUC (scored before learning the hour)")
    axes.set_title("Drifting log: online learning vs frozen after day 0 vs daily retrain")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """The drifting log's settings (bench/online_memory.py replays the same log)."""
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--per-hour", type=int, default=4000)
    parser.add_argument("--new-per-hour", type=int, default=20)
    parser.add_argument("--lifetime", type=int, default=6)
    parser.add_argument("--users", type=int, default=500)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(parser)
    parser.add_argument("--serve", action="store_true", help="replay through learn + serve too")
    parser.add_argument("--workspace", type=Path, help="with --serve: a prepared workspace")
    parser.add_argument("--figure", type=Path, help="write the AUC-over-time figure here (PNG)")
    args = parser.parse_args()
    args.hours = args.days * 24
    if not args.serve:
        rows, summary = replay(args)
    else:
        import pyarrow.parquet as pq

        from adrank.workspace import prepare_workspace
        from online_freshness import WORLD
        from online_processes import LearnAndServe

        root = Path(tempfile.mkdtemp(prefix="adrank-drift-"))
        ws_root = args.workspace or root / "workspace"
        workspace = prepare_workspace(
            ws_root, rows=20_000, world=WORLD, repository=ws_root / "models", say=lambda _: None
        )
        catalog = root / "catalog.parquet"
        pq.write_table(World(args).catalog(pq.read_table(workspace.catalog_path)), catalog)
        data, out = root / "data", root / "out"
        data.mkdir()
        learn = [
            *("--fields", ",".join(FIELDS), "--label", "click", "--dim", "4"),
            *("--memory-mib", "8", "--batch-size", "512", "--poll-seconds", "0.05"),
        ]
        serve = [
            f"--artifacts={workspace.artifacts_dir}",
            f"--catalog={catalog}",
            f"--repository={workspace.repository}",
            "--deadline-ms=5000",
        ]
        with LearnAndServe(data, out, learn, serve, serve_poll_s=0.05) as both:
            rows, summary = replay(args, both)
    print_tables(rows, args)
    print(
        f"online tables: {summary['rows']:,} rows, {summary['memory'] / 2**20:.2f} MiB held "
        "(limit 8 MiB a field)"
    )
    if summary["max_gap"] is not None:
        print(
            f"served vs in-process online click rate: max abs difference {summary['max_gap']:.2e}"
        )
    if args.figure:
        plot(rows, args.figure)
        print(f"figure written to {args.figure}")


if __name__ == "__main__":
    main()
