"""The creative catalog: creative id to advertiser, campaign, bid and targeting, as columns.

Glossary: ``R`` creatives in the catalog; ``C`` candidates of one request.

A catalog is loaded from Parquet (one row per creative) into numpy columns sorted by creative
id, so joining a request's candidates is one ``searchsorted``, never a Python loop. A snapshot
is immutable: ``Ranker.swap_catalog`` installs a new one atomically, and a request uses the one
it started with to the end.

Required columns (Parquet/Arrow types)::

    creative_id    int64    unique
    advertiser_id  int64
    campaign_id    int64
    category       int64    category id (blocked categories apply per region)
    objective      string   CPM | CPC | OCPM
    bid            float64  CPM: per thousand impressions; CPC: per click; unused for OCPM
    target_cpa     float64  OCPM: target cost per conversion; unused otherwise
    regions        list<string>  regions the campaign targets; empty: everywhere
    status         string   active | paused

Optional columns::

    ad_id          int64    the ad (ad group) of the creative: at most one creative of an ad
                            is shown per response (absent: each creative is its own ad)

The whole table, sorted by creative id, is kept as ``table`` for the feature pipeline: its
creative-side feature columns (metadata, and content such as a ``caption`` text and
``hashtags`` lists) are hashed and pooled once per snapshot, not once per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adrank.orchestrator.scoring import Objective

REQUIRED_COLUMNS = (
    "creative_id",
    "advertiser_id",
    "campaign_id",
    "category",
    "objective",
    "bid",
    "target_cpa",
    "regions",
    "status",
)
MAX_REGIONS = 64  # regions are a bitmask per creative
ALL_REGIONS = np.uint64(2**64 - 1)


@dataclass(frozen=True, eq=False)
class Catalog:
    """One immutable snapshot of the catalog (columns [R], sorted by ``creative_id``)."""

    creative_id: np.ndarray
    advertiser_id: np.ndarray
    campaign_id: np.ndarray
    category: np.ndarray
    objective: np.ndarray  # int8, values of Objective
    bid: np.ndarray
    target_cpa: np.ndarray
    region_mask: np.ndarray  # uint64: bit r set where the campaign targets regions[r]
    active: np.ndarray  # bool
    regions: tuple[str, ...]
    table: Any = None  # the pyarrow.Table these columns came from, in the same row order
    version: str = ""
    ad_id: np.ndarray | None = None  # int64 [R]; None: each creative is its own ad
    _region_bits: dict[str, int] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.creative_id)

    def lookup(self, candidate_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the known candidates, and which candidates were known.

        Returns ``(rows [C'], known [C])``: ``rows`` index the catalog's columns, in the order
        of the known candidates; unknown ids are dropped (the caller counts them).
        """
        ids = np.asarray(candidate_ids, dtype=np.int64)
        if len(self) == 0:
            return np.empty(0, dtype=np.int64), np.zeros(len(ids), dtype=bool)
        rows = np.minimum(np.searchsorted(self.creative_id, ids), len(self) - 1)
        known = self.creative_id[rows] == ids
        return rows[known], known

    def region_bit(self, region: str | None) -> np.uint64:
        """The mask bit of ``region``; 0 for a region no campaign names (only untargeted win)."""
        if region is None:
            return np.uint64(0)
        bit = self._region_bits.get(region)
        return np.uint64(0) if bit is None else np.uint64(1 << bit)

    @classmethod
    def from_arrow(cls, table: Any, version: str = "") -> Catalog:
        """Builds a snapshot from a pyarrow Table; raises ValueError naming a bad column."""
        import pyarrow as pa
        import pyarrow.compute as pc

        missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"catalog is missing required columns: {', '.join(missing)}")
        table = table.combine_chunks()
        order = pc.sort_indices(table["creative_id"])
        table = table.take(order)

        def column(name: str, dtype: Any) -> np.ndarray:
            array = table[name]
            if array.null_count:
                raise ValueError(f"catalog column {name} has {array.null_count} null values")
            try:
                return np.ascontiguousarray(array.to_numpy(), dtype=dtype)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"catalog column {name} must be {np.dtype(dtype)}: {error}"
                ) from None

        creative_id = column("creative_id", np.int64)
        if len(creative_id) > 1 and not (np.diff(creative_id) > 0).all():
            raise ValueError("catalog column creative_id has duplicate ids")
        objective_names = table["objective"].to_pylist()
        codes = {name: int(Objective.parse(name)) for name in set(objective_names)}
        objective = np.array([codes[n] for n in objective_names], dtype=np.int8)
        status = pc.utf8_lower(table["status"]).to_numpy(zero_copy_only=False)
        unknown_status = set(status.tolist()) - {"active", "paused"}
        if unknown_status:
            raise ValueError(
                f"catalog column status must be active or paused, got {unknown_status}"
            )

        regions_column = table["regions"]
        if not pa.types.is_list(regions_column.type):
            raise ValueError(
                f"catalog column regions must be list<string>, got {regions_column.type}"
            )
        flat = pc.list_flatten(regions_column).to_numpy(zero_copy_only=False).astype(str)
        vocabulary, codes_flat = np.unique(flat, return_inverse=True)
        if len(vocabulary) > MAX_REGIONS:
            raise ValueError(f"catalog names {len(vocabulary)} regions; at most {MAX_REGIONS}")
        lengths = pc.list_value_length(regions_column).fill_null(0).to_numpy()
        bits = np.left_shift(np.uint64(1), codes_flat.astype(np.uint64))
        region_mask = np.full(len(table), ALL_REGIONS, dtype=np.uint64)
        targeted = lengths > 0
        if targeted.any():
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[targeted]
            region_mask[targeted] = np.bitwise_or.reduceat(bits, starts)

        regions = tuple(str(r) for r in vocabulary)
        return cls(
            creative_id=creative_id,
            advertiser_id=column("advertiser_id", np.int64),
            campaign_id=column("campaign_id", np.int64),
            category=column("category", np.int64),
            objective=objective,
            bid=column("bid", np.float64),
            target_cpa=column("target_cpa", np.float64),
            region_mask=region_mask,
            active=status == "active",
            regions=regions,
            table=table,
            version=version,
            ad_id=column("ad_id", np.int64) if "ad_id" in table.column_names else None,
            _region_bits={r: i for i, r in enumerate(regions)},
        )

    @classmethod
    def empty(cls) -> Catalog:
        """A catalog of no creatives: for a model whose candidates come with their features
        in the request (:mod:`adrank.orchestrator.inline_candidates`)."""
        import pyarrow as pa

        types = {"objective": pa.string(), "regions": pa.list_(pa.string()), "status": pa.string()}
        types |= {"bid": pa.float64(), "target_cpa": pa.float64()}
        columns = {name: pa.array([], types.get(name, pa.int64())) for name in REQUIRED_COLUMNS}
        return cls.from_arrow(pa.table(columns), version="empty")

    @classmethod
    def from_parquet(cls, path: str | Path) -> Catalog:
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"catalog file not found: {path}")
        return cls.from_arrow(pq.read_table(path), version=f"{path.name}@{path.stat().st_mtime_ns}")
