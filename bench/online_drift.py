"""A drifting synthetic ad log replayed through the online learner, against a frozen model and a
daily batch retrain: progressive AUC per block of hours.

Glossary: ``hour`` a slice of the log; ``online`` the FMLearner updated after every hour (the
``adrank learn`` model); ``frozen`` the same model trained on day 0 and never again;
``daily`` a fresh model trained at each midnight on the previous day's log (two passes);
``progressive AUC`` each hour scored by each model *before* any of them learns from it.

The world: every hour ``--new-per-hour`` creatives launch and live ``--lifetime`` hours, each
with its own click effect; users have their own effect and an interest in each of 5 creative
categories that swings through the day. So a model must learn new creatives as they come, and
follow the daily swing.

Run: ``.venv/bin/python bench/online_drift.py`` (3 days, about a minute on 2 cores).
"""

from __future__ import annotations

import argparse

import numpy as np

from adrank.online import FMLearner, LearnerConfig

FIELDS = ("creative", "user", "category_hour")


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
        # The hour of day crossed with the category: a feature a model can tie the swing to.
        category_hour = category * 24 + h % 24
        return {"creative": creative, "user": user, "category_hour": category_hour, "click": click}


def train(learner: FMLearner, data: dict[str, np.ndarray], now: int, batch: int = 512) -> None:
    for start in range(0, len(data["click"]), batch):
        part = {f: data[f][start : start + batch] for f in FIELDS}
        learner.step(part, data["click"][start : start + batch], now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--per-hour", type=int, default=4000)
    parser.add_argument("--new-per-hour", type=int, default=20)
    parser.add_argument("--lifetime", type=int, default=6)
    parser.add_argument("--users", type=int, default=3000)
    args = parser.parse_args()
    args.hours = args.days * 24
    world = World(args)
    config = LearnerConfig(fields=FIELDS, label="click", dim=4, memory_limit_bytes=8 << 20)
    online, frozen, daily = FMLearner(config), None, None
    log: list[dict[str, np.ndarray]] = []
    rows = []
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
        if frozen is not None:
            scores["frozen"] = frozen.predict(data)
            scores["daily"] = daily.predict(data)
        rows.append({name: auc(s, data["click"]) for name, s in scores.items()})
        train(online, data, h)
        log.append(data)

    print("progressive AUC, mean over 6-hour blocks (frozen and daily start after day 0)")
    print("| hours | online | frozen (day 0) | daily retrain |")
    print("|---|---|---|---|")
    for block in range(0, args.hours, 6):
        part = rows[block : block + 6]

        def mean(name: str, part: list[dict[str, float]] = part) -> str:
            values = [r[name] for r in part if name in r]
            return f"{np.mean(values):.3f}" if values else "-"

        print(f"| {block}-{block + 5} | {mean('online')} | {mean('frozen')} | {mean('daily')} |")
    after = rows[24:]
    print(
        f"days 1-{args.days - 1}: online {np.mean([r['online'] for r in after]):.3f}, "
        f"frozen {np.mean([r['frozen'] for r in after]):.3f}, "
        f"daily {np.mean([r['daily'] for r in after]):.3f}"
    )
    held = sum(len(t) for t in online.tables.values())
    memory = sum(t.memory_bytes for t in online.tables.values())
    print(f"online tables: {held:,} rows, {memory / 2**20:.1f} MiB held (limit 8 MiB a field)")


if __name__ == "__main__":
    main()
