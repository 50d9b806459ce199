"""A Python reference of adrank's dynamic table rules (cpp/include/adrank/dynamic_table.hpp).

Glossary: ``lru`` the live ids, least recently written first, each with its row, count,
last_seen and Adagrad state; ``seen`` the exact counts the count-min sketch estimates (the
sketch only ever overestimates; tests use few ids and a wide sketch, where it is exact).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from adrank.dynamic_table import DynamicTableConfig

MASK = 2**64 - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(z: int) -> int:
    """The splitmix64 finalizer."""
    z &= MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def initial_row(config: DynamicTableConfig, id: int) -> np.ndarray:
    if config.init_scale == 0.0:
        return np.zeros(config.dim, dtype=np.float32)
    base = config.seed ^ mix(id & MASK)
    u = np.array([mix(base + c) >> 40 for c in range(config.dim)], dtype=np.float32)
    u *= np.float32(1.0 / 16777216.0)
    return np.float32(config.init_scale) * (np.float32(2.0) * u - np.float32(1.0))


@dataclass
class Row:
    values: np.ndarray
    count: int
    last_seen: int
    state: float = 0.0


@dataclass
class ReferenceTable:
    config: DynamicTableConfig
    max_rows: int
    lru: OrderedDict[int, Row] = field(default_factory=OrderedDict)
    seen: dict[int, int] = field(default_factory=dict)
    rng: int = -1

    def __post_init__(self) -> None:
        self.rng = self.config.seed

    def _draw(self) -> float:
        self.rng = (self.rng + GOLDEN) & MASK
        return (mix(self.rng) >> 11) * 2.0**-53

    def _insert(self, id: int, now: int) -> Row:
        if len(self.lru) == self.max_rows:
            self.lru.popitem(last=False)
        row = Row(initial_row(self.config, id), 0, now)
        self.lru[id] = row
        return row

    def _touch(self, id: int, now: int) -> None:
        self.lru[id].last_seen = now
        self.lru.move_to_end(id)

    def observe(self, ids: list[int], now: int) -> list[bool]:
        admitted = []
        for id in ids:
            if id not in self.lru:
                self.seen[id] = self.seen.get(id, 0) + 1
                if self.seen[id] < self.config.admit_threshold:
                    admitted.append(False)
                    continue
                if self.config.admit_probability < 1.0 and not (
                    self._draw() < self.config.admit_probability
                ):
                    admitted.append(False)
                    continue
                self._insert(id, now)
            self.lru[id].count += 1
            self._touch(id, now)
            admitted.append(True)
        return admitted

    def upsert(self, ids: list[int], values: np.ndarray, now: int) -> None:
        for id, value in zip(ids, values, strict=True):
            if id not in self.lru:
                self._insert(id, now).count = 1
            self.lru[id].values = np.asarray(value, dtype=np.float32).copy()
            self._touch(id, now)

    def remove(self, ids: list[int]) -> int:
        return sum(self.lru.pop(id, None) is not None for id in ids)

    def expire(self, now: int) -> int:
        c = self.config
        gone = [
            id
            for id, row in self.lru.items()
            if (c.ttl > 0 and now - row.last_seen >= c.ttl)
            or (c.rare_ttl > 0 and row.count < c.rare_count and now - row.last_seen >= c.rare_ttl)
        ]
        for id in gone:
            del self.lru[id]
        return len(gone)

    def apply_adagrad(
        self, ids: list[int], grads: np.ndarray, now: int, lr: float, eps: float
    ) -> int:
        updated = 0
        for id, g in zip(ids, grads, strict=True):
            if id not in self.lru:
                continue
            row = self.lru[id]
            g = g.astype(np.float32)
            row.state = np.float32(row.state + np.float32(np.sum(g * g) / g.size))
            step = np.float32(lr) / (np.sqrt(np.float32(row.state)) + np.float32(eps))
            row.values = (row.values - step * g).astype(np.float32)
            self._touch(id, now)
            updated += 1
        return updated

    def lookup(self, ids: list[int]) -> np.ndarray:
        zeros = np.zeros(self.config.dim, dtype=np.float32)
        return np.array(
            [self.lru[id].values if id in self.lru else zeros for id in ids], dtype=np.float32
        ).reshape(len(ids), self.config.dim)
