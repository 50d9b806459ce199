"""The Criteo reader on small files written here (CSV with a header, TSV without)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from adrank.data import read_criteo
from adrank.data.log_errors import LogError
from adrank.features import FeaturePipeline, criteo_schema_path, load_schema

ROWS = [
    ["1", "", "-1", "260.0", "", "5", "", "", "", "", "", "", "0", ""]
    + ["05db9164", "", "9143c832"]
    + ["a73ee510"] * 23,
    ["0", "3", "7", "", "35", "30251", "247", "1", "35", "160", "", "1", "", "35"]
    + ["68fd1e64"] * 25
    + [""],
]
HEADER = ["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]


def _write(path, delimiter, header, opener=open):
    lines = ([delimiter.join(HEADER)] if header else []) + [delimiter.join(r) for r in ROWS]
    with opener(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("name", "delimiter", "header"),
    [("train.csv", ",", True), ("train.txt", "\t", False), ("day_0.tsv", "\t", True)],
)
def test_reads_csv_and_tsv(tmp_path, name, delimiter, header):
    table = read_criteo(_write(tmp_path / name, delimiter, header))
    assert table.column_names == HEADER
    assert table.column("label").to_pylist() == [1, 0]
    assert table.column("I1").to_pylist() == [None, 3.0]
    assert table.column("I2").to_pylist() == [-1.0, 7.0]  # negative counts are kept
    assert table.column("I3").to_pylist() == [260.0, None]
    assert table.column("C2").to_pylist() == [None, "68fd1e64"]
    assert table.column("C26").to_pylist() == ["a73ee510", None]


def test_reads_gzip_and_max_rows(tmp_path):
    path = _write(tmp_path / "train.txt.gz", "\t", False, opener=gzip.open)
    assert read_criteo(path, max_rows=1).num_rows == 1
    assert read_criteo(path, max_rows=1).column("label").to_pylist() == [1]
    assert read_criteo(path, max_rows=10).num_rows == 2


def test_criteo_schema_turns_it_into_a_batch(tmp_path):
    table = read_criteo(_write(tmp_path / "train.csv", ",", True))
    schema = load_schema(criteo_schema_path())
    batch = FeaturePipeline(schema)(table)
    assert len(batch) == 2
    assert batch.dense.shape == (2, 13)
    assert np.isfinite(batch.dense).all()
    assert batch.dense[0, 1] == pytest.approx(-np.log(2.0))  # signed log1p of -1
    nan_bucket = len(schema.field("I1_bucket").boundaries) + 1
    assert batch.sparse["I1_bucket"].values[0] == nan_bucket  # a missing count has its bucket


GOOD = "\t".join(["1"] + ["1"] * 13 + ["ab"] * 26)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "bad.txt: the file is empty"),
        ("1,2,3\n", "bad.txt: line 1: expected 40 fields (label, I1..I13, C1..C26), found 3"),
        (
            GOOD + "\n" + "\t".join(["2"] + ["1"] * 13 + ["ab"] * 26) + "\n",
            "bad.txt: line 2: column 'label': expected 0 or 1, found '2'",
        ),
        (
            "\t".join(["1", "x"] + ["1"] * 12 + ["ab"] * 26) + "\n",
            "bad.txt: line 1: column 'I1': expected a number, found 'x'",
        ),
        (GOOD + "\n1\t2\n", "bad.txt: line 2: expected 40 fields, found 2: '1\\t2'"),
    ],
)
def test_bad_files_name_the_line_and_column(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(LogError) as error:
        read_criteo(path)
    assert str(error.value) == f"{tmp_path}/{message}"


def test_missing_file_and_bad_delimiter(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Criteo file"):
        read_criteo(tmp_path / "none.txt")
    path = _write(tmp_path / "train.csv", ",", True)
    with pytest.raises(ValueError, match="delimiter must be"):
        read_criteo(path, delimiter=";")
    with pytest.raises(ValueError, match="max_rows must be a positive integer"):
        read_criteo(path, max_rows=0)
