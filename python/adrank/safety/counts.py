"""What a safety gate blocks in a catalog: counts per region and rule kind.

Glossary: a *rule kind* is the part of an audit entry's rule before the colon (``keyword``,
``category``, ``advertiser``, ``age_gate``, ``classifier``); a creative blocked by two rules
counts once in ``blocked`` and once under each kind; ``age_gated`` creatives are shown only to
users old enough, and are not in ``blocked``.

    python -m adrank.safety.counts [--rules FILE] [--catalog FILE.parquet]

By default: the packaged demo rules (``demo_rules.toml``) over the demo world's catalog drawn
with content (:data:`adrank.workspace.DEMO_WORLD` with captions and hashtags: the demo's
creatives, ids and all, with the text the keyword rules and the classifier read).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from adrank.safety.gate import SafetyGate
from adrank.safety.rules import SafetyRules

DEMO_RULES = Path(__file__).with_name("demo_rules.toml")
KINDS = ("keyword", "category", "advertiser", "classifier", "age_gate")


def region_counts(gate: SafetyGate, catalog: Any) -> dict[str, dict[str, int]]:
    """Per region with rules: ``blocked`` (creatives), ``age_gated``, and per rule kind."""
    decisions = gate.decide(catalog)
    kinds: dict[str, Counter] = {region: Counter() for region in gate.rules.regions}
    after, entries = 0, []
    while True:
        page = gate.store.entries(None, None, after, 1_000)
        if not page:
            break
        entries += page
        after = page[-1].id
    for entry in entries:
        if entry.region in kinds and not entry.rule.startswith("override"):
            kinds[entry.region][entry.rule.split(":")[0]] += 1
    return {
        region: {
            "blocked": int(np.count_nonzero(decisions.blocked[region])),
            "age_gated": int(np.count_nonzero(decisions.min_age[region] > 0)),
            **{kind: kinds[region][kind] for kind in KINDS},
        }
        for region in gate.rules.regions
    }


def demo_catalog() -> Any:
    """The demo workspace's catalog (its world, seeds and paused share), drawn with content."""
    from adrank.data import generate_log
    from adrank.data.catalog import catalog_table
    from adrank.orchestrator.catalog import Catalog
    from adrank.workspace import DEMO_WORLD

    world = dataclasses.replace(DEMO_WORLD, content=True)
    log = generate_log(10, seed=0, config=world)  # creatives are drawn before impressions
    return Catalog.from_arrow(catalog_table(log, paused_share=0.05, seed=0))


def markdown(counts: dict[str, dict[str, int]], creatives: int) -> str:
    head = ["region", "blocked", "age-gated", *KINDS]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for region, row in counts.items():
        cells = [region, f"{row['blocked']} of {creatives}", str(row["age_gated"])]
        lines.append("| " + " | ".join(cells + [str(row[k]) for k in KINDS]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=DEMO_RULES, help="safety rules (TOML)")
    parser.add_argument("--catalog", type=Path, help="catalog Parquet (default: the demo's)")
    args = parser.parse_args(argv)
    from adrank.orchestrator.catalog import Catalog

    try:
        rules = SafetyRules.from_toml(args.rules)
    except (OSError, ValueError, TypeError) as error:
        raise SystemExit(f"--rules: {error}") from None
    catalog = demo_catalog() if args.catalog is None else Catalog.from_parquet(args.catalog)
    gate = SafetyGate(rules)
    counts = region_counts(gate, catalog)
    print(f"{args.rules} over {args.catalog or 'the demo catalog'} ({len(catalog)} creatives)")
    print(markdown(counts, len(catalog)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
