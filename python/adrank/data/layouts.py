"""Generated logs in the layouts of four public ad datasets, with a signal a model can learn.

Glossary: a *layout* is the columns and conventions of one public log; ``rows`` its size;
``p_click`` (and ``p_conversion``, given a click) the true probabilities, kept out of the files
and returned beside them so a test can compare a model with the truth.

* ``criteo``: Criteo's own TSV without a header: ``label, I1..I13`` (counts, empty when
  missing, ``-1`` occurs, some written as ``260.0``) and ``C1..C26`` (8 hex digits, some empty).
* ``avazu``: CSV with a header, categorical only: a 20-digit row ``id``, ``click``, ``hour``
  (``YYMMDDHH``), ``banner_pos``, hex ``site_id``/``app_id``/``device_model``, ``C14..C17``.
* ``taobao``: CSV: ``clk``, ``time_stamp``, ``userid``, ``adgroup_id``, ``pid`` (text),
  ``cate_id``, ``brand`` (an id with missing values), ``price``, ``age_level`` and
  ``click_sequence``: the user's clicked adgroup ids joined by ``^`` (the ids of
  ``adgroup_id``: one table should hold both).
* ``aliexpress``: CSV: ``search_id``, ``categorical_1..6``, ``numerical_1..8``, ``click`` and
  ``conversion`` (only ever after a click).

None of this is real traffic: it is drawn from the seed, so tests can commit it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LAYOUTS", "generate_layout", "write_layout"]

LAYOUTS = ("criteo", "avazu", "taobao", "aliexpress")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _hex_ids(rng: np.random.Generator, count: int) -> np.ndarray:
    return np.array([f"{v:08x}" for v in rng.integers(0, 2**32, count)], dtype=object)


def _zipf_choice(rng: np.random.Generator, count: int, rows: int) -> np.ndarray:
    """Indices in [0, count) with a long tail, as ids in logs are."""
    weights = 1.0 / np.arange(1, count + 1) ** 0.8
    return rng.choice(count, size=rows, p=weights / weights.sum())


def _criteo(
    world: np.random.Generator, rng: np.random.Generator, rows: int
) -> tuple[dict[str, Any], np.ndarray, None]:
    columns: dict[str, Any] = {}
    logit = np.full(rows, -1.2)
    for i in range(1, 14):
        counts = rng.geometric(0.05 if i % 3 else 0.002, rows).astype(np.float64) - 1.0
        counts[rng.random(rows) < 0.02] = -1.0
        if i == 2:
            logit += 0.6 * (np.log1p(np.maximum(counts, 0)) - 2.5)
        missing = rng.random(rows) < (0.3 if i in (1, 10, 12) else 0.05)
        text = np.where(
            counts % 7 == 0, [f"{c:.1f}" for c in counts], [str(int(c)) for c in counts]
        )
        columns[f"I{i}"] = np.where(missing, "", text)
    for i in range(1, 27):
        cardinality = int(world.choice([4, 12, 40, 150, 600]))
        vocabulary = _hex_ids(world, cardinality)
        picks = _zipf_choice(rng, cardinality, rows)
        if i in (1, 2):
            cardinality = 12 if i == 1 else 40
            vocabulary = _hex_ids(world, cardinality)
            picks = _zipf_choice(rng, cardinality, rows)
            logit += world.normal(0.0, 1.2, cardinality)[picks]
        values = vocabulary[picks]
        values[rng.random(rows) < 0.05] = ""
        columns[f"C{i}"] = values
    return columns, _sigmoid(logit), None


def _avazu(
    world: np.random.Generator, rng: np.random.Generator, rows: int
) -> tuple[dict[str, Any], np.ndarray, None]:
    hours = np.sort(rng.integers(0, 24 * 3, rows))
    day, hour = 21 + hours // 24, hours % 24
    sites, apps, models = _hex_ids(world, 30), _hex_ids(world, 20), _hex_ids(world, 80)
    site, app, model = (_zipf_choice(rng, n, rows) for n in (30, 20, 80))
    banner = rng.choice([0, 1, 2, 7], rows, p=[0.6, 0.3, 0.07, 0.03])
    logit = (
        -1.6
        + world.normal(0.0, 1.0, 30)[site]
        + world.normal(0.0, 0.7, 20)[app]
        + 0.8 * np.sin(hour / 24 * 2 * np.pi)
        + np.array([0.0, 0.6, -0.4, 0.3])[np.searchsorted([0, 1, 2, 7], banner)]
    )
    ids = rng.integers(10**19, 2**64 - 1, rows, dtype=np.uint64)
    columns = {
        "id": np.array([str(v) for v in ids], dtype=object),
        "hour": np.array([f"1410{d:02d}{h:02d}" for d, h in zip(day, hour, strict=True)]),
        "C1": rng.choice([1005, 1002, 1010], rows, p=[0.9, 0.07, 0.03]),
        "banner_pos": banner,
        "site_id": sites[site],
        "app_id": apps[app],
        "device_model": models[model],
        "device_type": rng.choice([1, 0, 4], rows, p=[0.9, 0.05, 0.05]),
        "C14": rng.integers(15_000, 24_000, rows),
        "C15": rng.choice([320, 300, 728], rows),
        "C16": rng.choice([50, 250, 90], rows),
        "C17": rng.integers(1_500, 2_800, rows),
    }
    return columns, _sigmoid(logit), None


def _taobao(
    world: np.random.Generator, rng: np.random.Generator, rows: int
) -> tuple[dict[str, Any], np.ndarray, None]:
    num_ads, num_users = 300, 400
    ad_ids = world.choice(np.arange(100_000, 900_000), num_ads, replace=False)
    appeal = world.normal(0.0, 1.0, num_ads)
    category = world.integers(0, 15, num_ads)
    ad = _zipf_choice(rng, num_ads, rows)
    # Each user's history leans to appealing ads or not: the sequence carries the user's taste.
    taste = world.normal(0.0, 1.0, num_users)
    history = []
    for t in taste:
        length = int(world.integers(0, 8))
        lean = _sigmoid(2.0 * t * appeal)
        history.append(world.choice(num_ads, length, p=lean / lean.sum()) if length else [])
    user = rng.integers(0, num_users, rows)
    mean_appeal = np.array([appeal[h].mean() if len(h) else 0.0 for h in history])
    age = rng.integers(0, 7, rows)
    logit = -1.4 + 1.2 * appeal[ad] + 1.2 * mean_appeal[user] + np.linspace(-0.5, 0.5, 7)[age]
    brand = world.integers(10_000, 10_050, num_ads).astype(np.float64)
    brand[world.random(num_ads) < 0.2] = np.nan  # ids with missing values, as pandas writes them
    sequences = np.array(["^".join(str(ad_ids[i]) for i in h) for h in history], dtype=object)
    seconds = np.sort(rng.integers(0, 86_400, rows))
    columns = {
        "time_stamp": np.array(
            [f"2017-05-06 {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in seconds]
        ),
        "userid": 1_000_000 + user,
        "adgroup_id": ad_ids[ad],
        "pid": np.where(rng.random(rows) < 0.7, "430548_1007", "430539_1007"),
        "cate_id": 4_000 + category[ad],
        "brand": brand[ad],
        "price": np.round(np.exp(world.normal(4.0, 1.0, num_ads)), 2)[ad],
        "age_level": age,
        "click_sequence": sequences[user],
    }
    return columns, _sigmoid(logit), None


def _aliexpress(
    world: np.random.Generator, rng: np.random.Generator, rows: int
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    columns: dict[str, Any] = {"search_id": np.repeat(np.arange(rows // 4 + 1), 4)[:rows]}
    effects = []
    for i in range(1, 7):
        cardinality = [5, 30, 8, 100, 12, 3][i - 1]
        picks = _zipf_choice(rng, cardinality, rows)
        columns[f"categorical_{i}"] = picks + 1
        effects.append(world.normal(0.0, 1.0, cardinality)[picks])
    numbers = rng.normal(0.0, 1.0, (8, rows))
    for i in range(1, 9):
        columns[f"numerical_{i}"] = np.round(numbers[i - 1], 4)
    p_click = _sigmoid(-1.5 + effects[0] + 0.8 * numbers[0])
    p_conversion = _sigmoid(-1.0 + 1.2 * effects[1] + 0.8 * numbers[1])
    return columns, p_click, p_conversion


_GENERATORS = {"criteo": _criteo, "avazu": _avazu, "taobao": _taobao, "aliexpress": _aliexpress}
_CLICK_COLUMN = {"criteo": "label", "avazu": "click", "taobao": "clk", "aliexpress": "click"}


def generate_layout(
    layout: str, rows: int, seed: int = 0, part: int | None = None
) -> tuple[Any, dict[str, np.ndarray]]:
    """(``pyarrow.Table`` of the log in ``layout``, the true probabilities per task).

    ``part``: one part of a log too large to draw at once; parts of one ``seed`` share its
    world (ids, effects) and draw different rows.
    """
    import pyarrow as pa

    if layout not in _GENERATORS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows!r}")
    world = np.random.default_rng(seed)
    rng = world if part is None else np.random.default_rng([seed, part])
    columns, p_click, p_conversion = _GENERATORS[layout](world, rng, rows)
    click = (rng.random(rows) < p_click).astype(np.int8)
    truth = {"click": p_click}
    labels = {_CLICK_COLUMN[layout]: click}
    if p_conversion is not None:
        conversion = click * (rng.random(rows) < p_conversion)
        labels["conversion"] = conversion.astype(np.int8)
        truth["conversion"] = p_click * p_conversion
    if layout == "criteo":
        ordered = {**labels, **columns}
    elif layout == "aliexpress":
        ordered = {**columns, **labels}
    else:
        first = next(iter(columns))
        ordered = {first: columns[first], **labels, **{k: columns[k] for k in list(columns)[1:]}}
    # NaN as null: a float id column with missing values, as pandas writes one
    return pa.table({k: pa.array(v, from_pandas=True) for k, v in ordered.items()}), truth


def write_layout(
    layout: str,
    path: str | Path,
    rows: int,
    seed: int = 0,
    *,
    format: str = "text",
    partition_by: str | None = None,
) -> dict[str, np.ndarray]:
    """Write a generated log; returns the truth.

    ``format``: ``"text"`` (the layout's own convention: Criteo's headerless TSV, CSV for the
    others), ``"jsonl"``, or ``"parquet"`` (a file, or a directory of hive partitions by
    ``partition_by``).
    """
    import pyarrow.csv as pacsv

    table, truth = generate_layout(layout, rows, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "parquet":
        import pyarrow.parquet as pq

        if partition_by is None:
            pq.write_table(table, path)
        else:
            pq.write_to_dataset(table, path, partition_cols=[partition_by])
        return truth
    if format == "jsonl":
        import json

        names = table.column_names
        with path.open("w") as handle:
            for row in zip(*(table.column(n).to_pylist() for n in names), strict=True):
                handle.write(json.dumps(dict(zip(names, row, strict=True))) + "\n")
        return truth
    if format != "text":
        raise ValueError(f"format must be 'text', 'jsonl' or 'parquet', got {format!r}")
    if layout == "criteo":  # Criteo's TSV: no header, empty fields for missing values
        options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    else:
        options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
    pacsv.write_csv(table, path, write_options=options)
    return truth
