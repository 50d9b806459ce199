"""The creative catalog: Parquet in, sorted columns out, joins and atomic swaps."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adrank.orchestrator.catalog import ALL_REGIONS, Catalog
from adrank.orchestrator.scoring import Objective


def catalog_table(**overrides) -> pa.Table:
    columns = {
        "creative_id": pa.array([30, 10, 20], pa.int64()),
        "advertiser_id": pa.array([3, 1, 1], pa.int64()),
        "campaign_id": pa.array([300, 100, 101], pa.int64()),
        "category": pa.array([7, 5, 5], pa.int64()),
        "objective": pa.array(["OCPM", "CPM", "cpc"]),
        "bid": pa.array([0.0, 12.0, 1.5]),
        "target_cpa": pa.array([40.0, 0.0, 0.0]),
        "regions": pa.array([["US", "DE"], [], ["JP"]], pa.list_(pa.string())),
        "status": pa.array(["active", "paused", "ACTIVE"]),
        "language": pa.array(["en", "de", "ja"]),
    }
    columns.update(overrides)
    return pa.table(columns)


def test_columns_are_sorted_by_creative_id(tmp_path) -> None:
    pq.write_table(catalog_table(), tmp_path / "catalog.parquet")
    catalog = Catalog.from_parquet(tmp_path / "catalog.parquet")
    np.testing.assert_array_equal(catalog.creative_id, [10, 20, 30])
    np.testing.assert_array_equal(catalog.campaign_id, [100, 101, 300])
    np.testing.assert_array_equal(catalog.objective, [Objective.CPM, Objective.CPC, Objective.OCPM])
    np.testing.assert_array_equal(catalog.active, [False, True, True])
    assert catalog.table["language"].to_pylist() == ["de", "ja", "en"]
    assert catalog.regions == ("DE", "JP", "US")
    assert "catalog.parquet" in catalog.version


def test_region_masks() -> None:
    catalog = Catalog.from_arrow(catalog_table())
    us, jp = catalog.region_bit("US"), catalog.region_bit("JP")
    assert catalog.region_mask[0] == ALL_REGIONS  # no regions listed: everywhere
    assert catalog.region_mask[1] & jp
    assert not catalog.region_mask[1] & us
    assert catalog.region_mask[2] & us
    assert not catalog.region_mask[2] & jp
    assert catalog.region_bit("FR") == 0
    assert catalog.region_bit(None) == 0


def test_lookup_drops_unknown_ids() -> None:
    catalog = Catalog.from_arrow(catalog_table())
    rows, known = catalog.lookup(np.array([30, 99, 10, -5, 10, 31]))
    np.testing.assert_array_equal(known, [True, False, True, False, True, False])
    np.testing.assert_array_equal(catalog.creative_id[rows], [30, 10, 10])
    empty = Catalog.from_arrow(catalog_table().slice(0, 0))
    rows, known = empty.lookup(np.array([1, 2]))
    assert rows.size == 0
    assert not known.any()


@pytest.mark.parametrize(
    ("table", "match"),
    [
        (catalog_table().drop_columns(["bid", "status"]), "missing required columns: bid, status"),
        (catalog_table(creative_id=pa.array([1, 1, 2], pa.int64())), "duplicate ids"),
        (catalog_table(objective=pa.array(["CPM", "CPA", "CPM"])), "objective must be one of"),
        (catalog_table(status=pa.array(["active", "gone", "active"])), "status must be active"),
        (catalog_table(bid=pa.array([1.0, None, 2.0])), "column bid has 1 null"),
        (catalog_table(bid=pa.array(["x", "y", "z"])), "column bid must be float64"),
        (catalog_table(regions=pa.array(["US", "DE", "JP"])), "regions must be list<string>"),
        (
            catalog_table(regions=pa.array([[f"r{i}" for i in range(65)], [], []])),
            "65 regions; at most 64",
        ),
    ],
)
def test_bad_catalogs_name_the_column(table, match) -> None:
    with pytest.raises(ValueError, match=match):
        Catalog.from_arrow(table)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="catalog file not found"):
        Catalog.from_parquet(tmp_path / "nope.parquet")
