"""Log readers: every format and convention, streamed in batches, and every error's message."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adrank.data.column_types import convert_column, decide_kind
from adrank.data.log_errors import BadRowBudget, LogError
from adrank.data.readers import open_log


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_csv_with_header_quotes_and_crlf(tmp_path):
    path = _write(
        tmp_path / "log.csv",
        b'click,site,price\r\n1,"a,b",2.5\r\n0,"say ""hi""",\r\n1,plain,3\r\n',
    )
    reader = open_log(path)
    assert (reader.format, reader.column_names) == ("csv", ["click", "site", "price"])
    table = reader.read()
    assert table.column("site").to_pylist() == ["a,b", 'say "hi"', "plain"]
    assert table.column("price").to_pylist() == [2.5, None, 3.0]
    assert table.column("click").type == pa.int64()


def test_headerless_tsv_gzip_gets_numbered_columns(tmp_path):
    path = tmp_path / "log.tsv.gz"
    path.write_bytes(gzip.compress(b"1\tx\t5\n0\ty\t6\n"))
    reader = open_log(path)
    assert (reader.format, reader.column_names) == ("tsv", ["column_1", "column_2", "column_3"])
    assert reader.read().column("column_2").to_pylist() == ["x", "y"]


def test_no_header_flag_reads_the_first_line_as_a_row(tmp_path):
    path = _write(tmp_path / "log.csv", b"a,b\nc,d\n")
    assert open_log(path).read().num_rows == 1
    assert open_log(path, header=False).read().num_rows == 2


def test_batches_are_bounded_and_carry_line_numbers(tmp_path):
    rows = "\n".join(f"{i % 2},{i}" for i in range(20_000))
    path = _write(tmp_path / "log.csv", f"click,n\n{rows}\n".encode())
    batches = list(open_log(path, batch_rows=1000).batches())
    assert len(batches) > 1  # streamed, not read whole
    assert sum(b.table.num_rows for b in batches) == 20_000
    lines = np.concatenate([b.lines for b in batches])
    np.testing.assert_array_equal(lines, np.arange(2, 20_002))


def test_a_text_column_keeps_the_kind_its_first_batch_had(tmp_path):
    body = "click,user\n" + "1,5\n" * 30_000 + "0,abc\n"
    path = _write(tmp_path / "log.csv", body.encode())
    with pytest.raises(LogError) as error:
        open_log(path, batch_rows=1000).read()
    assert str(error.value) == (
        f"{path}: line 30002: column 'user': expected an integer id, found 'abc'"
    )


def test_criteo_layout_found_from_the_first_line(tmp_path):
    row = ["1", "", "-1", "260.0"] + ["3"] * 10 + ["68fd1e64"] * 25 + [""]
    path = _write(tmp_path / "day_0.txt", ("\t".join(row) + "\n").encode() * 3)
    reader = open_log(path)
    assert reader.format == "criteo"
    table = reader.read()
    assert table.column("label").to_pylist() == [1.0] * 3
    assert table.column("I1").to_pylist() == [None] * 3
    assert table.column("I3").to_pylist() == [260.0] * 3
    assert table.column("C26").to_pylist() == [None] * 3


def test_json_lines_with_lists_and_blank_lines(tmp_path):
    lines = [{"click": 1, "hist": [3, 4], "u": "a"}, {"click": 0, "hist": [], "u": None}]
    text = json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1]) + "\n"
    reader = open_log(_write(tmp_path / "log.jsonl", text.encode()))
    batch = next(reader.batches())
    assert batch.table.column("hist").to_pylist() == [[3, 4], []]
    np.testing.assert_array_equal(batch.lines, [1, 3])


def test_parquet_directory_with_hive_partitions(tmp_path):
    for day in ("2024-01-01", "2024-01-02"):
        folder = tmp_path / "log" / f"day={day}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"click": [1, 0], "user": [1.0, np.nan]}), folder / "part.parquet")
    reader = open_log(tmp_path / "log")
    assert reader.format == "parquet"
    table = reader.read({"user": "id"})
    assert table.num_rows == 4
    assert sorted(set(table.column("day").to_pylist())) == ["2024-01-01", "2024-01-02"]
    assert table.column("user").to_pylist() == [1, None, 1, None]  # float ids with NaN


def test_parquet_float_ids_with_fractions_name_file_row_and_column(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"click": [1, 0, 1], "user": [1.0, 2.5, 3.0]}), path)
    with pytest.raises(LogError) as error:
        open_log(path).read({"user": "id"})
    assert str(error.value) == f"{path}: row 1: column 'user': expected an integer id, found 2.5"


def test_skip_bad_rows_reports_each_and_stops_past_the_budget(tmp_path):
    path = _write(tmp_path / "log.csv", b"click,user,price\n1,7,2.5\n0,8,x\n1,9\n0,10,1\n")
    reports: list[str] = []
    table = open_log(path).read({"price": "float"}, budget=BadRowBudget(2, reports.append))
    assert table.to_pydict() == {"click": [1, 0], "user": [7, 10], "price": [2.5, 1.0]}
    assert reports == [
        f"skipped bad row: {path}: line 4: expected 3 fields, found 2: '1,9'",
        f"skipped bad row: {path}: line 3: column 'price': expected a number, found 'x'",
    ]
    with pytest.raises(LogError) as error:
        open_log(path).read({"price": "float"}, budget=BadRowBudget(1, reports.append))
    assert str(error.value) == (
        f"{path}: line 3: column 'price': expected a number, found 'x' "
        "(more than --skip-bad-rows 1 bad rows)"
    )


@pytest.mark.parametrize(
    ("name", "data", "kinds", "message"),
    [
        ("empty.csv", b"", None, "{path}: the file is empty"),
        ("head.csv", b"cl\xffick,a\n1,2\n", None, "{path}: line 1: expected UTF-8 text, found "),
        ("body.csv", b"click,a\n1,2\n0,\xff\n", None, "{path}: line 3: column 'a': expected UTF-8"),
        (
            "short.csv",
            b"click,a\n1,2\n1\n",
            None,
            "{path}: line 3: expected 2 fields, found 1: '1'",
        ),
        ("label.csv", b"click,a\n1,2\n2,3\n", {"click": "label"}, "line 3: column 'click': "),
        ("dup.csv", b"a,a\n1,2\n", None, "line 1: expected unique, non-empty column names"),
        ("bad.jsonl", b'{"a": 1}\nnot json\n', None, "line 2: expected a JSON object, found"),
        ("type.jsonl", b'{"a": 1}\n{"a": "x"}\n', None, "line 2: column 'a': expected int64"),
        ("list.jsonl", b"[1, 2]\n", None, "{path}: has no line holding a JSON object"),
        ("log.parquet", b"hello", None, "{path}: not a Parquet file or directory"),
    ],
)
def test_errors_name_file_line_and_column(tmp_path, name, data, kinds, message):
    path = _write(tmp_path / name, data)
    with pytest.raises(LogError) as error:
        open_log(path).read(kinds)
    assert message.format(path=path) in str(error.value)
    assert "\n" not in str(error.value)


def test_exact_messages_of_label_and_unicode_errors(tmp_path):
    path = _write(tmp_path / "l.csv", b"click,a\n1,2\n2,3\n")
    with pytest.raises(
        LogError, match=r"l\.csv: line 3: column 'click': expected 0 or 1, found '2'$"
    ):
        open_log(path).read({"click": "label"})
    path = _write(tmp_path / "u.csv", b"cl\xffick,a\n1,2\n")
    with pytest.raises(
        LogError, match=r"u\.csv: line 1: expected UTF-8 text, found 'cl\\\\xffick,a'$"
    ):
        open_log(path)


def test_missing_file_column_and_bad_arguments(tmp_path):
    with pytest.raises(LogError, match=r"nope\.csv: no such file or directory$"):
        open_log(tmp_path / "nope.csv")
    path = _write(tmp_path / "log.csv", b"click,user\n1,2\n")
    with pytest.raises(LogError, match=r"has no column 'ghost' \(its columns: click, user\)$"):
        open_log(path).read(columns=["ghost"])
    with pytest.raises(ValueError, match=r"format must be one of \['auto', 'csv'"):
        open_log(path, format="xml")
    with pytest.raises(ValueError, match="batch_rows must be a positive integer, got 0"):
        open_log(path, batch_rows=0)
    with pytest.raises(ValueError, match="delimiter must be one character other than quotes"):
        open_log(path, delimiter="ab")
    with pytest.raises(ValueError, match="kind of column 'user' must be one of"):
        open_log(path).read({"user": "date"})
    with pytest.raises(ValueError, match="skip_bad_rows must be an integer >= 0, got -1"):
        BadRowBudget(-1)


def test_column_kinds_of_text():
    assert decide_kind(pa.array([b"1", b"-2", None])) == "int"
    assert decide_kind(pa.array([b"1", b"2.5"])) == "float"
    assert decide_kind(pa.array([b"10000169349117863715", b"1"])) == "string"  # past int64
    assert decide_kind(pa.array([b"a1", b"2"])) == "string"
    assert decide_kind(pa.array([None, None], type=pa.binary())) == "string"
    ids, bad = convert_column(pa.array(["3", "4.0", "4.5", None]), "int")
    assert ids.to_pylist() == [3, 4, None, None]
    assert bad.tolist() == [False, False, True, False]
    with pytest.raises(ValueError, match="kind must be one of"):
        convert_column(pa.array([1]), "date")
