"""The label join of ``adrank learn --events``: attribution window, late, duplicate, early and
unmatched events, exactly as ``adrank.online.join`` documents them; and the command end to end."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adrank import cli
from adrank.online import DeltaFollower
from adrank.online.join import LabelJoiner


def impressions(joiner: LabelJoiner, rows: list[tuple[str, float, int]]) -> None:
    joiner.add_impressions(
        [r for r, _, _ in rows],
        np.array([t for _, t, _ in rows]),
        {"creative": np.array([c for _, _, c in rows])},
    )


def events(joiner: LabelJoiner, rows: list[tuple[str, str, str, float]]) -> None:
    joiner.add_events(
        [e for e, _, _, _ in rows],
        [r for _, r, _, _ in rows],
        [k for _, _, k, _ in rows],
        np.array([t for _, _, _, t in rows]),
    )


def test_window_duplicates_late_early_and_unmatched() -> None:
    joiner = LabelJoiner(("creative",), window_s=10)
    impressions(joiner, [("a", 0, 1), ("b", 0, 2), ("c", 3, 3), ("a", 4, 9)])  # "a" again
    events(
        joiner,
        [
            ("e1", "a", "click", 5),  # in a's window
            ("e1", "b", "click", 6),  # a repeated event id: ignored
            ("e2", "b", "conversion", 6),  # another kind: not a click
            ("e3", "c", "click", 2),  # before c was shown: outside its window
            ("e4", "d", "click", 7),  # d not shown yet
        ],
    )
    features, labels = joiner.ready()
    assert len(labels) == 0  # the clock is at 7: no window has closed
    impressions(joiner, [("d", 6, 4)])  # arrives after its click
    events(joiner, [("e5", "c", "click", 11)])  # clock 11: a and b close
    features, labels = joiner.ready()
    assert features["creative"].tolist() == [1, 2]
    assert labels.tolist() == [1, 0]
    events(joiner, [("e6", "b", "click", 12), ("e7", "z", "click", 12)])  # b: too late
    features, labels = joiner.ready()
    assert features["creative"].tolist() == []
    impressions(joiner, [("q", 30, 5)])  # clock 30: c, d and the pending z resolve
    features, labels = joiner.ready()
    assert features["creative"].tolist() == [3, 4]
    assert labels.tolist() == [1, 1]  # c clicked at 11 <= 3 + 10; d clicked at 7 >= 6
    features, labels = joiner.ready(flush=True)
    assert features["creative"].tolist() == [5]
    stats = joiner.stats
    assert (stats.duplicate_impressions, stats.duplicate_events) == (1, 1)
    assert (stats.late_events, stats.unmatched_events) == (1, 1)
    assert (stats.emitted, stats.positives) == (5, 3)


def test_old_ids_are_forgotten() -> None:
    joiner = LabelJoiner(("creative",), window_s=1)
    impressions(joiner, [("a", 0, 1)])
    events(joiner, [("e", "a", "click", 0.5)])
    impressions(joiner, [("b", 5, 2)])
    joiner.ready()
    assert joiner._emitted == {}
    assert joiner._events_seen == {}
    events(joiner, [("e", "a", "click", 5)])  # too old to be called a duplicate or late
    joiner.ready(flush=True)
    assert joiner.stats.unmatched_events == 1


def test_join_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="window_s"):
        LabelJoiner(("creative",), window_s=-1)
    with pytest.raises(KeyError, match="creative"):
        LabelJoiner(("creative",), window_s=1).add_impressions(["a"], np.zeros(1), {})


def write(folder: Path, name: str, table: pa.Table) -> None:
    pq.write_table(table, folder / f".{name}")
    os.rename(folder / f".{name}", folder / name)


def test_learn_joins_events_from_a_second_directory(tmp_path: Path, capsys) -> None:
    data, event_dir, out = tmp_path / "data", tmp_path / "events", tmp_path / "out"
    data.mkdir()
    event_dir.mkdir()
    rng = np.random.default_rng(0)
    n = 6000
    creative = rng.integers(0, 20, size=n)
    clicked = rng.random(n) < np.where(creative % 2 == 0, 0.8, 0.1)
    request_id = [f"r{i}" for i in range(n)]
    times = np.arange(n, dtype=np.float64) / 10
    write(
        data, "0.parquet", pa.table({"request_id": request_id, "time": times, "creative": creative})
    )
    shown = np.flatnonzero(clicked)
    ids = [f"e{i}" for i in shown]
    requests = [request_id[i] for i in shown]
    clicks = {  # two seconds after the impression; the first 50 delivered twice
        "event_id": ids + ids[:50],
        "request_id": requests + requests[:50],
        "kind": ["click"] * (len(ids) + 50),
        "time": np.concatenate([times[shown] + 2, times[shown][:50] + 2]),
    }
    write(event_dir, "0.parquet", pa.table(clicks))
    argv = ["learn", str(data), "--events", str(event_dir), "--out", str(out), "--window", "5"]
    assert cli.main([*argv, "--fields", "creative", "--label", "click", "--once"]) == 0
    printed = capsys.readouterr().out
    assert f"joined {n} impressions ({int(clicked.sum())} positive)" in printed
    assert "50 duplicate, 0 late, 0 unmatched" in printed
    follower = DeltaFollower(out)
    assert follower.poll() == 2
    p = follower.predict({"creative": np.arange(20)})
    assert np.all(p[0::2] > 0.6)
    assert np.all(p[1::2] < 0.3)
