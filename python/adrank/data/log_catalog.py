"""A serving catalog built from a log: one row per creative, its latest creative-side values.

Glossary: ``R`` creatives; *creative-side columns* are the columns of the schema's fields
with ``side = "creative"`` (crosses excluded); a creative's values are those of the last row
it appears on. The table has the columns :class:`adrank.orchestrator.catalog.Catalog`
requires (ids, objective, bid, target CPA, regions, status) plus the creative-side columns
under their own names, so the serving encoder hashes them as training did.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from adrank.data.column_types import convert_column
from adrank.data.log_errors import BadRowBudget, LogError
from adrank.data.readers import LogReader
from adrank.features.log_check import column_kinds
from adrank.features.schema import FeatureSchema

__all__ = ["CatalogColumns", "build_catalog"]

_OBJECTIVES = ("CPM", "CPC", "OCPM")


@dataclasses.dataclass(frozen=True)
class CatalogColumns:
    """Which log columns give the catalog's required columns; None takes the default
    (advertiser and campaign: the creative itself; category 0; bid ``default_bid``;
    target CPA 0)."""

    creative_id: str
    advertiser_id: str | None = None
    campaign_id: str | None = None
    category: str | None = None
    bid: str | None = None
    target_cpa: str | None = None
    objective: str = "CPC"
    default_bid: float = 1.0

    def __post_init__(self) -> None:
        if self.objective.upper() not in _OBJECTIVES:
            raise ValueError(
                f"objective must be one of {list(_OBJECTIVES)}, got {self.objective!r}"
            )
        if not (self.default_bid >= 0 and np.isfinite(self.default_bid)):
            raise ValueError(f"default_bid must be a finite number >= 0, got {self.default_bid}")


def _last_per_id(table: Any, id_column: str) -> Any:
    """The last row of each id in ``table``, sorted by id."""
    ids = table.column(id_column).to_numpy(zero_copy_only=False)
    _, first_from_end = np.unique(ids[::-1], return_index=True)
    return table.take(len(ids) - 1 - first_from_end)


def build_catalog(
    reader: LogReader,
    schema: FeatureSchema,
    columns: CatalogColumns,
    *,
    budget: BadRowBudget | None = None,
) -> Any:
    """A ``pyarrow.Table`` catalog of every creative in the log, sorted by creative id."""
    import pyarrow as pa

    kinds = column_kinds(schema)
    creative = [f.column for f in schema.fields if f.side == "creative" and f.kind != "cross"]
    creative = list(dict.fromkeys(creative))
    if not creative:
        raise LogError(
            reader.path,
            f"schema {schema.name!r} has no creative-side field: a catalog would hold only ids "
            "(serve such a model with the features in the request instead)",
        )
    numeric = {c: "float" for c in (columns.bid, columns.target_cpa) if c is not None}
    ids = {
        c: "int"
        for c in (columns.creative_id, columns.advertiser_id, columns.campaign_id, columns.category)
        if c is not None
    }
    wanted = {**{c: kinds.get(c, "auto") for c in creative}, **numeric, **ids}
    latest = None
    for batch in reader.batches(wanted, columns=list(wanted), budget=budget):
        table = batch.table
        id_column = table.column(columns.creative_id)
        if id_column.null_count:
            row = int(np.flatnonzero(np.asarray(id_column.is_null()))[0])
            raise LogError(
                batch.path,
                **batch.where(row),
                column=columns.creative_id,
                expected="a creative id",
                found="",
            )
        part = _last_per_id(table, columns.creative_id)
        latest = (
            part
            if latest is None
            else _last_per_id(
                pa.concat_tables([latest, part], promote_options="permissive"), columns.creative_id
            )
        )
    if latest is None:
        raise LogError(reader.path, "has no rows")
    count = latest.num_rows
    creative_ids = latest.column(columns.creative_id).cast(pa.int64())

    def ids_of(name: str | None, default: Any) -> Any:
        if name is None:
            return default
        values, _ = convert_column(latest.column(name), "int")
        return values.fill_null(0)

    def numbers_of(name: str | None, default: float) -> Any:
        if name is None:
            return pa.array(np.full(count, default))
        return latest.column(name).cast(pa.float64()).fill_null(default)

    required = {
        "creative_id": creative_ids,
        "advertiser_id": ids_of(columns.advertiser_id, creative_ids),
        "campaign_id": ids_of(columns.campaign_id, creative_ids),
        "category": ids_of(columns.category, pa.array(np.zeros(count, dtype=np.int64))),
        "objective": pa.array([columns.objective.upper()] * count),
        "bid": numbers_of(columns.bid, columns.default_bid),
        "target_cpa": numbers_of(columns.target_cpa, 0.0),
        "regions": pa.array([[] for _ in range(count)], type=pa.list_(pa.string())),
        "status": pa.array(["active"] * count),
    }
    out = dict(required)
    for column in creative:
        if column not in out:
            out[column] = latest.column(column)
    return pa.table(out)
