"""``adrank learn`` end to end: a growing Parquet directory with a planted shift (new creatives
with their own click rates), the learner as a real subprocess, and a serving follower applying
its deltas in place; the learner API, the follower mirroring it, and the error paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adrank import cli
from adrank.online import DeltaFollower, FMLearner, LearnerConfig, ParquetDirectory, Publisher

FIELDS = ("creative", "user")


def impressions(creatives: np.ndarray, n: int, seed: int) -> dict[str, np.ndarray]:
    """Clicks depend on the creative only: effect +-2 by the creative id's parity."""
    rng = np.random.default_rng(seed)
    creative = rng.choice(creatives, size=n)
    logit = np.where(creative % 2 == 0, 2.0, -2.0)
    click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return {"creative": creative, "user": rng.integers(0, 500, size=n), "click": click}


def write(folder: Path, name: str, data: dict[str, np.ndarray]) -> None:
    tmp = folder / f".{name}"
    pq.write_table(pa.table(data), tmp)
    os.rename(tmp, folder / name)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_served_model_learns_a_planted_shift(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    old, new = np.arange(0, 40), np.arange(1000, 1040)
    write(data, "000.parquet", impressions(old, 20_000, seed=1))
    learner = subprocess.Popen(
        [
            *(sys.executable, "-m", "adrank.cli", "learn", str(data), "--out", str(out)),
            *("--fields", ",".join(FIELDS), "--label", "click", "--batch-size", "256"),
            *("--poll-seconds", "0.05", "--idle-exit", "2"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        follower = DeltaFollower(out)
        wait_for(lambda: follower.poll() >= 0 and follower.applied >= 1)
        held_out_old = impressions(old, 4000, seed=2)
        held_out_new = impressions(new, 4000, seed=3)
        assert auc(follower.predict(held_out_old), held_out_old["click"]) > 0.8
        before = auc(follower.predict(held_out_new), held_out_new["click"])
        assert 0.4 < before < 0.6  # the new creatives are unknown: no better than chance
        write(data, "001.parquet", impressions(new, 20_000, seed=4))
        wait_for(lambda: follower.poll() >= 0 and follower.applied >= 2)
        # The same follower, updated in place, now ranks the new creatives.
        assert auc(follower.predict(held_out_new), held_out_new["click"]) > 0.8
        assert len(follower.freshness_s) == 2
        assert all(-1 < s < 60 for s in follower.freshness_s)  # a generous bound
        stdout, stderr = learner.communicate(timeout=60)
    finally:
        learner.kill()
    assert learner.returncode == 0, stderr
    assert "001.parquet: 20000 rows" in stdout


def test_follower_mirrors_the_learner(tmp_path: Path) -> None:
    config = LearnerConfig(fields=FIELDS, label="click", dim=4, admit_threshold=2)
    learner = FMLearner(config)
    publisher = Publisher(learner, tmp_path)
    publisher.publish()
    follower = DeltaFollower(tmp_path)
    assert follower.poll() == 1
    batch = impressions(np.arange(30), 2000, seed=5)
    losses = []
    for epoch in range(3):
        for start in range(0, 2000, 200):
            part = {k: v[start : start + 200] for k, v in batch.items()}
            losses.append(learner.step(part, part["click"], now=epoch))
        publisher.publish()
    assert losses[-1] < losses[0]
    assert follower.poll() == 3
    assert follower.poll() == 0
    np.testing.assert_array_equal(follower.predict(batch), learner.predict(batch))
    for field in FIELDS:
        assert sorted(follower.tables[field].ids()) == sorted(learner.tables[field].ids())


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"fields": ()}, "fields"),
        ({"fields": ("a", "a")}, "fields"),
        ({"label": "a"}, "label"),
        ({"dim": 0}, "dim"),
        ({"lr": 0.0}, "lr"),
    ],
)
def test_learner_config_errors_name_the_field(fields, match) -> None:
    with pytest.raises(ValueError, match=match):
        LearnerConfig(**{"fields": ("a", "b"), "label": "y", **fields})


def test_learner_and_publisher_errors(tmp_path: Path) -> None:
    learner = FMLearner(LearnerConfig(fields=FIELDS, label="click"))
    with pytest.raises(KeyError, match="creative"):
        learner.step({"user": np.arange(3)}, np.zeros(3), now=0)
    with pytest.raises(ValueError, match="labels"):
        learner.step({"creative": np.arange(3), "user": np.arange(3)}, np.zeros(2), now=0)
    with pytest.raises(ValueError, match="one length"):
        learner.predict({"creative": np.arange(3), "user": np.arange(2)})
    Publisher(learner, tmp_path)
    with pytest.raises(ValueError, match="already holds publications"):
        Publisher(learner, tmp_path)
    with pytest.raises(ValueError, match="no publication applied"):
        DeltaFollower(tmp_path / "none").predict({})
    with pytest.raises(FileNotFoundError, match="data directory"):
        ParquetDirectory(tmp_path / "missing")


def test_learn_command_reports_a_missing_column(tmp_path: Path, capsys) -> None:
    write(tmp_path, "a.parquet", {"creative": np.arange(3), "click": np.zeros(3, np.int64)})
    argv = ["learn", str(tmp_path), "--out", str(tmp_path / "out"), "--fields", "creative,user"]
    assert cli.main([*argv, "--label", "click", "--once"]) == 1
    assert "has no column 'user'" in capsys.readouterr().err
    assert cli.main([*argv, "--label", "click", "--once", "--batch-size", "0"]) == 1
    assert "--batch-size" in capsys.readouterr().err
    assert cli.main([*argv, "--label", "click", "--once", "--snapshot-every", "-1"]) == 1
    assert "--snapshot-every must be >= 0, got -1" in capsys.readouterr().err


def test_a_publication_names_the_files_it_learned_from(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name, seed in (("a.parquet", 1), ("b.parquet", 2)):
        write(data, name, impressions(np.arange(10), 100, seed=seed))
    argv = ["learn", str(data), "--out", str(tmp_path / "out"), "--fields", ",".join(FIELDS)]
    assert cli.main([*argv, "--label", "click", "--once"]) == 0
    folder = tmp_path / "out" / "publications"
    assert json.loads((folder / "00000000" / "dense.json").read_text())["sources"] == []
    dense = json.loads((folder / "00000001" / "dense.json").read_text())
    assert dense["sources"] == ["a.parquet", "b.parquet"]
    assert dense["source_time"] == max((data / n).stat().st_mtime for n in dense["sources"])


def test_snapshot_publications_bound_what_a_new_follower_replays(tmp_path: Path) -> None:
    learner = FMLearner(LearnerConfig(fields=FIELDS, label="click", dim=4))
    publisher = Publisher(learner, tmp_path, snapshot_every=3)
    batches = [impressions(np.arange(30 + 5 * i), 300, seed=i) for i in range(8)]
    publisher.publish()
    running, behind = DeltaFollower(tmp_path), DeltaFollower(tmp_path)
    assert running.poll() == behind.poll() == 1
    tables = dict(running.tables)
    for i, batch in enumerate(batches[:3]):
        learner.step(batch, batch["click"], now=i)
        publisher.publish()
    # Publication 3 is a snapshot publication; a running follower applies its delta in place.
    assert running.poll() == 3
    assert all(running.tables[f] is tables[f] for f in FIELDS)
    for i, batch in enumerate(batches[3:], start=3):
        learner.step(batch, batch["click"], now=i)
        publisher.publish()
    folder = tmp_path / "publications"
    # Snapshots at 0, 3 and 6; writing 6 deleted what came before 3.
    assert sorted(p.name for p in folder.iterdir()) == [f"{n:08d}" for n in range(3, 9)]
    for n, kind in ((3, "snapshot"), (5, "delta"), (6, "snapshot")):
        assert json.loads((folder / f"{n:08d}" / "dense.json").read_text())["kind"] == kind
    assert running.poll() == 5  # 4 to 8, in place
    assert all(running.tables[f] is tables[f] for f in FIELDS)
    assert DeltaFollower(tmp_path).poll() == 3  # a new one: the snapshot of 6, then 7 and 8
    assert behind.poll() == 3  # its next (1) is gone: from the snapshot of 6 too, new tables
    assert behind.applied == 8
    assert all(behind.tables[f] is not tables[f] for f in FIELDS)
    every = {f: np.arange(-5, 80) for f in FIELDS}
    for follower in (running, behind):
        np.testing.assert_array_equal(follower.predict(every), learner.predict(every))
    with pytest.raises(ValueError, match="snapshot_every must be >= 0, got -1"):
        Publisher(learner, tmp_path / "other", snapshot_every=-1)
    broken = DeltaFollower(tmp_path / "nothing")
    (tmp_path / "nothing" / "publications" / "00000004").mkdir(parents=True)
    (tmp_path / "nothing" / "publications" / "00000004" / "dense.json").write_text(
        json.dumps({"format": "adrank-online-1", "kind": "delta"})
    )
    with pytest.raises(ValueError, match="holds no snapshot publication"):
        broken.poll()
