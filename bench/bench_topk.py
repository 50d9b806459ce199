"""Top-k selection against torch.topk and numpy.argpartition, and capped selection against the
best Python approach, on one thread.

    .venv/bin/python -m pytest bench/bench_topk.py --benchmark-only

Plain top-k: n in {1e3, 1e4, 1e5} x k in {10, 100, 500}, one request and a batch of 64.
Capped: 3 per advertiser, n / 20 advertisers owning candidates with Zipf-skewed shares; the
baseline is torch.topk of 4k candidates plus a greedy loop, with a full sort when 4k are not
enough. adrank's plain top-k of the same input runs in the capped group too, to read the cost
of the caps off the same table. Every output is checked once, outside the timed calls.

Single requests rotate through four distinct inputs, as a server sees fresh scores each time:
timing one input over and over lets the branch predictor learn it, which flatters branchy
code (sorts, selects) of every implementation.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from adrank import ops

SIZES = [1_000, 10_000, 100_000]
KS = [10, 100, 500]
BATCH = 64
CAP = 3
ROTATION = 4


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    import adrank

    adrank.set_num_threads(1)


def _scores(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _numpy_topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """argpartition, then sort the k (the strongest numpy recipe)."""
    part = np.argpartition(-scores, k - 1, axis=-1)[..., :k]
    values = np.take_along_axis(scores, part, axis=-1)
    order = np.argsort(-values, axis=-1, kind="stable")
    return np.take_along_axis(values, order, axis=-1), np.take_along_axis(part, order, axis=-1)


def _run(benchmark, group: str, role: str, items: int, fn) -> object:
    benchmark.group = group
    benchmark.extra_info.update(role=role, items=items)
    return benchmark(fn)


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("impl", ["adrank", "torch.topk", "numpy.argpartition"])
def test_topk_single(benchmark, impl, n, k):
    inputs = [_scores((n,), seed) for seed in range(ROTATION)]
    tensors = [torch.from_numpy(scores) for scores in inputs]
    turn = itertools.cycle(range(ROTATION))
    fn = {
        "adrank": lambda: ops.topk(inputs[next(turn)], k),
        "torch.topk": lambda: torch.topk(tensors[next(turn)], k),
        "numpy.argpartition": lambda: _numpy_topk(inputs[next(turn)], k),
    }[impl]
    role = "adrank" if impl == "adrank" else "baseline"
    _run(benchmark, f"topk n={n} k={k} single", role, n, fn)
    turn = itertools.cycle([0])
    np.testing.assert_array_equal(np.asarray(fn()[0]), np.sort(inputs[0])[::-1][:k])


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("impl", ["adrank", "torch.topk", "numpy.argpartition"])
def test_topk_batch(benchmark, impl, n, k):
    scores = _scores((BATCH, n))
    tensor = torch.from_numpy(scores)
    fn = {
        "adrank": lambda: ops.topk(scores, k),
        "torch.topk": lambda: torch.topk(tensor, k, dim=1),
        "numpy.argpartition": lambda: _numpy_topk(scores, k),
    }[impl]
    role = "adrank" if impl == "adrank" else "baseline"
    values = _run(benchmark, f"topk n={n} k={k} batch {BATCH}", role, BATCH * n, fn)[0]
    np.testing.assert_array_equal(np.asarray(values), -np.sort(-scores, axis=1)[:, :k])


# --- capped selection ---------------------------------------------------------------------


def _zipf_advertisers(n: int, seed: int = 1) -> np.ndarray:
    """n / 20 advertisers; advertiser a owns a share proportional to 1 / (a + 1)."""
    num_advertisers = max(1, n // 20)
    shares = 1.0 / np.arange(1, num_advertisers + 1)
    rng = np.random.default_rng(seed)
    return rng.choice(num_advertisers, size=n, p=shares / shares.sum()).astype(np.int64)


def _greedy(order: list[int], advertisers: np.ndarray, k: int, cap: int) -> list[int]:
    taken: list[int] = []
    counts: dict[int, int] = {}
    for i in order:
        a = advertisers[i]
        if counts.get(a, 0) < cap:
            counts[a] = counts.get(a, 0) + 1
            taken.append(i)
            if len(taken) == k:
                break
    return taken


def _python_capped(tensor: torch.Tensor, advertisers: np.ndarray, k: int, cap: int) -> list[int]:
    """torch.topk of 4k candidates plus a greedy loop; a full sort when that is not enough."""
    n = tensor.numel()
    fetched = min(n, 4 * k)
    order = torch.topk(tensor, fetched).indices.tolist()
    owners = advertisers.tolist()
    taken = _greedy(order, owners, k, cap)
    if len(taken) < k and fetched < n:
        order = torch.sort(tensor, descending=True, stable=True).indices.tolist()
        taken = _greedy(order, owners, k, cap)
    return taken


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("impl", ["adrank select", "adrank topk (no caps)", "python capped"])
def test_capped(benchmark, impl, n, k):
    inputs = [_scores((n,), seed) for seed in range(ROTATION)]
    tensors = [torch.from_numpy(scores) for scores in inputs]
    advertisers = _zipf_advertisers(n)
    turn = itertools.cycle(range(ROTATION))
    fn = {
        "adrank select": lambda: ops.select(inputs[next(turn)], k, groups=(advertisers, CAP)),
        "adrank topk (no caps)": lambda: ops.topk(inputs[next(turn)], k),
        "python capped": lambda: _python_capped(tensors[next(turn)], advertisers, k, CAP),
    }[impl]
    role = "baseline" if impl == "python capped" else "adrank"
    _run(benchmark, f"capped n={n} k={k} cap={CAP}", role, n, fn)
    if impl == "python capped":  # torch orders ties its own way: compare the scores taken
        turn = itertools.cycle([0])
        values, indices = ops.select(inputs[0], k, groups=(advertisers, CAP))
        np.testing.assert_array_equal(inputs[0][fn()], values[indices >= 0])
