"""``adrank catalog build``: a serving catalog from a log's creative-side columns."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from adrank.cli import main
from adrank.data.log_catalog import CatalogColumns, build_catalog
from adrank.data.log_errors import LogError
from adrank.data.readers import open_log
from adrank.features import parse_schema
from adrank.orchestrator.catalog import Catalog

SCHEMA = """
[labels]
click = "click"
[fields.user]
kind = "categorical"
side = "user"
num_buckets = 16
dim = 4
[fields.ad]
kind = "categorical"
side = "creative"
value_type = "int"
num_buckets = 16
dim = 4
[fields.price]
kind = "numeric_dense"
side = "creative"
"""

LOG = "click,user,ad,price,cpc\n1,u1,30,2.5,0.4\n0,u2,10,1.0,0.2\n0,u1,30,3.5,0.5\n"


def test_one_row_per_creative_with_its_last_values(tmp_path, capsys):
    log, schema = tmp_path / "log.csv", tmp_path / "schema.toml"
    log.write_text(LOG)
    schema.write_text(SCHEMA)
    out = tmp_path / "catalog.parquet"
    code = main(
        [
            *("catalog", "build", str(log), "--schema", str(schema)),
            *("--creative-id", "ad", "--bid", "cpc", "--out", str(out)),
        ]
    )
    assert code == 0, capsys.readouterr().err
    table = pq.read_table(out)
    assert table.column("creative_id").to_pylist() == [10, 30]
    assert table.column("price").to_pylist() == [1.0, 3.5]  # the last row of creative 30
    assert table.column("bid").to_pylist() == [0.2, 0.5]
    assert table.column("advertiser_id").to_pylist() == [10, 30]  # default: the creative
    assert table.column("objective").to_pylist() == ["CPC", "CPC"]
    assert "user" not in table.column_names  # user-side columns come with the request
    catalog = Catalog.from_parquet(out)
    assert len(catalog) == 2


def test_errors(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(LOG.replace("0,u2,10,", "0,u2,,"))
    reader = open_log(log)
    with pytest.raises(LogError) as error:
        build_catalog(reader, parse_schema(SCHEMA), CatalogColumns("ad"))
    assert str(error.value) == f"{log}: line 3: column 'ad': expected a creative id, found ''"
    user_only = SCHEMA.split("[fields.ad]")[0]
    with pytest.raises(LogError, match="schema 'schema' has no creative-side field"):
        build_catalog(reader, parse_schema(user_only), CatalogColumns("ad"))
    text_ids = tmp_path / "text.csv"
    text_ids.write_text(LOG.replace(",30,", ",x30,"))
    with pytest.raises(LogError, match=r"line 2: column 'ad': expected an integer id, found 'x30'"):
        build_catalog(open_log(text_ids), parse_schema(SCHEMA), CatalogColumns("ad"))
    with pytest.raises(ValueError, match="objective must be one of"):
        CatalogColumns("ad", objective="CPX")
    with pytest.raises(ValueError, match="default_bid must be a finite number >= 0"):
        CatalogColumns("ad", default_bid=-1.0)
