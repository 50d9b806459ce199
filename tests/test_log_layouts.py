"""Bring your own log: generated logs in four public layouts through ``adrank schema infer``,
``adrank train``, ``adrank evaluate`` and ``adrank export``, as a new user runs them, then
served without a catalog (the held-out rows as a request's candidates), with held-out AUC
bounds; and the command line's one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from adrank.cli import main
from adrank.data import open_log
from adrank.data.layouts import write_layout
from adrank.features import load_schema
from adrank.features.log_check import column_kinds
from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker
from adrank.orchestrator.request import RankRequest
from adrank.training.metrics import auc

# (layout, file written, write options, held-out click AUC bound, conversion AUC bound).
# The bounds sit well under what a seed reaches (see the README) and well over 0.5.
# Seed 3 reaches 0.770, 0.730, 0.786 and 0.797 / 0.760 (the truth: 0.830, 0.767, 0.827, 0.850).
CASES = [
    ("criteo", "day_0.txt", {}, 0.72, None),
    ("avazu", "avazu.csv", {}, 0.68, None),
    ("taobao", "taobao", {"format": "parquet", "partition_by": "pid"}, 0.74, None),
    ("aliexpress", "aliexpress.jsonl", {"format": "jsonl"}, 0.74, 0.72),
]
ROWS = 6_000


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("layout", "name", "options", "click_bound", "conversion_bound"), CASES)
def test_layout_infers_trains_and_evaluates(
    tmp_path, capsys, layout, name, options, click_bound, conversion_bound
):
    data = tmp_path / name
    write_layout(layout, data, ROWS, seed=3, **options)
    schema_path, checkpoint = tmp_path / "schema.toml", tmp_path / "ranker.pt"
    code, out, _ = _run(capsys, "schema", "infer", data, "--out", schema_path)
    assert code == 0, out
    schema = load_schema(schema_path)
    if layout == "avazu":
        assert schema.dense_dim == 0  # categorical only
    if layout == "taobao":
        assert schema.field("click_sequence").table == schema.field("adgroup_id").table
    expected_tasks = ("click", "conversion") if conversion_bound else ("click",)
    assert schema.tasks == expected_tasks

    code, out, err = _run(
        capsys, "train", "--data", data, "--schema", schema_path, "--out", checkpoint,
        "--batch-size", "16", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "warning" not in err  # 300 steps, both classes held out
    heldout = json.loads((tmp_path / "ranker.pt.heldout.json").read_text())
    rows = np.load(tmp_path / "ranker.pt.heldout.npy")
    assert (heldout["num_rows"], heldout["seed"], len(rows)) == (ROWS, 0, ROWS // 5)

    code, out, err = _run(capsys, "evaluate", checkpoint, data, "--json", "--bootstrap", "30")
    assert code == 0, err
    report = json.loads(out)
    assert report["rows"] == ROWS // 5  # the held-out rows of the training log
    click = report["tasks"]["click"]
    assert click["auc"] >= click_bound, click["auc"]
    low, high = click["intervals"]["auc"]
    assert low <= click["auc"] <= high
    assert len(click["calibration_deciles"]) == 10
    assert 0.7 <= click["calibration"] <= 1.3
    if conversion_bound:
        assert report["tasks"]["conversion"]["auc"] >= conversion_bound
    code, out, err = _run(
        capsys, "export", "--checkpoint", checkpoint, "--repository", tmp_path / "repo",
        "--artifacts", tmp_path / "artifacts",
    )  # fmt: skip
    assert code == 0, err
    assert f"DENSE [{schema.dense_dim}]" in out
    assert (tmp_path / "repo" / "ranker" / "1").is_dir()

    # Served without a catalog: the held-out rows as candidates, every one ranked.
    served = _serve_heldout(tmp_path, data, schema, rows)
    assert served >= click_bound, served


def _serve_heldout(root, data, schema, heldout: np.ndarray) -> float:
    """Click AUC of the exported model's rates, served for the held-out rows (a request's
    ``candidate_rows``: each row's raw values, a creative id, a bid per click)."""
    reader = open_log(data)
    kinds = {c: k for c, k in column_kinds(schema).items() if c in reader.column_names}
    rows = reader.read(kinds).take(heldout)
    count = rows.num_rows
    rows = rows.append_column("creative_id", pa.array(np.arange(count, dtype=np.int64)))
    rows = rows.append_column("bid", pa.array(np.ones(count)))
    rows = rows.append_column("objective", pa.array(["CPC"] * count))
    model = TorchScriptModel(root / "repo" / "ranker" / "1")
    ranker = Ranker.from_export(root / "artifacts" / "ranker" / "1", None, model)
    request = RankRequest("heldout", {}, {}, np.empty(0, np.int64), count, candidate_rows=rows)
    response = ranker.rank(request)
    assert len(response) == count
    p_ctr = np.zeros(count)
    p_ctr[response.creative_id] = response.p_ctr
    return auc(rows[schema.labels["click"]].to_numpy().astype(float), p_ctr)


def test_evaluate_another_log_by_slice_in_text(tmp_path, capsys):
    train_log, other_log = tmp_path / "train.csv", tmp_path / "other.csv"
    write_layout("avazu", train_log, 3_000, seed=1)
    write_layout("avazu", other_log, 1_000, seed=2)
    checkpoint = tmp_path / "ranker.pt"
    code, out, err = _run(
        capsys, "train", "--data", train_log, "--out", checkpoint, "--batch-size", "256",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "no --schema: inferred one from the log" in out
    assert (tmp_path / "ranker.pt.schema.toml").exists()
    assert err.startswith("warning: only 10 optimizer steps (2,400 training rows, batch size 256")
    code, out, err = _run(capsys, "evaluate", checkpoint, other_log, "--by", "banner_pos")
    assert code == 0, err
    assert f"{other_log}: every row" in out
    assert "1,000 rows scored" in out
    assert "by banner_pos:" in out
    assert "banner_pos = 0 (" in out
    code, out, _ = _run(capsys, "evaluate", checkpoint, train_log, "--all-rows", "--bootstrap", "0")
    assert "3,000 rows scored" in out


def test_a_held_out_set_without_positives_warns(tmp_path, capsys):
    log = tmp_path / "log.csv"
    lines = ["click,site"] + [f"{int(i == 0)},s{i % 5}" for i in range(50)]
    log.write_text("\n".join(lines) + "\n")
    code, _, err = _run(
        capsys, "train", "--data", log, "--out", tmp_path / "m.pt", "--holdout", "0.1",
        "--no-progress",
    )  # fmt: skip
    assert code == 0
    assert "warning: the held-out set (5 rows) has no positive click label" in err


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    log = tmp_path / "bad.csv"
    log.write_text("click,site,price\n1,a,2\n0,b\n")
    code, _, err = _run(capsys, "schema", "infer", log)
    assert code == 1
    assert err == f"adrank schema: error: {log}: line 3: expected 3 fields, found 2: '0,b'\n"
    code, _out, err = _run(capsys, "schema", "infer", log, "--skip-bad-rows", "1")
    assert code == 0
    assert err == f"skipped bad row: {log}: line 3: expected 3 fields, found 2: '0,b'\n"
    with pytest.raises(ValueError, match="line 3: expected 3 fields"):
        main(["--debug", "schema", "infer", str(log)])
    code, _, err = _run(capsys, "evaluate", tmp_path / "none.pt", log)
    assert (code, err.count("\n")) == (1, 1)
    assert "adrank evaluate: error: no checkpoint at" in err


def test_evaluate_refuses_held_out_rows_of_a_log_that_changed(tmp_path, capsys):
    log = tmp_path / "log.csv"
    write_layout("avazu", log, 1_000, seed=1)
    checkpoint = tmp_path / "ranker.pt"
    assert main(["train", "--data", str(log), "--out", str(checkpoint), "--no-progress"]) == 0
    with log.open("a") as handle:
        handle.write(log.read_text().splitlines()[1] + "\n")
    capsys.readouterr()
    assert main(["evaluate", str(checkpoint), str(log)]) == 1
    assert capsys.readouterr().err == (
        f"adrank evaluate: error: {log}: has 1,001 rows, but 1,000 when ranker.pt was trained: "
        "its held-out rows no longer apply (pass --all-rows)\n"
    )
    assert main(["evaluate", str(checkpoint), str(log), "--all-rows", "--bootstrap", "0"]) == 0
    assert "1,001 rows scored" in capsys.readouterr().out
