"""The dynamic embedding table against its Python reference (tests/dynamic_table_reference.py):
admission, expiry, LRU eviction under a memory limit, Adagrad, lookups and pooled lookups,
snapshots and deltas, lock-free reads beside a writer thread, and every error path."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adrank import _native
from adrank.dynamic_table import DynamicEmbeddingTable, DynamicTableConfig
from dynamic_table_reference import ReferenceTable, initial_row

DIM = 4


def make(**overrides) -> DynamicEmbeddingTable:
    fields = {"dim": DIM, "memory_limit_bytes": 2000, "init_scale": 0.5, "seed": 7}
    fields["sketch_width"] = 256
    fields.update(overrides)
    if fields.get("admit_threshold", 1) > 1 and "memory_limit_bytes" not in overrides:
        fields["memory_limit_bytes"] += 256 * 4 * 4  # the sketch: width x depth uint32
    return DynamicEmbeddingTable(DynamicTableConfig(**fields))


def assert_same(table: DynamicEmbeddingTable, ref: ReferenceTable) -> None:
    assert table.ids().tolist() == list(ref.lru)
    for id, row in ref.lru.items():
        count, last_seen, state = table.row_meta(id)
        assert (count, last_seen) == (row.count, row.last_seen)
        assert state == pytest.approx(float(row.state), rel=1e-5)
    probe = [*ref.lru, 10_000, -5]
    np.testing.assert_allclose(table.lookup(probe), ref.lookup(probe), rtol=1e-5, atol=1e-6)
    assert table.memory_bytes <= table.config.memory_limit_bytes
    assert table.peak_memory_bytes <= table.config.memory_limit_bytes


ids_strategy = st.lists(st.integers(-3, 24), min_size=1, max_size=6)
operations = st.one_of(
    st.tuples(st.just("observe"), ids_strategy),
    st.tuples(st.just("upsert"), ids_strategy),
    st.tuples(st.just("remove"), ids_strategy),
    st.tuples(st.just("adagrad"), ids_strategy),
    st.tuples(st.just("expire"), st.just([])),
    st.tuples(st.just("tick"), st.just([])),
)


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(operations, min_size=1, max_size=40),
    threshold=st.integers(1, 3),
    probability=st.sampled_from([1.0, 0.6]),
    ttl=st.sampled_from([0, 3]),
    rare=st.sampled_from([(0, 0), (2, 2)]),
)
def test_random_sequences_match_the_reference(ops, threshold, probability, ttl, rare) -> None:
    table = make(
        admit_threshold=threshold,
        admit_probability=probability,
        ttl=ttl,
        rare_ttl=rare[0],
        rare_count=rare[1],
    )
    assert table.max_rows >= 4  # small enough that the sequences evict
    ref = ReferenceTable(table.config, table.max_rows)
    rng = np.random.default_rng(0)
    now = 0
    for op, ids in ops:
        values = rng.standard_normal((len(ids), DIM)).astype(np.float32)
        if op == "observe":
            assert table.observe(ids, now).tolist() == ref.observe(ids, now)
        elif op == "upsert":
            table.upsert(ids, values, now)
            ref.upsert(ids, values, now)
        elif op == "remove":
            assert table.remove(ids) == ref.remove(ids)
        elif op == "adagrad":
            got = table.apply_adagrad(ids, values, now, lr=0.1, eps=1e-6)
            assert got == ref.apply_adagrad(ids, values, now, 0.1, 1e-6)
        elif op == "expire":
            assert table.expire(now) == ref.expire(now)
        else:
            now += 1
        assert_same(table, ref)


def test_initial_rows_follow_the_documented_formula() -> None:
    table = make()
    table.observe([5, -9], now=0)
    np.testing.assert_array_equal(table.lookup([5])[0], initial_row(table.config, 5))
    np.testing.assert_array_equal(table.lookup([-9])[0], initial_row(table.config, -9))
    assert np.all(np.abs(table.lookup([5, -9])) <= 0.5)
    np.testing.assert_array_equal(make(init_scale=0.0).lookup([5]), np.zeros((1, DIM)))


def test_threshold_admission_on_the_nth_sighting() -> None:
    table = make(admit_threshold=3, memory_limit_bytes=1 << 20)
    assert table.observe([1, 1], now=0).tolist() == [False, False]
    assert 1 not in table
    assert table.observe([2, 1, 1], now=0).tolist() == [False, True, True]
    assert table.row_meta(1)[0] == 2  # the admitting sighting and the one after it
    # Counts survive removal: a removed id that was admitted once comes back on sight.
    table.remove([1])
    assert table.observe([1], now=1).tolist() == [True]
    assert table.stats()["rejected"] == 3


def test_probability_admission_follows_the_seeded_stream() -> None:
    config = DynamicTableConfig(dim=DIM, memory_limit_bytes=1 << 20, admit_probability=0.25)
    table = DynamicEmbeddingTable(config)
    ref = ReferenceTable(config, table.max_rows)
    ids = list(range(400))
    got = table.observe(ids, now=0)
    assert got.tolist() == ref.observe(ids, 0)
    assert 60 < got.sum() < 140  # about a quarter


def test_expiry_by_age_and_by_rarity() -> None:
    table = make(ttl=10, rare_ttl=3, rare_count=2, memory_limit_bytes=1 << 20)
    table.observe([1, 2, 3], now=0)
    table.observe([2], now=1)  # 2 has been seen twice: not rare
    assert table.expire(2) == 0  # 1 and 3 are rare but only 2 old
    assert table.expire(3) == 2  # now 3 old: rare_ttl reached exactly
    assert table.ids().tolist() == [2]
    table.observe([4], now=5)
    assert table.expire(7) == 0
    assert table.expire(8) == 1  # 4: rare, 3 old
    assert table.expire(10) == 0  # 2: 9 old, ttl is 10
    assert table.expire(11) == 1
    assert len(table) == 0
    assert table.stats()["expired"] == 4


def test_memory_limit_holds_while_ids_stream_through() -> None:
    limit = 200_000
    table = make(memory_limit_bytes=limit, dim=16)
    for start in range(0, 60_000, 5_000):
        table.observe(np.arange(start, start + 5_000), now=start)
        assert table.memory_bytes <= limit
    assert len(table) == table.max_rows
    stats = table.stats()
    assert stats["evicted"] == 60_000 - table.max_rows
    assert table.peak_memory_bytes <= limit
    assert stats["rebuilds"] > 0
    # The survivors are the most recent ids.
    assert sorted(table.ids().tolist()) == list(range(60_000 - table.max_rows, 60_000))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("include_last_offset", [False, True])
def test_embedding_bag_matches_torch(mode: str, include_last_offset: bool) -> None:
    table = make(memory_limit_bytes=1 << 20, init_scale=1.0)
    table.observe(np.arange(0, 40, 2), now=0)  # odd ids are missing
    rng = np.random.default_rng(1)
    indices = rng.integers(0, 40, size=60)
    offsets = np.array([0, 0, 5, 17, 30, 59])
    if include_last_offset:
        offsets = np.append(offsets, 60)
    weights = rng.random(60).astype(np.float32) if mode == "sum" else None
    got = table.embedding_bag(
        indices,
        offsets,
        mode,
        per_sample_weights=weights,
        include_last_offset=include_last_offset,
        padding_idx=6,
    )
    dense = table.lookup(np.arange(40))  # missing ids: zeros, the default row
    want = torch.nn.functional.embedding_bag(
        torch.from_numpy(indices),
        torch.from_numpy(dense),
        torch.from_numpy(offsets),
        mode=mode,
        per_sample_weights=None if weights is None else torch.from_numpy(weights),
        include_last_offset=include_last_offset,
        padding_idx=6,
    )
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


def test_default_row_for_missing_ids() -> None:
    table = make(memory_limit_bytes=1 << 20)
    table.set_default_row(np.full(DIM, 2.0))
    table.upsert([1], np.ones((1, DIM)), now=0)
    rows, found = table.lookup([1, 2], return_found=True)
    np.testing.assert_array_equal(rows, [[1.0] * DIM, [2.0] * DIM])
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(table.embedding_bag([1, 2], [0], "mean"), [[1.5] * DIM])
    table.set_default_row(None)
    np.testing.assert_array_equal(table.lookup([2]), np.zeros((1, DIM)))


def rows_of(table: DynamicEmbeddingTable) -> dict[int, tuple]:
    ids = table.ids()
    values = table.lookup(ids)
    return {int(i): (tuple(v), table.row_meta(int(i))) for i, v in zip(ids, values, strict=True)}


def test_snapshot_round_trip(tmp_path: Path) -> None:
    table = make(memory_limit_bytes=1 << 20, admit_threshold=2, ttl=9)
    table.observe(np.arange(100).repeat(2), now=3)
    table.apply_adagrad(np.arange(10), np.ones((10, DIM)), now=4)
    table.save(tmp_path / "t.snap")
    loaded = DynamicEmbeddingTable.load(tmp_path / "t.snap")
    assert loaded.config == table.config
    assert loaded.ids().tolist() == table.ids().tolist()
    assert rows_of(loaded) == rows_of(table)
    # A smaller limit keeps the most recently written rows.
    small = DynamicEmbeddingTable.load(tmp_path / "t.snap", memory_limit_bytes=8000)
    assert small.ids().tolist() == table.ids().tolist()[-small.max_rows :]


def test_deltas_bring_a_serving_copy_up_to_date(tmp_path: Path) -> None:
    trainer = make(memory_limit_bytes=1 << 20, init_scale=0.1)
    trainer.observe(np.arange(50), now=0)
    trainer.save(tmp_path / "base.snap")
    serving = DynamicEmbeddingTable.load(tmp_path / "base.snap")
    assert trainer.export_delta(tmp_path / "empty.delta") == (0, False)
    trainer.apply_adagrad(np.arange(0, 50, 5), np.ones((10, DIM)), now=1)
    trainer.remove(np.arange(40, 45))
    trainer.observe(np.arange(100, 103), now=2)
    info = trainer.export_delta(tmp_path / "1.delta")
    assert info == (12, False)  # 10 updated, 40 of them removed, 3 new
    assert serving.apply_delta(tmp_path / "1.delta") == 12
    assert rows_of(serving) == rows_of(trainer)
    assert sorted(serving.ids().tolist()) == sorted(trainer.ids().tolist())
    # A second delta holds only what changed since the first.
    trainer.upsert([7], np.full((1, DIM), 3.0), now=3)
    assert trainer.export_delta(tmp_path / "2.delta") == (1, False)
    serving.apply_delta(tmp_path / "2.delta")
    assert rows_of(serving) == rows_of(trainer)


def test_a_delta_is_full_when_removals_overflow_its_log(tmp_path: Path) -> None:
    trainer = make()  # max_rows is small: its removed-id log holds max_rows ids
    serving = make()
    trainer.observe(np.arange(10), now=0)
    trainer.export_delta(tmp_path / "0.delta")
    serving.apply_delta(tmp_path / "0.delta")
    serving.upsert([999], np.ones((1, DIM)), now=0)  # a row the trainer never had
    trainer.observe(np.arange(100, 100 + 3 * trainer.max_rows), now=1)  # evicts > max_rows
    info = trainer.export_delta(tmp_path / "1.delta")
    assert info.full
    assert info.rows == trainer.max_rows
    serving.apply_delta(tmp_path / "1.delta")
    assert serving.ids().tolist() == trainer.ids().tolist()
    assert rows_of(serving) == rows_of(trainer)


def test_readers_never_see_torn_rows_while_a_writer_runs() -> None:
    dim, num_ids = 64, 400
    table = DynamicEmbeddingTable(DynamicTableConfig(dim=dim, memory_limit_bytes=60_000))
    assert table.max_rows < num_ids  # the writer evicts and rebuilds as it goes
    stop = threading.Event()
    errors: list[str] = []

    def write() -> None:
        rng = np.random.default_rng(2)
        version = 1
        while not stop.is_set():
            ids = rng.integers(0, num_ids, size=32)
            values = (
                ((version % 5000 + 1) * 1000 + ids)[:, None].repeat(dim, axis=1).astype(np.float32)
            )
            table.upsert(ids, values, now=version)
            table.remove(rng.integers(0, num_ids, size=4))
            version += 1

    def read() -> None:
        rng = np.random.default_rng(threading.get_ident() % 1000)
        while not stop.is_set():
            ids = rng.integers(0, num_ids, size=64)
            rows, found = table.lookup(ids, return_found=True)
            pooled = table.embedding_bag(ids, np.arange(64), "max")
            for got in (rows, pooled):
                if not np.all(got == got[:, :1]):
                    errors.append("torn row")
                nonzero = got[:, 0] != 0
                if not np.all(got[nonzero, 0] % 1000 == ids[nonzero]):
                    errors.append("row of another id")
            if np.any(rows[~found] != 0):
                errors.append("missing id not zero")

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    stop.wait(2.0)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert table.stats()["rebuilds"] > 0
    assert table.stats()["evicted"] > 0


# --- error paths ---


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"dim": 0}, ValueError, "dim"),
        ({"dim": 1.5}, TypeError, "dim"),
        ({"memory_limit_bytes": 0}, ValueError, "memory_limit_bytes"),
        ({"admit_threshold": 0}, ValueError, "admit_threshold"),
        ({"admit_probability": 0.0}, ValueError, "admit_probability"),
        ({"admit_probability": "1"}, TypeError, "admit_probability"),
        ({"sketch_width": 1000}, ValueError, "sketch_width"),
        ({"sketch_depth": 9}, ValueError, "sketch_depth"),
        ({"ttl": -1}, ValueError, "ttl"),
        ({"rare_ttl": -1}, ValueError, "rare_ttl"),
        ({"rare_count": -1}, ValueError, "rare_count"),
        ({"init_scale": -1.0}, ValueError, "init_scale"),
        ({"init_scale": float("nan")}, ValueError, "init_scale"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_config_errors_name_the_field(fields, error, match) -> None:
    with pytest.raises(error, match=match):
        make(**fields)


def test_a_limit_too_small_for_one_row() -> None:
    with pytest.raises(ValueError, match="memory_limit_bytes"):
        make(memory_limit_bytes=100)
    with pytest.raises(TypeError, match="config"):
        DynamicEmbeddingTable({"dim": 4})


def test_call_errors_name_the_argument(tmp_path: Path) -> None:
    table = make()
    with pytest.raises(TypeError, match="ids"):
        table.observe([1.5], now=0)
    with pytest.raises(ValueError, match="ids"):
        table.lookup([[1]])
    with pytest.raises(TypeError, match="now"):
        table.observe([1], now=1.0)
    with pytest.raises(ValueError, match="values"):
        table.upsert([1, 2], np.ones((1, DIM)), now=0)
    with pytest.raises(TypeError, match="values"):
        table.upsert([1], np.array([["a"] * DIM]), now=0)
    with pytest.raises(ValueError, match="grads"):
        table.apply_adagrad([1], np.ones((1, DIM + 1)), now=0)
    with pytest.raises(ValueError, match="lr"):
        table.apply_adagrad([1], np.ones((1, DIM)), now=0, lr=0.0)
    with pytest.raises(ValueError, match="eps"):
        table.apply_adagrad([1], np.ones((1, DIM)), now=0, eps=-1.0)
    with pytest.raises(TypeError, match="lr"):
        table.apply_adagrad([1], np.ones((1, DIM)), now=0, lr=None)
    with pytest.raises(ValueError, match="values"):
        table.set_default_row(np.ones(DIM + 1))
    with pytest.raises(TypeError, match="id"):
        table.row_meta(1.0)


def test_embedding_bag_errors_name_the_argument() -> None:
    table = make()
    with pytest.raises(ValueError, match="mode"):
        table.embedding_bag([1], [0], "median")
    with pytest.raises(ValueError, match=r"offsets\[0\]"):
        table.embedding_bag([1, 2], [1])
    with pytest.raises(ValueError, match="offsets must not decrease"):
        table.embedding_bag([1, 2], [0, 2, 1])
    with pytest.raises(ValueError, match=r"offsets\[1\] must be in"):
        table.embedding_bag([1, 2], [0, 3])
    with pytest.raises(ValueError, match="include_last_offset"):
        table.embedding_bag([1, 2], [0, 1], include_last_offset=True)
    with pytest.raises(ValueError, match="offsets must hold at least one"):
        table.embedding_bag([1, 2], np.array([], dtype=np.int64), include_last_offset=True)
    with pytest.raises(TypeError, match="include_last_offset"):
        table.embedding_bag([1], [0], include_last_offset=1)
    with pytest.raises(ValueError, match="per_sample_weights"):
        table.embedding_bag([1], [0], "mean", per_sample_weights=[1.0])
    with pytest.raises(ValueError, match="per_sample_weights"):
        table.embedding_bag([1], [0], per_sample_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="padding_idx"):
        table.embedding_bag([1], [0], padding_idx=-2)


def test_native_edge_errors_name_the_argument() -> None:
    native = make()._native
    with pytest.raises(TypeError, match="ids must have dtype int64"):
        native.remove(np.array([1], dtype=np.int32))
    with pytest.raises(ValueError, match="admitted must hold 2 items"):
        native.observe(np.array([1, 2]), 0, np.zeros(1, dtype=np.uint8))
    with pytest.raises(ValueError, match="out must have shape"):
        native.lookup(np.array([1]), np.zeros((2, DIM), dtype=np.float32), None)
    with pytest.raises(TypeError, match="indices must have dtype int64"):
        native.embedding_bag(
            np.array([1], dtype=np.int32),
            np.array([0]),
            _native.PoolingMode.sum,
            None,
            False,
            -1,
            np.zeros((1, DIM), dtype=np.float32),
        )


def test_file_errors_name_the_path(tmp_path: Path) -> None:
    table = make()
    table.observe([1, 2], now=0)
    table.save(tmp_path / "t.snap")
    table.export_delta(tmp_path / "t.delta")
    with pytest.raises(FileNotFoundError, match="path"):
        DynamicEmbeddingTable.load(tmp_path / "none.snap")
    with pytest.raises(FileNotFoundError, match="path"):
        table.apply_delta(tmp_path / "none.delta")
    with pytest.raises(TypeError, match="path"):
        table.save(3)
    with pytest.raises(ValueError, match="is a delta, not a snapshot"):
        DynamicEmbeddingTable.load(tmp_path / "t.delta")
    with pytest.raises(ValueError, match="is a snapshot, not a delta"):
        table.apply_delta(tmp_path / "t.snap")
    with pytest.raises(ValueError, match="holds rows of dim 4"):
        make(dim=8, memory_limit_bytes=1 << 20).apply_delta(tmp_path / "t.delta")
    (tmp_path / "junk").write_bytes(b"not a table at all, not a table at all" * 10)
    with pytest.raises(ValueError, match="is not a dynamic table file"):
        table.apply_delta(tmp_path / "junk")
    data = (tmp_path / "t.snap").read_bytes()
    (tmp_path / "cut.snap").write_bytes(data[:-3])
    with pytest.raises(ValueError, match="is truncated"):
        DynamicEmbeddingTable.load(tmp_path / "cut.snap")
    with pytest.raises(ValueError, match="cannot open"):
        table.save(tmp_path / "no-such-dir" / "t.snap")
    with pytest.raises(ValueError, match="memory_limit_bytes"):
        DynamicEmbeddingTable.load(tmp_path / "t.snap", memory_limit_bytes=0)
