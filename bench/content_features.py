"""The AUC the creative content features bring: one synthetic log drawn with content
(``SyntheticConfig(content=True)``: topics drive the true click rate), the ranker trained on it
with and without the content fields, held-out click AUC of each beside the oracle.

Glossary: *without content* the default schema (ids and metadata only); *with content* the
content schema (``content_schema.toml``: caption as hashed word n-grams, hashtags, visual and
audio tags, the creative's topic, the user's topic interests and their relevance cross);
*content, no relevance cross* the same without the ``topic_interests_x_topic`` cross (how much
of the gain the explicit user-creative relevance carries); *oracle* the AUC of the log's true
click probabilities on the same held-out rows (the ceiling).

    .venv/bin/python bench/content_features.py                       # 300,000 rows, seed 0
    .venv/bin/python bench/content_features.py --rows 1000000 --seed 1 --json out.json

Every schema gets the same log, held-out split, seed and optimizer settings (the defaults of
``adrank train``, one epoch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from pathlib import Path

from adrank.data import generate_log
from adrank.features import content_schema_path, default_schema_path, parse_schema
from adrank.training.loop import TrainConfig, train
from adrank.training.report import oracle_for
from adrank.workspace import DEMO_WORLD

RELEVANCE_CROSS = "topic_interests_x_topic"


def schemas() -> dict[str, object]:
    """The schemas compared, by the name the table prints."""
    content_text = content_schema_path().read_text()
    section = re.compile(rf"\[fields\.{RELEVANCE_CROSS}\](?:(?!\n\[).)*", re.S)  # to the next
    return {
        "without content": parse_schema(default_schema_path().read_text()),
        "content, no relevance cross": parse_schema(section.sub("", content_text)),
        "with content": parse_schema(content_text),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    world = dataclasses.replace(DEMO_WORLD, content=True)
    log = generate_log(args.rows, seed=args.seed, config=world)
    config = TrainConfig(seed=args.seed, epochs=args.epochs)
    results: dict[str, dict[str, float]] = {}
    heldout = None
    for name, schema in schemas().items():
        start = time.perf_counter()
        result = train(log.impressions, schema, config=config)
        heldout = result.heldout_rows  # the same split for every schema (same rows and seed)
        results[name] = {
            "click_auc": result.metrics["click"]["auc"],
            "click_log_loss": result.metrics["click"]["log_loss"],
            "train_s": time.perf_counter() - start,
        }
    oracle = oracle_for(log.impressions, heldout)["click"]
    baseline = results["without content"]["click_auc"]
    print(f"rows {args.rows:,}  seed {args.seed}  epochs {args.epochs}  world: demo + content")
    print(f"{'schema':<30}{'click AUC':>10}{'gain':>9}{'of gap':>8}{'log loss':>10}")
    for name, r in results.items():
        gain = r["click_auc"] - baseline
        share = gain / (oracle - baseline) if oracle > baseline else float("nan")
        print(
            f"{name:<30}{r['click_auc']:10.4f}{gain:+9.4f}{share:8.0%}{r['click_log_loss']:10.4f}"
        )
    print(f"{'oracle (true p_click)':<30}{oracle:10.4f}{oracle - baseline:+9.4f}")
    if args.json:
        payload = {"rows": args.rows, "seed": args.seed, "epochs": args.epochs, "oracle": oracle}
        args.json.write_text(json.dumps({**payload, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
