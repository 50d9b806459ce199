"""Candidates that come with their features in the request: ranking without a catalog.

Glossary: ``C`` candidates; a *row* is one candidate's raw values, by column name.

A model whose inputs all arrive with the request (a Criteo-style model, whose fields all
describe the impression) has no creative catalog to join. Its requests carry the candidates
themselves: each row holds the raw values of the schema's columns that vary per candidate and
what selection and pricing need. A schema column a row leaves out takes the request's
``user``/``context`` value (missing if neither has it). Business columns (see
:mod:`adrank.orchestrator.catalog`):

    creative_id    int64, unique        required
    bid            float                required (per thousand, per click or, for oCPM, unused)
    objective      CPM | CPC | OCPM     required
    advertiser_id  int64                default: the creative id (caps then bind per creative)
    campaign_id    int64                default: the creative id (pacing and kill switches)
    category       int64                default: -1 (no category)
    target_cpa     float                default: 0
    regions        list of str          default: [] (sold everywhere)
    status         active | paused      default: active
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adrank.orchestrator.catalog import Catalog

REQUIRED_INLINE_COLUMNS = ("creative_id", "bid", "objective")


def candidate_ids(rows: Any) -> np.ndarray:
    """The creative ids of ``rows`` (a pyarrow Table), in row order."""
    import pyarrow as pa

    if not isinstance(rows, pa.Table):
        raise TypeError(f"candidate_rows must be a pyarrow.Table, got {type(rows).__name__}")
    if "creative_id" not in rows.column_names:
        raise ValueError("candidate_rows is missing required columns: creative_id")
    column = rows["creative_id"]
    if not pa.types.is_integer(column.type) or column.null_count:
        raise ValueError("candidate_rows column creative_id must hold integers, without nulls")
    return np.asarray(column.to_numpy(), dtype=np.int64)


def inline_catalog(rows: Any) -> Catalog:
    """The request's own catalog: ``rows`` (a pyarrow Table) with the defaults filled in."""
    import pyarrow as pa
    import pyarrow.compute as pc

    candidate_ids(rows)
    missing = [c for c in REQUIRED_INLINE_COLUMNS if c not in rows.column_names]
    if missing:
        raise ValueError(f"candidate_rows is missing required columns: {', '.join(missing)}")
    count = rows.num_rows
    defaults = {
        "advertiser_id": lambda: rows["creative_id"],
        "campaign_id": lambda: rows["creative_id"],
        "category": lambda: pa.array([-1] * count, pa.int64()),
        "target_cpa": lambda: pa.array([0.0] * count, pa.float64()),
        "regions": lambda: pa.array([[]] * count, pa.list_(pa.string())),
        "status": lambda: pa.array(["active"] * count, pa.string()),
    }
    for name, default in defaults.items():
        if name not in rows.column_names:
            rows = rows.append_column(name, default())
        elif rows[name].null_count:  # a row that leaves it out (JSON rows may differ)
            filled = pc.coalesce(rows[name], default().cast(rows[name].type))
            rows = rows.set_column(rows.column_names.index(name), name, filled)
    try:
        return Catalog.from_arrow(rows, version="inline")
    except ValueError as error:
        raise ValueError(str(error).replace("catalog", "candidate_rows", 1)) from None
